"""phi^4 observables: cumulants, time-slice and point-to-point correlators, xi_2, |phi|, the Ising
energy and the pole mass (PHYSICS.md, docs/physics.md), against the free field's exact lattice
propagator, the symmetries phi -> -phi and translations, and direct sums."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice import Phi4
from observables import correlators, phi4
from observables.stats import binned_mean_error
from samplers import HMC
from samplers.chain import ChainState, MemoryWriter, run_chain
from tests.exact import free_field_chi2, free_field_phi2, free_field_slice_correlator, free_field_xi2

Z_MAX = 4.0
ODD = {"M", "M^3", "M^5"}


def binned_jackknife(f, series, n_bins=20):
    """f(<x_1>, <x_2>, ...) and its error by the jackknife over n_bins consecutive bins."""
    size = len(series[0]) // n_bins
    bins = np.array([np.asarray(x[: size * n_bins], dtype=float).reshape(n_bins, size).mean(axis=1)
                     for x in series])  # (n_inputs, n_bins)
    total = bins.mean(axis=1)
    loo = (total[:, None] * n_bins - bins) / (n_bins - 1)
    values = np.array([f(*loo[:, b]) for b in range(n_bins)])
    return f(*total), math.sqrt((n_bins - 1) * ((values - values.mean()) ** 2).mean())


def derived_by_name(theory):
    return {d.name: d for d in phi4.derived(theory)}


# --------------------------------------------------------------------------- definitions
def test_cumulants_of_poisson_moments_all_equal_its_mean():
    lam = 1.7
    k = np.arange(80)
    pmf = np.exp(-lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k]))
    moments = [float((k**n * pmf).sum()) for n in range(1, 7)]
    assert phi4.cumulants(moments) == pytest.approx([lam] * 6, rel=1e-10)


def test_cumulants_of_a_gaussian_vanish_beyond_the_second():
    mu, s2 = 0.3, 2.0  # raw moments of N(mu, s2)
    m = [mu, mu**2 + s2, mu**3 + 3 * mu * s2, mu**4 + 6 * mu**2 * s2 + 3 * s2**2,
         mu**5 + 10 * mu**3 * s2 + 15 * mu * s2**2, mu**6 + 15 * mu**4 * s2 + 45 * mu**2 * s2**2 + 15 * s2**3]
    assert phi4.cumulants(m) == pytest.approx([mu, s2, 0, 0, 0, 0], abs=1e-12)


def test_slice_products_are_direct_double_sums():
    c = np.random.default_rng(0).standard_normal((2, 6, 3, 2))
    mb = c.mean(axis=(2, 3))
    C = phi4.slice_products(c)
    for t in range(4):
        direct = np.array([sum(mb[n, t0] * mb[n, (t0 + t) % 6] for t0 in range(6)) / 6 for n in range(2)])
        np.testing.assert_allclose(C[:, t], direct, atol=1e-14)


def test_momentum_magnetization_is_the_fourier_sum_of_slice_products():
    # V |M(p)|^2 = V_t sum_{t=0}^{L0-1} C(t) cos(p t), with C(L0 - t) = C(t)
    c = np.random.default_rng(1).standard_normal((4, 8, 5))
    C = phi4.slice_products(c)
    full = np.concatenate([C, C[:, -2:0:-1]], axis=1)  # t = 0..7
    p = 2 * np.pi / 8
    np.testing.assert_allclose(8 * 5 * phi4.momentum_magnetization_sq(c),
                               5 * full @ np.cos(p * np.arange(8)), atol=1e-13)


def test_primaries_do_not_depend_on_the_batch_size():
    theory = Phi4((4, 6), kappa=0.2, lam=0.1)
    c = np.random.default_rng(2).standard_normal((7, 4, 6))
    whole, batched = phi4.primaries(c, theory), phi4.primaries(c, theory, batch=3)
    assert whole.keys() == batched.keys()
    for k in whole:
        np.testing.assert_allclose(whole[k], batched[k], atol=1e-14)


def test_action_density_uses_the_theorys_parameterization():
    theory = Phi4((4, 4), m2=-1.0, g=0.5)
    c = np.random.default_rng(3).standard_normal((3, 4, 4))
    direct = [sum(((np.roll(x, -1, mu) - x) ** 2).sum() for mu in (0, 1)) + (-1.0 * x**2 + 0.5 * x**4).sum()
              for x in c]
    np.testing.assert_allclose(phi4.primaries(c, theory)["S/V"], np.array(direct) / 16, rtol=1e-12)


def test_every_derived_input_is_a_primary():
    theory = Phi4((6, 4, 4), kappa=0.2, lam=0.1)
    names = phi4.primaries(np.zeros((2, 6, 4, 4)), theory).keys()
    for d in phi4.derived(theory):
        assert set(d.inputs) <= names, d.name


def test_abs_field_is_the_site_mean_of_abs_phi():
    c = np.random.default_rng(4).standard_normal((3, 4, 6))
    direct = [sum(abs(x[i, j]) for i in range(4) for j in range(6)) / 24 for x in c]
    np.testing.assert_allclose(phi4.primaries(c, Phi4((4, 6), kappa=0.2, lam=0.1))["|phi|"], direct, atol=1e-14)


def test_point_products_sum_over_orbits_to_V_M_squared():
    # sum_x C(x) = (1/V) (sum_y phi_y)^2 per configuration: so sum_x G_c(x) is chi_2 identically
    for shape in [(6, 6), (6, 4), (4, 4, 2)]:
        theory = Phi4(shape, kappa=0.2, lam=0.1)
        c = np.random.default_rng(5).standard_normal((4,) + shape)
        p = phi4.primaries(c, theory)
        orb = correlators.orbits(shape)
        total = sum(orb.size[k] * p[f"C{orb.name(k)}"] for k in range(len(orb)))
        np.testing.assert_allclose(total, theory.n_dof * p["M"] ** 2, rtol=1e-12, err_msg=str(shape))


def test_sum_of_connected_correlator_is_the_susceptibility():
    theory = Phi4((6, 4), kappa=0.2, lam=0.1)
    p = phi4.primaries(np.random.default_rng(6).standard_normal((50, 6, 4)) + 0.3, theory)
    means = {k: v.mean() for k, v in p.items()}
    d = derived_by_name(theory)
    orb = correlators.orbits(theory.shape)
    value = lambda name: d[name].f(*(means[k] for k in d[name].inputs))
    total = sum(orb.size[k] * value(f"G_c{orb.name(k)}") for k in range(len(orb)))
    assert total == pytest.approx(value("chi_2"), rel=1e-10)


def test_point_products_at_time_separations_sum_to_the_slice_correlator():
    # sum_{x1} C(t, x1) = V_t C(t): the point-to-point and zero-momentum correlators agree on "time"
    c = np.random.default_rng(7).standard_normal((3, 8, 5))
    full = correlators.point_correlator(c)
    C = phi4.slice_products(c)
    for t in range(5):
        np.testing.assert_allclose(full[:, t].sum(axis=1), 5 * C[:, t], atol=1e-13)


def test_ising_energy_averages_the_unit_separations_of_every_axis():
    assert phi4.ising_energy_weights((8, 8)) == {"C(1,0)": 1.0}
    assert phi4.ising_energy_weights((8, 4)) == {"C(1,0)": 0.5, "C(0,1)": 0.5}
    w = phi4.ising_energy_weights((6, 4, 4))
    assert w == pytest.approx({"C(1,0,0)": 1 / 3, "C(0,1,0)": 2 / 3})


# --------------------------------------------------------------------------- M sign over the chain
def test_sign_history_counts_the_minority_and_the_changes():
    h = phi4.sign_history(np.array([0.5, 0.2, -0.1, 0.3, 0.0, 0.4, -0.2, -0.3]))
    assert (h.n, h.changes, h.majority) == (8, 3, 1)
    assert h.minority_fraction == pytest.approx(3 / 8)


def test_sign_note_for_a_chain_that_never_changes_sign_quotes_both_susceptibilities():
    M = 0.5 + 0.01 * np.random.default_rng(8).standard_normal(1000)
    note = phi4.sign_note(M, 64)
    assert note.startswith("M never changes sign")
    assert f"{64 * np.mean(M**2):.6g}" in note and "chi_2" in note


def test_sign_note_warns_about_rare_tunnelling_and_is_silent_for_a_mixing_chain():
    M = np.concatenate([np.full(500, 0.5), np.full(500, -0.5), np.full(500, 0.5)])
    assert "only 2 times" in phi4.sign_note(M, 64)
    assert phi4.sign_note(np.random.default_rng(9).standard_normal(1000), 64) is None


# --------------------------------------------------------------------------- symmetries
shapes = st.lists(st.integers(2, 5), min_size=1, max_size=3).map(tuple)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes)
def test_even_observables_are_invariant_and_odd_ones_flip_under_phi_to_minus_phi(seed, shape):
    theory = Phi4(shape, kappa=0.1, lam=0.2)
    c = np.random.default_rng(seed).standard_normal((3,) + shape)
    p, m = phi4.primaries(c, theory), phi4.primaries(-c, theory)
    for k in p:
        np.testing.assert_allclose(m[k], -p[k] if k in ODD else p[k], rtol=1e-12, atol=1e-14, err_msg=k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, data=st.data())
def test_observables_are_invariant_under_translations(seed, shape, data):
    theory = Phi4(shape, kappa=0.1, lam=0.2)
    c = np.random.default_rng(seed).standard_normal((3,) + shape)
    shift = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    moved = np.roll(c, shift, axis=tuple(range(1, len(shape) + 1)))
    p, q = phi4.primaries(c, theory), phi4.primaries(moved, theory)
    for k in p:
        np.testing.assert_allclose(q[k], p[k], rtol=1e-12, atol=1e-14, err_msg=k)


# --------------------------------------------------------------------------- free field vs exact
FREE = Phi4((8, 8), m2=0.5, g=0.0)  # xi_2 = 1/m = 1.41


@pytest.fixture(scope="module")
def free():
    """HMC ensemble of the free field, tau_int(M) about 6 trajectories (bins of 500).

    Trajectory length 0.7, not the default 1: the free field's modes are harmonic oscillators of
    frequency omega(p) = sqrt(2 (B - A sum cos p)) in [1, 4.1], and at tau = 1 the mode p = (pi, 0)
    has omega tau = 3 ~ pi, so each trajectory nearly maps q -> -q and that mode's amplitude hardly
    changes (near non-ergodic): G(t) then deviates with alternating signs in t. For tau < pi / 4.1
    no mode is near resonance."""
    writer = MemoryWriter()
    run_chain(FREE, HMC(traj_length=0.7), ChainState.start(FREE, 5), 10_000, n_therm=300, writer=writer)
    configs, _, _ = writer.arrays()
    return phi4.primaries(configs, FREE)


def assert_close(value, err, exact):
    z = (value - exact) / err
    assert abs(z) < Z_MAX, f"{value:.6f} +- {err:.6f} vs exact {exact:.6f}: z = {z:.2f}"


def check_derived(p, name, exact):
    d = derived_by_name(FREE)[name]
    assert_close(*binned_jackknife(d.f, [p[k] for k in d.inputs]), exact)


def test_free_field_susceptibility_matches_the_propagator_at_zero_momentum(free):
    A, B, _ = FREE.coefficients
    check_derived(free, "chi_2", free_field_chi2(FREE.shape, A, B))


@pytest.mark.parametrize("t", [0, 1, 2, 4])
def test_free_field_time_slice_correlator_matches_the_propagator(free, t):
    A, B, _ = FREE.coefficients
    check_derived(free, f"G(t={t})", free_field_slice_correlator(FREE.shape, A, B, t))


def test_free_field_second_moment_length_is_one_over_the_mass(free):
    A, B, _ = FREE.coefficients
    assert free_field_xi2(FREE.shape, A, B) == pytest.approx(1 / math.sqrt(0.5))
    check_derived(free, "xi_2", free_field_xi2(FREE.shape, A, B))


def test_free_field_binder_cumulant_vanishes(free):
    check_derived(free, "U_L", 0.0)


def test_free_field_higher_cumulants_vanish(free):
    for n in (3, 4):
        check_derived(free, f"kappa_{n}", 0.0)


def test_free_field_action_density_is_one_half(free):
    # equipartition: a Gaussian action of V modes has <S> = V / 2
    assert_close(*binned_mean_error(free["S/V"], 20), 0.5)


def free_field_point_correlator(shape, A, B, x):
    """<phi(0) phi(x)> of the free field: (1/V) sum_p cos(p.x) / (2 (B - A sum_mu cos p_mu))."""
    grids = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in shape], indexing="ij")
    kernel = B - A * sum(np.cos(p) for p in grids)
    phase = sum(p * k for p, k in zip(grids, x))
    return float(np.mean(np.cos(phase) / (2.0 * kernel)))


def test_free_field_point_correlator_in_momentum_space_is_the_site_variance_at_zero():
    A, B, _ = FREE.coefficients
    assert free_field_point_correlator(FREE.shape, A, B, (0, 0)) == pytest.approx(free_field_phi2(FREE.shape, A, B))


@pytest.mark.parametrize("x", [(0, 0), (1, 0), (1, 1), (2, 1), (4, 4)])
def test_free_field_connected_correlator_matches_the_propagator(free, x):
    A, B, _ = FREE.coefficients
    check_derived(free, f"G_c({x[0]},{x[1]})", free_field_point_correlator(FREE.shape, A, B, x))


def test_free_field_ising_energy_is_the_nearest_neighbour_propagator(free):
    A, B, _ = FREE.coefficients
    exact = np.mean([free_field_point_correlator(FREE.shape, A, B, e) for e in [(1, 0), (0, 1)]])
    check_derived(free, "E_Ising", exact)


def test_free_field_abs_phi_is_that_of_a_gaussian(free):
    # each phi_x is Gaussian with variance <phi^2>: <|phi_x|> = sqrt(2 <phi^2> / pi)
    A, B, _ = FREE.coefficients
    assert_close(*binned_mean_error(free["|phi|"], 20), math.sqrt(2 * free_field_phi2(FREE.shape, A, B) / math.pi))


def test_free_field_pole_mass_is_the_pole_of_the_lattice_propagator(free):
    # cosh m_p = 1 + m^2 / 2 = 1.25 (flow form): m_p = ln 2
    res = phi4.pole_mass(free, FREE)
    assert_close(res.m.value, res.m.error, math.log(2))
    assert res.fit.chi2_dof < 5 and res.t == (1, 2, 3, 4)


def test_data_derived_gives_the_pole_mass_as_derived_quantities(free):
    d = {r.name: r for r in phi4.data_derived(free, FREE)}
    assert set(d) == {"m_p", "m_p*L0"}
    m = d["m_p"].f(*(free[k].mean() for k in d["m_p"].inputs))
    assert m == pytest.approx(phi4.pole_mass(free, FREE).m.value, rel=1e-12)
