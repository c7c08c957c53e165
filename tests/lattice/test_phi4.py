"""Specification of lattice.phi4.Phi4 (actions and conventions of PHYSICS.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.phi4 import Phi4

PROPERTY = settings(max_examples=25, deadline=None)

shapes = st.lists(st.integers(2, 6), min_size=1, max_size=3).map(tuple)
seeds = st.integers(0, 2**32 - 1)
hopping_theories = st.builds(
    lambda shape, kappa, lam: Phi4(shape, kappa=kappa, lam=lam),
    shapes, st.floats(-0.4, 0.4), st.floats(0.01, 2.0),
)
positive_kappa_theories = st.builds(
    lambda shape, kappa, lam: Phi4(shape, kappa=kappa, lam=lam),
    shapes, st.floats(0.01, 0.5), st.floats(0.001, 2.0),
)
flow_theories = st.builds(
    lambda shape, m2, g: Phi4(shape, m2=m2, g=g),
    shapes, st.floats(-6.0, 6.0), st.floats(0.01, 10.0),
)
theories = st.one_of(hopping_theories, flow_theories)


def field(theory: Phi4, seed: int, batch: int | None = None) -> np.ndarray:
    shape = theory.shape if batch is None else (batch,) + theory.shape
    return 1.5 * np.random.default_rng(seed).standard_normal(shape)


def action_scale(theory: Phi4, q: np.ndarray) -> float:
    """Sum of the absolute values of the terms of S: the scale of its rounding error."""
    A, B, C = theory.coefficients
    q2 = q * q
    return float(np.sum((abs(A) * theory.dim + abs(B)) * q2 + abs(C) * q2 * q2)) + 1.0


def force_scale(theory: Phi4, q: np.ndarray) -> float:
    A, B, C = theory.coefficients
    m = float(np.abs(q).max())
    return 2 * theory.dim * abs(A) * m + 2 * abs(B) * m + 4 * abs(C) * m**3 + 1.0


def reference_action(theory: Phi4, q: np.ndarray) -> float:
    """S written out as in PHYSICS.md, in the theory's own parameterization."""
    axes = range(q.ndim)
    if theory.parameterization == "hopping":
        k, lam = theory.kappa, theory.lam
        links = sum(q * np.roll(q, -1, axis=mu) for mu in axes)
        return float(np.sum(-2 * k * links + (1 - 2 * lam) * q**2 + lam * q**4))
    grad2 = sum((np.roll(q, -1, axis=mu) - q) ** 2 for mu in axes)
    return float(np.sum(grad2 + theory.m2 * q**2 + theory.g * q**4))


# --------------------------------------------------------------------------- action and force
@PROPERTY
@given(theories, seeds)
def test_action_follows_the_physics_md_formula(theory, seed):
    q = field(theory, seed)
    assert theory.action(q) == pytest.approx(reference_action(theory, q), rel=1e-12, abs=1e-12 * action_scale(theory, q))


@PROPERTY
@given(theories, seeds)
def test_numba_action_equals_torch_action(torch_action_and_force, theory, seed):
    qs = field(theory, seed, batch=3)
    s_torch, _ = torch_action_and_force(theory, qs)
    for q, s in zip(qs, s_torch):
        assert theory.action(q) == pytest.approx(s, rel=1e-12, abs=1e-12 * action_scale(theory, q))


@PROPERTY
@given(theories, seeds)
def test_force_equals_minus_autograd_gradient_of_torch_action(torch_action_and_force, theory, seed):
    qs = field(theory, seed, batch=2)
    _, f_torch = torch_action_and_force(theory, qs)
    for q, f in zip(qs, f_torch):
        np.testing.assert_allclose(theory.force(q), f, rtol=1e-12, atol=1e-12 * force_scale(theory, q))


@PROPERTY
@given(theories, seeds)
def test_force_equals_central_finite_difference_of_action(finite_difference_force, theory, seed):
    q = field(theory, seed)
    force = theory.force(q)
    rng = np.random.default_rng(seed + 1)
    for _ in range(3):
        index = tuple(int(rng.integers(n)) for n in theory.shape)
        fd = finite_difference_force(theory, q, index)
        assert force[index] == pytest.approx(fd, rel=1e-6, abs=1e-6 * force_scale(theory, q))


@PROPERTY
@given(theories, seeds)
def test_action_batch_matches_per_configuration_action(theory, seed):
    qs = field(theory, seed, batch=4)
    expected = np.array([theory.action(q) for q in qs])
    np.testing.assert_allclose(theory.action_batch(qs), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds)
def test_force_batch_matches_per_configuration_force(theory, seed):
    qs = field(theory, seed, batch=4)
    expected = np.stack([theory.force(q) for q in qs])
    np.testing.assert_allclose(theory.force_batch(qs), expected, rtol=1e-13, atol=1e-13)


@PROPERTY
@given(theories, seeds, st.floats(-0.5, 0.5))
def test_kick_adds_eps_times_force_to_momentum(theory, seed, eps):
    q = field(theory, seed)
    p0 = np.random.default_rng(seed + 1).standard_normal(theory.shape)
    p = p0.copy()
    theory.kick(q, p, eps)
    np.testing.assert_allclose(p, p0 + eps * theory.force(q), rtol=1e-13, atol=1e-13 * force_scale(theory, q))


