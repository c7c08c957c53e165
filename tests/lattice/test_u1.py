"""Specification of lattice.u1.U1, the 2D Wilson action S = beta sum_x (1 - cos theta_P(x)) (PHYSICS.md)."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.u1 import U1

PROPERTY = settings(max_examples=25, deadline=None)

extents = st.integers(2, 6)
even_extents = st.sampled_from([2, 4, 6])
seeds = st.integers(0, 2**32 - 1)
betas = st.floats(0.0, 5.0)
theories = st.builds(lambda l0, l1, beta: U1((l0, l1), beta), extents, extents, betas)
even_theories = st.builds(lambda l0, l1, beta: U1((l0, l1), beta), even_extents, even_extents, betas)


def links(theory: U1, seed: int, batch: int | None = None) -> np.ndarray:
    shape = theory.config_shape if batch is None else (batch,) + theory.config_shape
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, shape)


def tol(theory: U1) -> float:
    """Absolute rounding scale of S: V terms of size up to 2 beta."""
    return 1e-12 * (2 * theory.beta * theory.shape[0] * theory.shape[1] + 1.0)


def reference_action(theory: U1, t: np.ndarray) -> float:
    """theta_P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x), x + mu = np.roll(., -1, mu)."""
    t0, t1 = t
    plaquette = t0 + np.roll(t1, -1, axis=0) - np.roll(t0, -1, axis=1) - t1
    return float(theory.beta * np.sum(1.0 - np.cos(plaquette)))


def gauge_transform(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """theta_mu(x) -> theta_mu(x) + alpha(x) - alpha(x + mu)."""
    return np.stack([t[mu] + alpha - np.roll(alpha, -1, axis=mu) for mu in (0, 1)])


# --------------------------------------------------------------------------- action and force
@PROPERTY
@given(theories, seeds)
def test_action_follows_the_physics_md_formula(theory, seed):
    t = links(theory, seed)
    assert theory.action(t) == pytest.approx(reference_action(theory, t), rel=1e-12, abs=tol(theory))


def test_single_excited_link_costs_two_plaquettes():
    theory = U1((4, 5), 1.7)
    t = np.zeros(theory.config_shape)
    t[1, 2, 3] = 0.9
    assert theory.action(t) == pytest.approx(2 * 1.7 * (1 - np.cos(0.9)), rel=1e-14)


@PROPERTY
@given(theories, seeds)
def test_numba_action_equals_torch_action(torch_action_and_force, theory, seed):
    ts = links(theory, seed, batch=3)
    s_torch, _ = torch_action_and_force(theory, ts)
    for t, s in zip(ts, s_torch):
        assert theory.action(t) == pytest.approx(s, rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds)
def test_force_equals_minus_autograd_gradient_of_torch_action(torch_action_and_force, theory, seed):
    ts = links(theory, seed, batch=2)
    _, f_torch = torch_action_and_force(theory, ts)
    for t, f in zip(ts, f_torch):
        np.testing.assert_allclose(theory.force(t), f, rtol=1e-12, atol=1e-13 * (theory.beta + 1))


@PROPERTY
@given(theories, seeds)
def test_force_equals_central_finite_difference_of_action(finite_difference_force, theory, seed):
    t = links(theory, seed)
    force = theory.force(t)
    rng = np.random.default_rng(seed + 1)
    for _ in range(3):
        index = tuple(int(rng.integers(n)) for n in theory.config_shape)
        fd = finite_difference_force(theory, t, index)
        assert force[index] == pytest.approx(fd, rel=1e-6, abs=1e-7 * (theory.beta + 1) * theory.n_dof)


@PROPERTY
@given(theories, seeds)
def test_action_batch_matches_per_configuration_action(theory, seed):
    ts = links(theory, seed, batch=4)
    expected = np.array([theory.action(t) for t in ts])
    np.testing.assert_allclose(theory.action_batch(ts), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds)
def test_force_batch_matches_per_configuration_force(theory, seed):
    ts = links(theory, seed, batch=4)
    expected = np.stack([theory.force(t) for t in ts])
    np.testing.assert_allclose(theory.force_batch(ts), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds, st.floats(-0.5, 0.5))
def test_kick_adds_eps_times_force_to_momentum(theory, seed, eps):
    t = links(theory, seed)
    p0 = np.random.default_rng(seed + 1).standard_normal(theory.config_shape)
    p = p0.copy()
    theory.kick(t, p, eps)
    np.testing.assert_allclose(p, p0 + eps * theory.force(t), rtol=1e-13, atol=1e-13 * (theory.beta + 1))


@PROPERTY
@given(theories, seeds)
def test_kick_leaves_the_field_unchanged(theory, seed):
    t = links(theory, seed)
    t0 = t.copy()
    theory.kick(t, np.zeros_like(t), 0.1)
    np.testing.assert_array_equal(t, t0)


# --------------------------------------------------------------------------- symmetries
@PROPERTY
@given(theories, seeds)
def test_action_is_gauge_invariant(theory, seed):
    t = links(theory, seed)
    alpha = np.random.default_rng(seed + 1).uniform(-np.pi, np.pi, theory.shape)
    assert theory.action(gauge_transform(t, alpha)) == pytest.approx(theory.action(t), rel=1e-12, abs=tol(theory))


@PROPERTY
@given(theories, seeds)
def test_force_is_gauge_invariant(theory, seed):
    t = links(theory, seed)
    alpha = np.random.default_rng(seed + 1).uniform(-np.pi, np.pi, theory.shape)
    np.testing.assert_allclose(theory.force(gauge_transform(t, alpha)), theory.force(t),
                               rtol=1e-12, atol=1e-12 * (theory.beta + 1))


@PROPERTY
@given(theories, seeds, st.integers(1, 2), st.integers(-6, 6))
def test_action_is_invariant_under_lattice_translations(theory, seed, axis, shift):
    t = links(theory, seed)
    assert theory.action(np.roll(t, shift, axis=axis)) == pytest.approx(theory.action(t), rel=1e-12, abs=tol(theory))


# --------------------------------------------------------------------------- construction
def test_negative_beta_raises_value_error():
    with pytest.raises(ValueError):
        U1((4, 4), -0.1)


def test_zero_beta_is_accepted():
    assert U1((4, 4), 0.0).params() == {"beta": 0.0}


@pytest.mark.parametrize("shape", [(4,), (4, 4, 4), (1, 4), (4, 1)], ids=["1d", "3d", "L0=1", "L1=1"])
def test_shape_must_be_two_dimensional_with_extents_at_least_two(shape):
    with pytest.raises(ValueError):
        U1(shape, 1.0)


def test_config_has_two_link_angles_per_site_in_minus_pi_to_pi():
    theory = U1((6, 4), 1.0)
    t = theory.random_config(np.random.default_rng(0))
    assert t.shape == theory.config_shape == (2, 6, 4)
    assert theory.n_dof == t.size
    assert np.all((t >= -np.pi) & (t < np.pi))


# --------------------------------------------------------------------------- Metropolis
def link_order(shape):
    """(link index, counter = flat link index in (2, L0, L1)) in the documented class order:
    (mu = 0, even x0 + x1), (mu = 0, odd), (mu = 1, even), (mu = 1, odd)."""
    l0, l1 = shape
    return [
        ((mu, i, j), mu * l0 * l1 + i * l1 + j)
        for mu in (0, 1) for p in (0, 1) for i in range(l0) for j in range(l1) if (i + j) % 2 == p
    ]


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 7.0))
def test_metropolis_keeps_links_in_minus_pi_to_pi(theory, seed, delta):
    t = links(theory, seed)
    for sweep in range(5):
        theory.metropolis_sweep(t, delta, np.uint64(seed + sweep))
        assert np.all((t >= -np.pi) & (t < np.pi))


@PROPERTY
@given(even_theories, seeds)
def test_metropolis_sweep_with_zero_step_accepts_everything_and_keeps_the_field(theory, seed):
    t = links(theory, seed)
    t0 = t.copy()
    assert theory.metropolis_sweep(t, 0.0, np.uint64(seed)) == theory.n_dof
    np.testing.assert_array_equal(t, t0)


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_matches_reference_link_metropolis(reference_sweep, theory, seed, delta):
    t = links(theory, seed)
    expected = t.copy()
    key = np.uint64(seed)
    n_expected = reference_sweep(theory, expected, delta, key, link_order(theory.shape), compact=True)
    assert theory.metropolis_sweep(t, delta, key) == n_expected
    np.testing.assert_allclose(t, expected, rtol=0, atol=1e-14)


@PROPERTY
@given(even_theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_is_reproducible_for_a_fixed_key(theory, seed, delta):
    t1 = links(theory, seed)
    t2 = t1.copy()
    key = np.uint64(seed * 7919 + 1)
    assert theory.metropolis_sweep(t1, delta, key) == theory.metropolis_sweep(t2, delta, key)
    np.testing.assert_array_equal(t1, t2)


def test_metropolis_sweep_does_not_depend_on_the_thread_count():
    theory = U1((6, 8), 2.0)
    t1 = links(theory, 5)
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
        U1(shape, 1.0).check_metropolis()


def test_check_metropolis_accepts_even_extents():
    U1((4, 6), 1.0).check_metropolis()


# --------------------------------------------------------------------------- memory layout
def test_force_does_not_depend_on_memory_layout():
    theory = U1((4, 6), 1.3)
    t = links(theory, 0)
    np.testing.assert_allclose(theory.force(np.asfortranarray(t)), theory.force(t), rtol=1e-14, atol=1e-15)


def test_kick_updates_a_fortran_ordered_momentum_in_place():
    theory = U1((4, 6), 1.3)
    t = links(theory, 0)
    p = np.asfortranarray(np.zeros(theory.config_shape))
    theory.kick(t, p, 0.1)
    np.testing.assert_allclose(p, 0.1 * theory.force(t), rtol=1e-13, atol=1e-15)


def test_metropolis_sweep_updates_a_fortran_ordered_field_in_place():
    theory = U1((4, 6), 1.3)
    t_c = links(theory, 0)
    t_f = np.asfortranarray(t_c)
    key = np.uint64(3)
    assert theory.metropolis_sweep(t_f, 0.5, key) == theory.metropolis_sweep(t_c, 0.5, key)
    np.testing.assert_array_equal(t_f, t_c)
