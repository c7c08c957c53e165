"""Heat bath and over-relaxation (lattice/u1.py, lattice/xy.py kernels; samplers/heatbath.py):
the kernels against their definition from the action, over-relaxation keeps S and is undone by the
reverse sweep, and the chains reproduce exact results (fixed seeds, binned errors, |z| < 4)."""
import numba
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from lattice.fastmath import wrap_angle
from lattice.vonmises import draw
from observables.stats import binned_mean_error
from observables.u1 import wilson_loops
from samplers import HeatBath, Metropolis, OverRelaxation
from tests.exact import ring_link_cos, u1_plaquette_torus, u1_wilson_loop_torus
from tests.samplers.test_exact_results import Z_MAX, assert_agrees, sample

CHAINS = {
    "heatbath": lambda: HeatBath(),
    "heatbath+or": lambda: OverRelaxation(or_per_sweep=2),
    "metropolis+or": lambda: OverRelaxation(or_per_sweep=2, or_with="metropolis"),
}


def hot(theory, seed):
    return np.ascontiguousarray(theory.random_config(np.random.default_rng(seed)))


def local_field_from_action(theory, q, index):
    """h of one variable from the action alone: S(theta) = C - beta Re[e^{-i theta} h], so
    h_x = [S(pi) - S(0)] / (2 beta), h_y = [S(-pi/2) - S(pi/2)] / (2 beta)."""
    def s(theta):
        trial = q.copy()
        trial[index] = theta
        return theory.action(trial)

    b = theory.beta
    return (s(np.pi) - s(0.0)) / (2 * b), (s(-np.pi / 2) - s(np.pi / 2)) / (2 * b)


def u1_order(theory):
    """Links in the documented order (mu, parity of x0 + x1, then x0, x1) with their streams."""
    L0, L1 = theory.shape
    for mu in range(2):
        for parity in range(2):
            for i in range(L0):
                for j in range((i + parity) % 2, L1, 2):
                    yield (mu, i, j), mu * L0 * L1 + i * L1 + j


def xy_order(theory):
    L0, L1 = theory.shape
    for parity in range(2):
        for i in range(L0):
            for j in range((i + parity) % 2, L1, 2):
                yield (i, j), i * L1 + j


ORDERS = {"u1": u1_order, "xy": xy_order}
THEORIES = [U1((4, 6), 1.7), XY((4, 6), 1.3)]


def angle_distance(a, b):
    return np.abs(np.angle(np.exp(1j * (a - b))))


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.name)
def test_heatbath_sweep_draws_each_variable_from_its_conditional_given_by_the_action(theory):
    # reference: in the documented order, theta = arg h + d, d = VM(0, beta |h|) draw of the variable's stream,
    # with h read off the action (so the staple / neighbour conventions come from PHYSICS.md's S alone)
    q, key = hot(theory, 0), np.uint64(17)
    ref = q.copy()
    for index, stream in ORDERS[theory.name](theory):
        hx, hy = local_field_from_action(theory, ref, index)
        ref[index] = wrap_angle(np.arctan2(hy, hx) + draw(theory.beta * np.hypot(hx, hy), key, stream))
    theory.heatbath_sweep(q, key)
    assert angle_distance(q, ref).max() < 1e-9


@pytest.mark.parametrize("theory", THEORIES, ids=lambda t: t.name)
def test_overrelax_sweep_reflects_each_variable_about_its_local_field(theory):
    q = hot(theory, 1)
    ref = q.copy()
    for index, _ in ORDERS[theory.name](theory):
        hx, hy = local_field_from_action(theory, ref, index)
        ref[index] = wrap_angle(2 * np.arctan2(hy, hx) - ref[index])
    theory.overrelax_sweep(q)
    assert angle_distance(q, ref).max() < 1e-9


@pytest.mark.parametrize("theory", [U1((8, 8), 0.8), U1((6, 4), 5.0), XY((8, 8), 1.1), XY((2, 2), 0.5)],
                         ids=lambda t: f"{t.name}-{t.shape}-{t.beta}")
@pytest.mark.parametrize("seed", [0, 1])
def test_overrelaxation_keeps_the_action_and_the_reverse_sweep_undoes_it(theory, seed):
    q = hot(theory, seed)
    s0 = theory.action(q)
    moved = q.copy()
    for _ in range(5):
        theory.overrelax_sweep(moved)
        assert abs(theory.action(moved) - s0) < 1e-12 * theory.n_dof * max(1.0, theory.beta)
    assert angle_distance(moved, q).max() > 0.5  # it does move the configuration
    for _ in range(5):
        theory.overrelax_sweep(moved, reverse=True)
    assert angle_distance(moved, q).max() < 1e-10
    assert np.all((-np.pi <= moved) & (moved < np.pi))


