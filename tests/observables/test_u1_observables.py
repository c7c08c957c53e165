"""U(1) observables: Wilson loops, Creutz ratios, Polyakov loops, the topological charge and its
distribution (PHYSICS.md, docs/physics.md), against brute-force sums, symmetries and the exact torus
results (character expansion, charge distribution)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ive

from lattice import U1
from observables import u1
from observables.stats import binned_mean_error, gamma_method
from samplers import HeatBath, Metropolis
from samplers.chain import ChainState, MemoryWriter, run_chain
from tests.exact import (u1_charge_distribution, u1_charge_weights, u1_topological_susceptibility_infinite,
                         u1_topological_susceptibility_torus, u1_wilson_loop_torus)

Z_MAX = 4.0
TWO_PI = 2 * np.pi


def wrap(x):
    """to [-pi, pi), the layout of stored link angles"""
    return x - TWO_PI * np.floor((x + np.pi) / TWO_PI)


def random_links(seed, shape, n=3):
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, (n, 2) + tuple(shape))


def brute_force_loop(t, a, b):
    """(1/V) sum_x cos of the a x b loop (a along axis 0) by walking its links one by one."""
    L0, L1 = t.shape[1:]
    total = 0.0
    for x0 in range(L0):
        for x1 in range(L1):
            angle = 0.0
            for k in range(a):
                angle += t[0, (x0 + k) % L0, x1] - t[0, (x0 + k) % L0, (x1 + b) % L1]
            for k in range(b):
                angle += t[1, (x0 + a) % L0, (x1 + k) % L1] - t[1, x0, (x1 + k) % L1]
            total += np.cos(angle)
    return total / (L0 * L1)


def instanton(shape, k=1):
    """Links with every plaquette angle 2 pi k / V (mod 2 pi): a configuration of charge k."""
    L0, L1 = shape
    V = L0 * L1
    t = np.zeros((2, L0, L1))
    x0 = np.arange(L0)[:, None]
    x1 = np.arange(L1)[None, :]
    t[1] = TWO_PI * k * x0 / V + 0 * x1
    t[0, L0 - 1] = -TWO_PI * k * np.arange(L1) / L1
    return wrap(t)


# --------------------------------------------------------------------------- definitions
def test_oriented_wilson_loops_match_brute_force_on_a_rectangular_lattice():
    t = random_links(0, (5, 6))
    w = u1.oriented_wilson_loops(t, 5, 6)
    for n in range(len(t)):
        for a in range(1, 6):
            for b in range(1, 7):
                assert w[n, a - 1, b - 1] == pytest.approx(brute_force_loop(t[n], a, b), abs=1e-13)


def test_wilson_loops_average_both_orientations():
    t = random_links(1, (6, 6))
    w = u1.oriented_wilson_loops(t, 3, 3)
    W = u1.wilson_loops(t, 3, 3)
    np.testing.assert_allclose(W, 0.5 * (w + w.transpose(0, 2, 1)), atol=1e-14)
    np.testing.assert_allclose(W, W.transpose(0, 2, 1), atol=1e-14)


def test_w11_equals_average_plaquette_per_configuration():
    t = random_links(2, (4, 6), n=5)
    np.testing.assert_allclose(u1.wilson_loops(t, 1, 1)[:, 0, 0], u1.average_plaquette(t), atol=1e-14)


def test_primaries_do_not_depend_on_the_batch_size():
    t = random_links(3, (8, 8), n=7)
    theory = U1((8, 8), 1.0)
    whole, batched = u1.primaries(t, theory), u1.primaries(t, theory, batch=3)
    assert whole.keys() == batched.keys()
    for k in whole:
        np.testing.assert_allclose(whole[k], batched[k], atol=1e-14)


def test_primaries_cover_every_loop_up_to_half_the_lattice():
    p = u1.primaries(random_links(4, (8, 8)), U1((8, 8), 1.0))
    assert {f"W({R},{T})" for R in range(1, 5) for T in range(1, 5)} <= p.keys()
    assert "W(5,1)" not in p and all(v.shape == (3,) for v in p.values())


def test_every_derived_input_is_a_primary():
    theory = U1((8, 8), 1.0)
    names = u1.primaries(random_links(5, (8, 8)), theory).keys()
    for d in u1.derived(theory):
        assert set(d.inputs) <= names, d.name


def test_creutz_ratio_of_area_law_loops_is_the_string_tension():
    # infinite volume: W(R, T) = r^(R T), so chi(R, T) = -ln r for every R, T >= 2
    r = ive(1, 1.5) / ive(0, 1.5)
    theory = U1((8, 8), 1.5)
    means = {f"W({R},{T})": r ** (R * T) for R in range(1, 5) for T in range(1, 5)}
    for d in u1.derived(theory):
        if d.name.startswith("chi("):
            assert d.f(*(means[k] for k in d.inputs)) == pytest.approx(-np.log(r), rel=1e-12)


# --------------------------------------------------------------------------- topological charge
def test_charge_is_an_integer_on_random_configurations():
    t = random_links(6, (6, 10), n=200) * 3  # also links far outside [-pi, pi)
    q = u1.wrap_symmetric(u1.plaquette_angles(t)).sum(axis=(1, 2)) / TWO_PI
    np.testing.assert_allclose(q, np.rint(q), atol=1e-9)
    Q = u1.topological_charge(t)
    assert Q.dtype == np.int64 and np.array_equal(Q, np.rint(q))


@pytest.mark.parametrize("k", [1, -1, 3])
def test_instanton_configuration_has_its_charge(k):
    assert u1.topological_charge(instanton((6, 8), k)[None])[0] == k


def test_charge_refuses_a_configuration_with_a_nan_link():
    t = random_links(7, (4, 4), n=2)
    t[1, 0, 2, 3] = np.nan
    with pytest.raises(ValueError, match="configuration 1"):
        u1.topological_charge(t)


def test_charge_wrap_is_to_the_half_open_interval_minus_pi_to_pi():
    x = np.array([-np.pi, np.pi, 3 * np.pi, -3 * np.pi + 1e-9, 0.5])
    np.testing.assert_allclose(u1.wrap_symmetric(x), [np.pi, np.pi, np.pi, -np.pi + 1e-9, 0.5], atol=1e-12)


# --------------------------------------------------------------------------- Polyakov loops
def test_polyakov_correlator_is_the_strip_of_plaquettes_between_the_lines():
    # Stokes: the plaquette angles of the L0 x r strip x1 <= x1' < x1 + r sum to Phi(x1) - Phi(x1 + r)
    t = random_links(8, (4, 6), n=2)
    angles = u1.plaquette_angles(t)
    pc = u1.polyakov_correlator(t, 3)
    for r in range(4):
        strip = [angles[:, :, [(x1 + k) % 6 for k in range(r)]].sum(axis=(1, 2)) for x1 in range(6)]
        np.testing.assert_allclose(pc[:, r], np.mean(np.cos(strip), axis=0), atol=1e-12)


def test_polyakov_loop_is_the_product_of_the_time_links():
    t = random_links(9, (5, 3), n=2)
    direct = np.array([[np.prod([np.exp(1j * c[0, x0, x1]) for x0 in range(5)]) for x1 in range(3)] for c in t])
    np.testing.assert_allclose(u1.polyakov_loops(t), direct, atol=1e-13)


def test_center_transformation_keeps_the_action_and_rotates_the_polyakov_loop():
    # theta_0(t*, x1) += alpha for all x1: every plaquette keeps its angle, P -> e^{i alpha} P, so <P> = 0
    t = random_links(10, (4, 6), n=2)
    g = t.copy()
    g[:, 0, 2] += 0.9
    np.testing.assert_allclose(u1.plaquette_angles(g), u1.plaquette_angles(t), atol=1e-13)
    np.testing.assert_allclose(u1.polyakov_loops(g), np.exp(0.9j) * u1.polyakov_loops(t), atol=1e-13)
    np.testing.assert_allclose(u1.polyakov_correlator(g, 3), u1.polyakov_correlator(t, 3), atol=1e-13)


def test_primaries_hold_the_polyakov_correlator_up_to_half_the_spatial_extent():
    p = u1.primaries(random_links(11, (4, 6)), U1((4, 6), 1.0))
    assert {f"PolyCorr(r={r})" for r in range(4)} <= p.keys() and "PolyCorr(r=4)" not in p
    np.testing.assert_array_equal(p["PolyCorr(r=0)"], 1.0)


# --------------------------------------------------------------------------- P(Q) from a chain
@pytest.mark.filterwarnings("ignore::observables.stats.ShortChainWarning")  # 8 measurements
def test_charge_distribution_bins_are_fractions_summing_to_one():
    Q = np.array([0, 1, -1, 0, 2, 0, 1, 0])
    d = u1.charge_distribution(Q)
    assert list(d.q) == [-2, -1, 0, 1, 2]
    np.testing.assert_allclose(d.p, [0, 1 / 8, 4 / 8, 2 / 8, 1 / 8])
    s = u1.charge_distribution(Q, symmetric=True)
    np.testing.assert_allclose(s.p, [1 / 16, 3 / 16, 4 / 8, 3 / 16, 1 / 16])


def test_charge_distribution_errors_include_the_autocorrelation():
    # each charge held for k = 8 measurements: tau_int = k / 2, the error sqrt(k) x the binomial one
    k = 8
    Q = np.repeat(np.random.default_rng(12).integers(-2, 3, 4000), k)
    d = u1.charge_distribution(Q)
    naive = np.sqrt(d.p * (1 - d.p) / len(Q))
    np.testing.assert_allclose(d.error / naive, np.sqrt(k), rtol=0.15)


# --------------------------------------------------------------------------- invariances
shapes = st.tuples(st.integers(2, 6), st.integers(2, 6))


def assert_same_primaries(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-11, err_msg=k)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes, s0=st.integers(0, 5), s1=st.integers(0, 5))
def test_observables_are_invariant_under_translations(seed, shape, s0, s1):
    t = random_links(seed, shape)
    theory = U1(shape, 1.0)
    assert_same_primaries(u1.primaries(t, theory), u1.primaries(np.roll(t, (s0, s1), axis=(2, 3)), theory))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=shapes)
def test_observables_are_gauge_invariant(seed, shape):
    t = random_links(seed, shape)
    alpha = np.random.default_rng(seed + 1).uniform(-np.pi, np.pi, (len(t),) + shape)
    g = t.copy()
    g[:, 0] += alpha - np.roll(alpha, -1, axis=1)
    g[:, 1] += alpha - np.roll(alpha, -1, axis=2)
    theory = U1(shape, 1.0)
    assert_same_primaries(u1.primaries(t, theory), u1.primaries(wrap(g), theory))


# --------------------------------------------------------------------------- exact distribution of Q
@pytest.mark.parametrize("beta, volume", [(1.0, 64), (2.0, 16), (2.0, 64)])
def test_charge_weights_sum_to_the_character_expansion_partition_function(beta, volume):
    # Poisson summation: sum_Q f(Q) = sum_n (I_n / I_0)^V
    n = np.arange(-40, 41)
    Z = ((ive(n, beta) / ive(0, beta)) ** volume).sum()
    assert u1_charge_weights(beta, volume).sum() == pytest.approx(Z, rel=1e-9)


def test_charge_vanishes_on_two_plaquettes():
    # two plaquettes: wrap(x) + wrap(-x) = 0, so Q = 0 always (up to the quadrature's truncation)
    assert u1_charge_distribution(1.0, 2)[12] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_charge_susceptibility_approaches_independent_plaquettes_at_large_volume(beta):
    # V -> infinity: chi_t = <phi^2> / (2 pi)^2 with the corrections ~ (I_1/I_0)^V
    assert u1_topological_susceptibility_torus(beta, 64) == pytest.approx(
        u1_topological_susceptibility_infinite(beta), rel=1e-6)
    assert u1_topological_susceptibility_torus(beta, 16) < u1_topological_susceptibility_infinite(beta)


# --------------------------------------------------------------------------- Monte Carlo vs exact
@pytest.fixture(scope="module", params=[1.0, 2.0], ids=lambda b: f"beta={b}")
def ensemble(request):
    """8 x 8 Metropolis ensemble, 2 sweeps apart: tau_int of Q about 1.5 at beta = 2 (0.5 at beta = 1),
    so 20 bins of 500 configurations are independent."""
    theory = U1((8, 8), request.param)
    writer = MemoryWriter()
    run_chain(theory, Metropolis(), ChainState.start(theory, 11), 10_000, every=2, n_therm=300, writer=writer)
    configs, _, _ = writer.arrays()
    return theory, u1.primaries(configs, theory)


def assert_agrees(series, exact):
    mean, err = binned_mean_error(series, 20)
    z = (mean - exact) / err
    assert abs(z) < Z_MAX, f"{mean:.6f} +- {err:.6f} vs exact {exact:.6f}: z = {z:.2f}"


@pytest.mark.parametrize("R, T", [(1, 1), (2, 2), (2, 3)])
def test_wilson_loop_matches_character_expansion(ensemble, R, T):
    theory, p = ensemble
    assert_agrees(p[f"W({R},{T})"], u1_wilson_loop_torus(theory.beta, 64, R * T))


def test_topological_susceptibility_matches_exact_charge_distribution(ensemble):
    theory, p = ensemble
    assert_agrees(p["Q^2"] / 64, u1_topological_susceptibility_torus(theory.beta, 64))


def test_charge_is_an_integer_on_sampled_configurations(ensemble):
    _, p = ensemble
    assert p["Q"].dtype == np.int64 and np.abs(p["Q"]).max() >= 1  # the chain visits nonzero charges


def test_charge_distribution_matches_the_exact_torus_distribution(ensemble):
    theory, p = ensemble
    d = u1.charge_distribution(p["Q"], q_max=12)
    exact = u1_charge_distribution(theory.beta, 64, q_max=12)
    seen = exact > 1e-3
    z = (d.p[seen] - exact[seen]) / d.error[seen]
    assert seen.sum() >= 5 and np.all(np.abs(z) < Z_MAX), dict(zip(d.q[seen], np.round(z, 2)))


def test_charge_distribution_plot_is_written(ensemble, tmp_path):
    pytest.importorskip("matplotlib")
    from observables.plots import plot_charge_distribution

    theory, p = ensemble
    d = u1.charge_distribution(p["Q"])
    path = plot_charge_distribution([d, u1.charge_distribution(p["Q"], symmetric=True)], tmp_path / "pq.png",
                                    labels=["P(Q)", "symmetrized"],
                                    exact=(np.arange(-12, 13), u1_charge_distribution(theory.beta, 64)))
    assert path.stat().st_size > 1000


@pytest.fixture(scope="module")
def strip_ensemble():
    """4 x 8 heat-bath ensemble at beta = 2 (time extent L0 = 4): tau_int of the Polyakov correlator
    about 0.5, so 20 bins of 500 are independent."""
    theory = U1((4, 8), 2.0)
    writer = MemoryWriter()
    run_chain(theory, HeatBath(), ChainState.start(theory, 12), 10_000, n_therm=200, writer=writer)
    configs, _, _ = writer.arrays()
    return theory, u1.primaries(configs, theory)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_polyakov_correlator_matches_the_wilson_loop_of_the_strip(strip_ensemble, r):
    # <P(x1) P*(x1 + r)> = W of area L0 r on the torus (character expansion); winding along axis 1
    # instead would give area L1 r = 8 r (0.056 instead of 0.237 at r = 1)
    theory, p = strip_ensemble
    assert_agrees(p[f"PolyCorr(r={r})"], u1_wilson_loop_torus(theory.beta, 32, theory.shape[0] * r))


@pytest.mark.parametrize("part", ["Re(Poly)", "Im(Poly)"])
def test_polyakov_loop_vanishes(strip_ensemble, part):
    _, p = strip_ensemble
    assert_agrees(p[part], 0.0)
