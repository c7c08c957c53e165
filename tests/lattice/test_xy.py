"""Specification of lattice.xy.XY, S = -beta sum_x sum_mu cos(theta_{x+mu} - theta_x) (PHYSICS.md)."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.xy import XY

PROPERTY = settings(max_examples=25, deadline=None)

extents = st.integers(2, 6)
even_extents = st.sampled_from([2, 4, 6])
seeds = st.integers(0, 2**32 - 1)
betas = st.floats(-2.0, 3.0)
theories = st.builds(lambda l0, l1, beta: XY((l0, l1), beta), extents, extents, betas)
even_theories = st.builds(lambda l0, l1, beta: XY((l0, l1), beta), even_extents, even_extents, st.floats(0.0, 3.0))


def angles(theory: XY, seed: int, batch: int | None = None) -> np.ndarray:
    shape = theory.shape if batch is None else (batch,) + theory.shape
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, shape)


def tol(theory: XY) -> float:
    """Absolute rounding scale of S (2 V terms of size |beta|) and of F (4 terms)."""
    return 1e-12 * (abs(theory.beta) * 2 * theory.n_dof + 1.0)


def reference_action(theory: XY, t: np.ndarray) -> float:
    return float(-theory.beta * sum(np.cos(np.roll(t, -1, axis=mu) - t).sum() for mu in (0, 1)))


# --------------------------------------------------------------------------- action and force
@PROPERTY
@given(theories, seeds)
def test_action_follows_the_physics_md_formula(theory, seed):
    t = angles(theory, seed)
    assert theory.action(t) == pytest.approx(reference_action(theory, t), rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds)
def test_numba_action_equals_torch_action(torch_action_and_force, theory, seed):
    ts = angles(theory, seed, batch=3)
    s_torch, _ = torch_action_and_force(theory, ts)
    for t, s in zip(ts, s_torch):
        assert theory.action(t) == pytest.approx(s, rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds)
def test_force_equals_minus_autograd_gradient_of_torch_action(torch_action_and_force, theory, seed):
    ts = angles(theory, seed, batch=2)
    _, f_torch = torch_action_and_force(theory, ts)
    for t, f in zip(ts, f_torch):
        np.testing.assert_allclose(theory.force(t), f, rtol=1e-12, atol=1e-13 * (abs(theory.beta) + 1))


@PROPERTY
@given(theories, seeds)
def test_force_equals_central_finite_difference_of_action(finite_difference_force, theory, seed):
    t = angles(theory, seed)
    force = theory.force(t)
    rng = np.random.default_rng(seed + 1)
    for _ in range(3):
        index = (int(rng.integers(theory.shape[0])), int(rng.integers(theory.shape[1])))
        fd = finite_difference_force(theory, t, index)
        assert force[index] == pytest.approx(fd, rel=1e-6, abs=1e-7 * (abs(theory.beta) + 1) * theory.n_dof)


@PROPERTY
@given(theories, seeds)
def test_action_batch_matches_per_configuration_action(theory, seed):
    ts = angles(theory, seed, batch=4)
    expected = np.array([theory.action(t) for t in ts])
    np.testing.assert_allclose(theory.action_batch(ts), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds)
def test_force_batch_matches_per_configuration_force(theory, seed):
    ts = angles(theory, seed, batch=4)
    expected = np.stack([theory.force(t) for t in ts])
    np.testing.assert_allclose(theory.force_batch(ts), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds, st.floats(-0.5, 0.5))
def test_kick_adds_eps_times_force_to_momentum(theory, seed, eps):
    t = angles(theory, seed)
    p0 = np.random.default_rng(seed + 1).standard_normal(theory.shape)
    p = p0.copy()
    theory.kick(t, p, eps)
    np.testing.assert_allclose(p, p0 + eps * theory.force(t), rtol=1e-13, atol=1e-13 * (abs(theory.beta) + 1))


@PROPERTY
@given(theories, seeds)
def test_kick_leaves_the_field_unchanged(theory, seed):
    t = angles(theory, seed)
    t0 = t.copy()
    theory.kick(t, np.zeros_like(t), 0.1)
    np.testing.assert_array_equal(t, t0)


# --------------------------------------------------------------------------- symmetries
@PROPERTY
@given(theories, seeds, st.floats(-10.0, 10.0))
def test_action_is_invariant_under_global_o2_rotation(theory, seed, alpha):
    t = angles(theory, seed)
    assert theory.action(t + alpha) == pytest.approx(theory.action(t), rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds, st.floats(-10.0, 10.0))
def test_force_is_invariant_under_global_o2_rotation(theory, seed, alpha):
    t = angles(theory, seed)
    np.testing.assert_allclose(theory.force(t + alpha), theory.force(t), rtol=1e-12, atol=1e-12 * (abs(theory.beta) + 1))


@PROPERTY
@given(theories, seeds, st.integers(0, 1), st.integers(-6, 6))
def test_action_is_invariant_under_lattice_translations(theory, seed, axis, shift):
    t = angles(theory, seed)
    assert theory.action(np.roll(t, shift, axis=axis)) == pytest.approx(theory.action(t), rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds)
def test_action_is_invariant_under_reflection_of_the_angles(theory, seed):
    t = angles(theory, seed)
    assert theory.action(-t) == pytest.approx(theory.action(t), rel=1e-12, abs=tol(theory))


# --------------------------------------------------------------------------- construction
@pytest.mark.parametrize("shape", [(4,), (4, 4, 4), (1, 4), (4, 1)], ids=["1d", "3d", "L0=1", "L1=1"])
def test_shape_must_be_two_dimensional_with_extents_at_least_two(shape):
    with pytest.raises(ValueError):
        XY(shape, 1.0)


def test_random_config_lies_in_minus_pi_to_pi():
    theory = XY((6, 4), 1.0)
    t = theory.random_config(np.random.default_rng(0))
    assert t.shape == theory.config_shape
    assert np.all((t >= -np.pi) & (t < np.pi))


# --------------------------------------------------------------------------- Metropolis
def checkerboard_order(shape):
    """(site index, counter = flat site index), even sites (x0 + x1 even) first."""
    l0, l1 = shape
    return [((i, j), i * l1 + j) for p in (0, 1) for i in range(l0) for j in range(l1) if (i + j) % 2 == p]


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 7.0))
def test_metropolis_keeps_angles_in_minus_pi_to_pi(theory, seed, delta):
    t = angles(theory, seed)
    for sweep in range(5):
        theory.metropolis_sweep(t, delta, np.uint64(seed + sweep))
        assert np.all((t >= -np.pi) & (t < np.pi))


@PROPERTY
@given(even_theories, seeds)
def test_metropolis_sweep_with_zero_step_accepts_everything_and_keeps_the_field(theory, seed):
    t = angles(theory, seed)
    t0 = t.copy()
    assert theory.metropolis_sweep(t, 0.0, np.uint64(seed)) == theory.n_dof
    np.testing.assert_array_equal(t, t0)


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_matches_reference_checkerboard_metropolis(reference_sweep, theory, seed, delta):
    t = angles(theory, seed)
    expected = t.copy()
    key = np.uint64(seed)
    n_expected = reference_sweep(theory, expected, delta, key, checkerboard_order(theory.shape), compact=True)
    assert theory.metropolis_sweep(t, delta, key) == n_expected
    np.testing.assert_allclose(t, expected, rtol=0, atol=1e-14)


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_is_reproducible_for_a_fixed_key(theory, seed, delta):
    t1 = angles(theory, seed)
    t2 = t1.copy()
    key = np.uint64(seed * 7919 + 1)
    assert theory.metropolis_sweep(t1, delta, key) == theory.metropolis_sweep(t2, delta, key)
    np.testing.assert_array_equal(t1, t2)


def test_metropolis_sweep_does_not_depend_on_the_thread_count():
    theory = XY((6, 8), 1.1)
    t1 = angles(theory, 5)
    t2 = t1.copy()
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        n1 = theory.metropolis_sweep(t1, 1.0, np.uint64(11))
    finally:
        numba.set_num_threads(saved)
    n2 = theory.metropolis_sweep(t2, 1.0, np.uint64(11))
    assert n1 == n2
    np.testing.assert_array_equal(t1, t2)


@pytest.mark.parametrize("shape", [(4, 5), (5, 4), (3, 3)])
def test_check_metropolis_rejects_odd_extent(shape):
    with pytest.raises(ValueError):
        XY(shape, 1.0).check_metropolis()


def test_check_metropolis_accepts_even_extents():
    XY((4, 6), 1.0).check_metropolis()


# --------------------------------------------------------------------------- memory layout
def test_force_does_not_depend_on_memory_layout():
    theory = XY((4, 6), 1.3)
    t = angles(theory, 0)
    np.testing.assert_allclose(theory.force(np.asfortranarray(t)), theory.force(t), rtol=1e-14, atol=1e-15)


def test_kick_updates_a_fortran_ordered_momentum_in_place():
    theory = XY((4, 6), 1.3)
    t = angles(theory, 0)
    p = np.asfortranarray(np.zeros(theory.shape))
    theory.kick(t, p, 0.1)
    np.testing.assert_allclose(p, 0.1 * theory.force(t), rtol=1e-13, atol=1e-15)


def test_metropolis_sweep_updates_a_fortran_ordered_field_in_place():
    theory = XY((4, 6), 1.3)
    t_c = angles(theory, 0)
    t_f = np.asfortranarray(t_c)
    key = np.uint64(3)
    assert theory.metropolis_sweep(t_f, 0.5, key) == theory.metropolis_sweep(t_c, 0.5, key)
    np.testing.assert_array_equal(t_f, t_c)