@pytest.mark.parametrize("theory", [U1((6, 8), 2.0), XY((6, 8), 1.1)], ids=lambda t: t.name)
def test_heatbath_sweep_does_not_depend_on_the_thread_count(theory):
    q1 = hot(theory, 2)
    q2 = q1.copy()
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        theory.heatbath_sweep(q1, np.uint64(5))
    finally:
        numba.set_num_threads(saved)
    theory.heatbath_sweep(q2, np.uint64(5))
    np.testing.assert_array_equal(q1, q2)
    assert np.all((-np.pi <= q1) & (q1 < np.pi))


def test_heatbath_at_beta_zero_draws_uniform_angles():
    theory = U1((4, 4), 0.0)
    q = np.zeros(theory.config_shape)
    theory.heatbath_sweep(q, np.uint64(3))
    assert np.all(q != 0.0) and np.all(np.abs(q) <= np.pi)


@pytest.mark.parametrize("theory", [Phi4((4, 4), kappa=0.2, lam=0.1), U1((4, 5), 1.0), XY((3, 4), 1.0)],
                         ids=["phi4", "u1-odd", "xy-odd"])
@pytest.mark.parametrize("make", [HeatBath, OverRelaxation])
def test_samplers_refuse_phi4_and_odd_extents(theory, make):
    with pytest.raises(ValueError) as e:
        make().check(theory)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [{"or_per_sweep": -1}, {"or_with": "hmc"}, {"or_with": "metropolis", "delta": 0.0}])
def test_overrelaxation_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        OverRelaxation(**bad).check(U1((4, 4), 1.0))


def test_settings_round_trip_and_metropolis_width_is_tuned():
    o = OverRelaxation(or_per_sweep=4, or_with="metropolis", delta=0.1)
    assert OverRelaxation.from_settings(o.settings()) == o
    assert HeatBath.from_settings(HeatBath().settings()) == HeatBath()
    theory = U1((8, 8), 3.0)
    configs, _, diag = sample(theory, o, 20, n_therm=300)
    assert o.delta > 0.3 and 0.4 < diag["accept"].mean() < 0.6  # tuned from 0.1 towards acceptance 0.5


# --------------------------------------------------------------------------- exact results
@pytest.mark.parametrize("beta", [1.0, 3.0])
@pytest.mark.parametrize("chain", CHAINS)
def test_u1_plaquette_and_wilson_loops_match_character_expansion(beta, chain):
    theory = U1((8, 8), beta)
    configs, actions, _ = sample(theory, CHAINS[chain](), 4000, n_therm=200)
    assert_agrees(1.0 - actions / (beta * 64), u1_plaquette_torus(beta, 64))
    w = wilson_loops(configs, 2, 2)
    assert_agrees(w[:, 0, 1], u1_wilson_loop_torus(beta, 64, 2))  # W(1, 2)
    assert_agrees(w[:, 1, 1], u1_wilson_loop_torus(beta, 64, 4))  # W(2, 2)


@pytest.mark.parametrize("beta", [0.5, 1.2])
@pytest.mark.parametrize("chain", ["heatbath", "heatbath+or"])
def test_xy_2x2_energy_matches_exact_ring(beta, chain):
    # 2 x 2 torus: S = -2 beta (cosines of a ring of 4 rotors); see test_exact_results.py
    theory = XY((2, 2), beta)
    _, actions, _ = sample(theory, CHAINS[chain](), 6000)
    assert_agrees(-actions / (beta * 8), ring_link_cos(2 * beta, 4))


@pytest.mark.parametrize("chain", CHAINS)
def test_xy_8x8_energy_agrees_with_metropolis(chain):
    theory = XY((8, 8), 1.0)
    _, s_ref, _ = sample(theory, Metropolis(), 6000, seed=2)
    _, s, _ = sample(theory, CHAINS[chain](), 3000, seed=3)
    (m1, e1), (m2, e2) = binned_mean_error(s_ref), binned_mean_error(s)
    assert abs(m1 - m2) / np.hypot(e1, e2) < Z_MAX