@PROPERTY
@given(theories, seeds)
def test_kick_leaves_the_field_unchanged(theory, seed):
    q = field(theory, seed)
    q0 = q.copy()
    theory.kick(q, np.zeros_like(q), 0.1)
    np.testing.assert_array_equal(q, q0)


# --------------------------------------------------------------------------- symmetries
@PROPERTY
@given(theories, seeds)
def test_action_is_invariant_under_field_sign_flip(theory, seed):
    q = field(theory, seed)
    assert theory.action(-q) == pytest.approx(theory.action(q), rel=1e-14, abs=1e-14 * action_scale(theory, q))


@PROPERTY
@given(theories, seeds, st.integers(0, 2), st.integers(-6, 6))
def test_action_is_invariant_under_lattice_translations(theory, seed, axis, shift):
    q = field(theory, seed)
    shifted = np.roll(q, shift, axis=axis % theory.dim)
    assert theory.action(shifted) == pytest.approx(theory.action(q), rel=1e-12, abs=1e-12 * action_scale(theory, q))


# --------------------------------------------------------------------------- parameterizations
@PROPERTY
@given(positive_kappa_theories, seeds)
def test_hopping_action_equals_flow_action_of_sqrt_kappa_times_field(theory, seed):
    q = field(theory, seed)
    flow = theory.as_flow()
    assert flow.parameterization == "flow"
    expected = theory.action(q)
    assert flow.action(math.sqrt(theory.kappa) * q) == pytest.approx(
        expected, rel=1e-12, abs=1e-12 * action_scale(theory, q))


@PROPERTY
@given(positive_kappa_theories, seeds)
def test_field_to_flow_multiplies_by_sqrt_kappa(theory, seed):
    q = field(theory, seed)
    np.testing.assert_allclose(theory.field_to(q, "flow"), math.sqrt(theory.kappa) * q, rtol=1e-14)


@PROPERTY
@given(positive_kappa_theories, seeds)
def test_field_to_hopping_inverts_field_to_flow(theory, seed):
    q = field(theory, seed)
    q0 = theory.field_to(q, "flow")
    np.testing.assert_allclose(theory.as_flow().field_to(q0, "hopping"), q, rtol=1e-12)


@PROPERTY
@given(theories, seeds)
def test_field_to_own_parameterization_is_identity(theory, seed):
    q = field(theory, seed)
    np.testing.assert_array_equal(theory.field_to(q, theory.parameterization), q)


@pytest.mark.parametrize(
    "kappa, lam, m2, g",
    [(0.25, 0.5, -4.0, 8.0), (0.21, 0.022, 0.5524, 0.4989)],
    ids=["flow-tutorial-point", "diffusion-paper-point"],
)
def test_hopping_point_converts_to_the_flow_point_of_physics_md(kappa, lam, m2, g):
    flow = Phi4((8, 8), kappa=kappa, lam=lam).as_flow()
    assert flow.m2 == pytest.approx(m2, abs=5e-5)
    assert flow.g == pytest.approx(g, abs=5e-5)


def test_flow_tutorial_point_converts_to_kappa_quarter_lambda_half():
    hopping = Phi4((8, 8), m2=-4.0, g=8.0).as_hopping()
    assert hopping.kappa == pytest.approx(0.25, rel=1e-12)
    assert hopping.lam == pytest.approx(0.5, rel=1e-12)


@PROPERTY
@given(positive_kappa_theories)
def test_as_flow_then_as_hopping_round_trips_kappa_and_lambda(theory):
    back = theory.as_flow().as_hopping()
    assert back.shape == theory.shape
    assert back.kappa == pytest.approx(theory.kappa, rel=1e-10)
    assert back.lam == pytest.approx(theory.lam, rel=1e-10, abs=1e-14)


@PROPERTY
@given(flow_theories)
def test_as_hopping_then_as_flow_round_trips_m2_and_g(theory):
    back = theory.as_hopping().as_flow()
    assert back.m2 == pytest.approx(theory.m2, rel=1e-10, abs=1e-10)
    assert back.g == pytest.approx(theory.g, rel=1e-10)


