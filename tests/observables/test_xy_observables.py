"""XY observables: energy, specific heat, magnetization, helicity modulus, vortices, spin correlator
(PHYSICS.md, docs/physics.md), against the exact 2 x 2 ring, hand-built configurations and the
symmetries of the model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice import XY
from observables import xy
from observables.stats import binned_mean_error, jackknife
from samplers import Metropolis
from samplers.chain import ChainState, MemoryWriter, run_chain
from tests.exact import ring_link_cos

Z_MAX = 4.0
TWO_PI = 2 * np.pi


def wrap(x):
    return x - TWO_PI * np.floor((x + np.pi) / TWO_PI)


def random_angles(seed, shape, n=3):
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (n,) + tuple(shape))


def vortex(shape, center, sign=1):
    """theta(x) = sign * atan2(x1 - c1, x0 - c0) around a point c inside a plaquette."""
    x0, x1 = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return wrap(sign * np.arctan2(x1 - center[1], x0 - center[0]))


# --------------------------------------------------------------------------- definitions
def test_energy_matches_direct_sum_over_links():
    t = random_angles(0, (3, 5))
    direct = [-sum(np.cos(np.roll(c, -1, mu) - c).sum() for mu in (0, 1)) / 15 for c in t]
    np.testing.assert_allclose(xy.energy_density(t), direct, atol=1e-14)


def test_ordered_configuration_has_unit_magnetization_and_helicity():
    theory = XY((4, 6), 1.3)
    p = xy.primaries(np.full((2, 4, 6), 0.7), theory)
    for name, value in {"e": -2.0, "|m|": 1.0, "|m|^4": 1.0, "Upsilon": 1.0, "rho_v": 0.0}.items():
        np.testing.assert_allclose(p[name], value, atol=1e-14, err_msg=name)


def test_helicity_modulus_matches_its_definition():
    beta = 0.8
    t = random_angles(1, (4, 6))
    direct = []
    for c in t:
        terms = []
        for mu in (0, 1):
            d = np.roll(c, -1, mu) - c
            terms.append(np.cos(d).mean() - beta * np.sin(d).sum() ** 2 / c.size)
        direct.append(np.mean(terms))
    np.testing.assert_allclose(xy.helicity_modulus(t, beta), direct, atol=1e-13)


def test_spin_slice_products_sum_to_the_magnetization_squared():
    # sum_{t=0}^{L0-1} C(t) = L0 |m|^2; C(L0 - t) = C(t)
    t = random_angles(2, (8, 3))
    C = xy.slice_products(t)
    full = np.concatenate([C, C[:, -2:0:-1]], axis=1)
    m2 = (xy.magnetization(t) ** 2).sum(axis=1)
    np.testing.assert_allclose(full.sum(axis=1), 8 * m2, atol=1e-14)


def test_primaries_do_not_depend_on_the_batch_size():
    theory = XY((4, 6), 0.9)
    t = random_angles(3, (4, 6), n=7)
    whole, batched = xy.primaries(t, theory), xy.primaries(t, theory, batch=3)
    for k in whole:
        np.testing.assert_allclose(whole[k], batched[k], atol=1e-14)


def test_every_derived_input_is_a_primary():
    theory = XY((8, 8), 1.0)
    names = xy.primaries(random_angles(4, (8, 8)), theory).keys()
    for d in xy.derived(theory):
        assert set(d.inputs) <= names, d.name


# --------------------------------------------------------------------------- vortices
def test_vorticity_is_an_integer_in_minus_one_to_one_summing_to_zero():
    w = xy.vorticity(random_angles(5, (6, 8), n=50))
    assert w.dtype == np.int64
    assert set(np.unique(w)) <= {-1, 0, 1} and set(np.unique(w)) == {-1, 0, 1}
    assert not w.sum(axis=(1, 2)).any()  # the torus has no net winding


@pytest.mark.parametrize("sign", [1, -1])
def test_hand_built_vortex_has_the_sign_of_its_winding(sign):
    # counterclockwise in the (axis 0, axis 1) plane is +1: the plaquette with corner (3, 4)
    t = vortex((8, 10), (3.5, 4.5), sign)
    w = xy.vorticity(t[None])[0]
    assert w[3, 4] == sign
    assert w.sum() == 0


def test_vortex_density_counts_vortices_and_antivortices():
    t = vortex((8, 10), (3.5, 4.5))
    w = xy.vorticity(t[None])[0]
    assert xy.vortex_density(t[None])[0] == pytest.approx(np.abs(w).sum() / 80)


# --------------------------------------------------------------------------- symmetries
shapes = st.tuples(st.integers(2, 6), st.integers(2, 6))


def assert_same_primaries(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-11, err_msg=k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, alpha=st.floats(-10, 10))
def test_observables_are_invariant_under_global_rotations(seed, shape, alpha):
    t = random_angles(seed, shape)
    theory = XY(shape, 1.1)
    assert_same_primaries(xy.primaries(t, theory), xy.primaries(wrap(t + alpha), theory))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, s0=st.integers(0, 5), s1=st.integers(0, 5))
def test_observables_are_invariant_under_translations(seed, shape, s0, s1):
    t = random_angles(seed, shape)
    theory = XY(shape, 1.1)
    assert_same_primaries(xy.primaries(t, theory), xy.primaries(np.roll(t, (s0, s1), axis=(1, 2)), theory))


# --------------------------------------------------------------------------- Monte Carlo vs exact
def exact_2x2_energy(beta):
    """<e> on 2 x 2: x + mu = x - mu, so the 8 (x, mu) terms are the 4 links of a ring, each twice,
    and e = -2 <cos> of an O(2) ring of 4 links with coupling 2 beta."""
    return -2 * ring_link_cos(2 * beta, 4)


def metropolis_2x2(beta, seed, n):
    """(theory, configurations) of a 2 x 2 Metropolis chain of n configurations."""
    theory = XY((2, 2), beta)
    writer = MemoryWriter()
    run_chain(theory, Metropolis(), ChainState.start(theory, seed), n, n_therm=300, writer=writer)
    return theory, writer.arrays()[0]


@pytest.mark.parametrize("beta", [0.5, 1.2])
def test_2x2_energy_per_site_matches_exact_ring(beta):
    theory, configs = metropolis_2x2(beta, seed=3, n=6000)
    mean, err = binned_mean_error(xy.primaries(configs, theory)["e"], 20)
    exact = exact_2x2_energy(beta)
    assert abs(mean - exact) / err < Z_MAX, f"{mean:.5f} +- {err:.5f} vs {exact:.5f}"


def exact_2x2_specific_heat(beta, h=1e-4):
    """C_v = beta^2 V (<e^2> - <e>^2) = -beta^2 d<e>/dbeta (S = beta V e), by a central difference of
    the exact energy (error O(h^2) ~ 1e-8)."""
    return -beta**2 * (exact_2x2_energy(beta + h) - exact_2x2_energy(beta - h)) / (2 * h)


def test_2x2_specific_heat_reference_matches_direct_quadrature():
    # independent of the ring mapping: Var(e) from the 2 x 2 partition function integrated on a grid
    # (one angle fixed by the global symmetry; the periodic trapezoid rule converges exponentially)
    beta, n = 0.9, 40
    g = 2 * np.pi * np.arange(n) / n
    t = np.stack(np.meshgrid(0.0, g, g, g, indexing="ij"), axis=-1).reshape(-1, 2, 2)
    e = xy.energy_density(t)
    w = np.exp(-beta * 4 * e)
    mean, mean2 = (w * e).sum() / w.sum(), (w * e * e).sum() / w.sum()
    assert beta**2 * 4 * (mean2 - mean**2) == pytest.approx(exact_2x2_specific_heat(beta), rel=1e-6)


@pytest.mark.parametrize("beta", [0.5, 1.2])
def test_2x2_specific_heat_matches_exact_ring(beta):
    theory, configs = metropolis_2x2(beta, seed=4, n=8000)
    p = xy.primaries(configs, theory)
    d = {r.name: r for r in xy.derived(theory)}["C_v"]
    value, err = jackknife(d, p, block_size=400)
    exact = exact_2x2_specific_heat(beta)
    assert abs(value - exact) / err < Z_MAX, f"{value:.5f} +- {err:.5f} vs {exact:.5f}"