@PROPERTY
@given(theories)
def test_params_rebuild_the_same_theory(theory):
    assert Phi4(theory.shape, **theory.params()).coefficients == theory.coefficients


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "shape, params",
    [
        ((4, 4), dict(kappa=0.2, lam=-0.1)),
        ((4, 4), dict(m2=1.0, g=-0.5)),
        ((4, 4), dict(kappa=0.2)),
        ((4, 4), dict(lam=0.1)),
        ((4, 4), dict(m2=1.0)),
        ((4, 4), dict()),
        ((4, 4), dict(kappa=0.2, lam=0.1, m2=1.0, g=1.0)),
        ((4, 4), dict(kappa=0.2, g=1.0)),
        ((4, 1), dict(kappa=0.2, lam=0.1)),
        ((1,), dict(kappa=0.2, lam=0.1)),
        ((), dict(kappa=0.2, lam=0.1)),
        ((4, 4), dict(m2=0.0, g=0.0)),
        ((4, 4), dict(m2=-1.0, g=0.0)),
        ((4, 4), dict(kappa=0.25, lam=0.0)),  # 1 - 2 kappa d = 0 in d = 2
        ((4, 4), dict(kappa=-0.3, lam=0.0)),
        ((4, 4, 4), dict(kappa=0.2, lam=0.0)),  # 1 - 2 kappa d < 0 in d = 3
    ],
    ids=[
        "negative-lambda", "negative-g", "only-kappa", "only-lambda", "only-m2", "no-parameters",
        "both-parameterizations", "mixed-parameterizations", "extent-1", "1d-extent-1", "empty-shape",
        "free-massless-flow", "free-tachyonic-flow", "free-critical-hopping", "free-negative-kappa-hopping",
        "free-hopping-3d-beyond-critical",
    ],
)
def test_bad_parameters_raise_value_error(shape, params):
    with pytest.raises(ValueError):
        Phi4(shape, **params)


@pytest.mark.parametrize("params", [dict(m2=0.5, g=0.0), dict(kappa=0.2, lam=0.0)], ids=["flow", "hopping"])
def test_free_field_with_positive_mass_is_accepted(params):
    assert Phi4((4, 4), **params).coefficients[2] == 0.0


# --------------------------------------------------------------------------- Metropolis
def checkerboard_order(shape):
    """(site index, counter) in the documented order: even sites, then odd, each by flat index."""
    parity = np.indices(shape).sum(axis=0).reshape(-1) % 2
    return [(np.unravel_index(i, shape), i) for p in (0, 1) for i in np.flatnonzero(parity == p)]


@PROPERTY
@given(theories, seeds)
def test_metropolis_sweep_with_zero_step_accepts_everything_and_keeps_the_field(theory, seed):
    q = field(theory, seed)
    q0 = q.copy()
    assert theory.metropolis_sweep(q, 0.0, np.uint64(seed)) == theory.n_dof
    np.testing.assert_array_equal(q, q0)


@PROPERTY
@given(theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_is_reproducible_for_a_fixed_key(theory, seed, delta):
    q1 = field(theory, seed)
    q2 = q1.copy()
    key = np.uint64(seed * 7919 + 1)
    assert theory.metropolis_sweep(q1, delta, key) == theory.metropolis_sweep(q2, delta, key)
    np.testing.assert_array_equal(q1, q2)


def test_metropolis_sweep_depends_on_the_key():
    theory = Phi4((6, 6), kappa=0.2, lam=0.1)
    q1 = field(theory, 0)
    q2 = q1.copy()
    theory.metropolis_sweep(q1, 1.0, np.uint64(1))
    theory.metropolis_sweep(q2, 1.0, np.uint64(2))
    assert not np.array_equal(q1, q2)


@PROPERTY
@given(theories, seeds, st.floats(0.1, 3.0))
def test_metropolis_sweep_matches_reference_checkerboard_metropolis(reference_sweep, theory, seed, delta):
    q = field(theory, seed)
    expected = q.copy()
    key = np.uint64(seed)
    n_expected = reference_sweep(theory, expected, delta, key, checkerboard_order(theory.shape), compact=False)
    assert theory.metropolis_sweep(q, delta, key) == n_expected
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("shape", [(4, 5), (5, 4), (3,), (4, 4, 3)])
def test_check_metropolis_rejects_odd_extent(shape):
    with pytest.raises(ValueError):
        Phi4(shape, kappa=0.1, lam=0.1).check_metropolis()


@pytest.mark.parametrize("shape", [(4, 6), (2,), (2, 4, 6)])
def test_check_metropolis_accepts_even_extents(shape):
    Phi4(shape, kappa=0.1, lam=0.1).check_metropolis()


# --------------------------------------------------------------------------- memory layout
def test_force_does_not_depend_on_memory_layout():
    theory = Phi4((4, 6), kappa=0.2, lam=0.1)
    q = field(theory, 0)
    np.testing.assert_allclose(theory.force(np.asfortranarray(q)), theory.force(q), rtol=1e-14)


def test_force_batch_does_not_depend_on_memory_layout():
    theory = Phi4((4, 6), kappa=0.2, lam=0.1)
    qs = field(theory, 0, batch=3)
    np.testing.assert_allclose(theory.force_batch(np.asfortranarray(qs)), theory.force_batch(qs), rtol=1e-14)


def test_kick_refuses_a_momentum_it_cannot_update_in_place():
    theory = Phi4((4, 6), kappa=0.2, lam=0.1)
    p = np.asfortranarray(np.zeros(theory.shape))
    with pytest.raises(ValueError, match="C-contiguous"):
        theory.kick(field(theory, 0), p, 0.1)


def test_metropolis_sweep_refuses_a_field_it_cannot_update_in_place():
    theory = Phi4((4, 6), kappa=0.2, lam=0.1)
    with pytest.raises(ValueError, match="C-contiguous"):
        theory.metropolis_sweep(np.asfortranarray(field(theory, 0)), 0.5, np.uint64(3))
