"""Parallel tempering (samplers/tempering.py): exact at the target coupling (fixed seeds, binned errors,
|z| < 4) for every theory, a wrong swap rule caught by the same test, the swap bookkeeping, the chain
state (bit-for-bit continuation), chain sets, and bad input as one-line ValueErrors."""
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from observables.stats import binned_mean_error, gamma_method
from observables.u1 import topological_charge
from samplers import HMC, Tempering
from samplers.chain import ChainState, MemoryWriter, run_chain, run_chains
from samplers.tempering import parse_ladder, swap_log_ratio
from tests.exact import free_field_phi2, ring_link_cos, u1_plaquette_torus, u1_topological_susceptibility_torus
from tests.samplers.test_exact_results import Z_MAX, assert_agrees, sample

U1_LADDER = parse_ladder("geometric:1:6:7")  # target beta = 6: plain HMC's tau_int(Q) is ~1340 trajectories there


def assert_agrees_gamma(series, exact):
    """|z| < 4 with the Gamma method's error (Q^2 is slow: tau_int of tens of updates)."""
    e = gamma_method(series)
    z = (e.value - exact) / e.error
    assert abs(z) < Z_MAX, f"{e.value:.6f} +- {e.error:.6f} (tau_int {e.tau_int:.1f}) vs exact {exact:.6f}: z = {z:.2f}"


def pt(ladder, algorithm, **kw):
    return Tempering(ladder, {"algorithm": algorithm, "settings": {}}, **kw)


def u1_beta6(algorithm, n, seed=1):
    """(configs, actions, diagnostics) of U(1) on 8 x 8 at beta = 6 by tempering over U1_LADDER."""
    return sample(U1((8, 8), 6.0), pt(U1_LADDER, algorithm), n, n_therm=300, seed=seed)


# --------------------------------------------------------------------------- exact at the target coupling
@pytest.mark.parametrize("algorithm", ["heatbath", "hmc"])
def test_u1_plaquette_and_charge_susceptibility_are_exact_at_beta_6(algorithm):
    configs, actions, _ = u1_beta6(algorithm, 6000)
    V = 64
    assert_agrees_gamma(1.0 - actions / (6.0 * V), u1_plaquette_torus(6.0, V))
    Q = topological_charge(configs)
    assert_agrees_gamma(Q.astype(float) ** 2, V * u1_topological_susceptibility_torus(6.0, V))
    assert np.count_nonzero(np.diff(Q)) > 300  # Q moves (plain heat bath: tau_int(Q) ~ 430 sweeps, HMC ~ 1340)


def test_a_sign_flipped_swap_rule_misses_the_exact_plaquette(monkeypatch):
    # the same test, with log r of the wrong sign: hot configurations climb to the target rung
    monkeypatch.setattr(Tempering, "_swap_rule", staticmethod(lambda *s: -swap_log_ratio(*s)))
    _, actions, _ = u1_beta6("heatbath", 1000)
    mean, err = binned_mean_error(1.0 - actions / (6.0 * 64), 20)
    assert abs(mean - u1_plaquette_torus(6.0, 64)) / err > 20


def test_xy_2x2_energy_is_exact_at_a_middle_rung():
    # 2 x 2 torus: a closed O(2) ring of 4 links with coupling 2 beta (tests/samplers/test_exact_results.py)
    beta = 1.2
    theory = XY((2, 2), beta)
    _, actions, _ = sample(theory, pt((0.3, 0.6, beta, 2.0), "metropolis"), 6000, seed=2)
    assert_agrees(-actions / (beta * 8), ring_link_cos(2 * beta, 4))


def test_phi4_free_field_phi2_is_exact_at_the_top_of_a_kappa_ladder():
    theory = Phi4((8, 8), kappa=0.23, lam=0.0)
    configs, _, diag = sample(theory, pt(parse_ladder("linear:0.14:0.23:4"), "hmc"), 4000, seed=3)
    A, B, _ = theory.coefficients
    assert_agrees((configs**2).mean(axis=(1, 2)), free_field_phi2(theory.shape, A, B))
    assert np.isfinite(diag["dH"]).all()  # the target replica's hmc diagnostics are stored beside swap_accept


# --------------------------------------------------------------------------- swap bookkeeping
def test_equal_couplings_accept_every_swap_and_walkers_cross_the_ladder_every_2R_rounds():
    theory, R, n = U1((4, 4), 2.0), 4, 80
    sampler = Tempering((2.0,) * R, {"algorithm": "heatbath", "settings": {}}, _allow_ties=True)
    _, _, diag = sample(theory, sampler, n, n_therm=0)
    report = sampler.report()
    assert report["swap_acceptance"] == [1.0] * (R - 1)
    np.testing.assert_array_equal(diag["swap_accept"], 1.0)
    np.testing.assert_array_equal(sampler._attempts, [n // 2, n // 2, n // 2])  # even-odd alternation
    # every walker moves one rung per round until it reaches an end: a round trip takes 2R rounds
    assert R * n // (2 * R) - R <= report["round_trips"] <= R * n // (2 * R)


def test_swap_acceptance_is_reported_per_adjacent_pair():
    theory = U1((8, 8), 6.0)
    sampler = pt((1.0, 5.0, 6.0), "heatbath")
    _, _, diag = sample(theory, sampler, 400, n_therm=0)
    low_pair, high_pair = sampler.report()["swap_acceptance"]
    assert high_pair > 0.2 and low_pair < 0.01  # beta 5 <-> 6 swap often, 1 <-> 5 almost never at V = 64
    assert "ladder is split" in sampler.report()["warning"]
    rounds = diag["swap_accept"]  # R = 3: even rounds try pair (0, 1), odd rounds pair (1, 2)
    assert np.nanmean(rounds[1::2]) == pytest.approx(high_pair, abs=0.1) and np.nanmean(rounds[0::2]) < 0.02


def test_swap_every_k_swaps_after_every_kth_update_only():
    theory = U1((4, 4), 2.0)
    sampler = pt((1.0, 2.0, 3.0), "heatbath", swap_every=3)
    _, _, diag = sample(theory, sampler, 30, n_therm=0)
    swapped = np.isfinite(diag["swap_accept"])
    np.testing.assert_array_equal(swapped, (np.arange(1, 31) % 3) == 0)
    assert sampler.report()["swap_rounds"] == 10


# --------------------------------------------------------------------------- chain state
def run(theory, sampler, state, n):
    writer = MemoryWriter()
    run_chain(theory, sampler, state, n, n_therm=0, writer=writer, tune=False)
    return writer.arrays()


@pytest.mark.parametrize("init", ["hot", "cold"])
def test_state_round_trip_continues_the_chain_bit_for_bit(init):
    theory = XY((4, 4), 1.5)
    make = lambda: pt((0.5, 1.0, 1.5), "hmc", init=init)  # noqa: E731
    uninterrupted = make()
    whole = run(theory, uninterrupted, ChainState.start(theory, 5, init), 60)
    first, state = make(), ChainState.start(theory, 5, init)
    head = run(theory, first, state, 25)
    again = Tempering.from_settings(first.settings())  # a new sampler: the state is all it gets
    state.sampler_state = first.get_state().copy()
    tail = run(theory, again, state, 60)
    np.testing.assert_array_equal(np.concatenate([head[0], tail[0]]), whole[0])
    for name in whole[2]:
        np.testing.assert_array_equal(np.concatenate([head[2][name], tail[2][name]]), whole[2][name])
    assert again.report() == uninterrupted.report()
    np.testing.assert_array_equal(again.get_state(), uninterrupted.get_state())


def test_cold_start_starts_every_replica_cold():
    theory = U1((4, 4), 3.0)
    sampler = pt((1.0, 3.0), "metropolis", init="cold")
    sampler.check(theory)
    sampler.update(theory, np.zeros(theory.config_shape), np.random.default_rng(0))
    hot = pt((1.0, 3.0), "metropolis")
    hot.update(theory, np.zeros(theory.config_shape), np.random.default_rng(0))
    assert np.abs(sampler.replica_configs()[0]).max() < 1.0 < np.abs(hot.replica_configs()[0]).max()


def test_chain_sets_are_the_chains_run_alone():
    theory = U1((4, 4), 2.0)
    samplers = [pt((1.0, 2.0), "hmc") for _ in range(2)]
    states = [ChainState.start(theory, 3, chain=k) for k in range(2)]
    writers = [MemoryWriter() for _ in range(2)]
    run_chains(theory, samplers, states, 20, n_therm=10, writers=writers)
    for k in range(2):
        alone = MemoryWriter()
        run_chain(theory, pt((1.0, 2.0), "hmc"), ChainState.start(theory, 3, chain=k), 20, n_therm=10, writer=alone)
        np.testing.assert_array_equal(writers[k].arrays()[0], alone.arrays()[0])
        assert writers[k].settings == alone.settings


def test_replicas_are_tuned_each_at_its_own_coupling():
    theory = U1((8, 8), 6.0)
    sampler = pt((0.5, 6.0), "hmc")
    sample(theory, sampler, 10, n_therm=200)
    low, high = (s["step_size"] for s in sampler.settings()["replica"]["settings"])
    assert low > 1.5 * high  # the force grows with beta, so the tuned step shrinks


# --------------------------------------------------------------------------- bad input
BAD_LADDERS = {
    "not increasing": ("1,3,2", "strictly increasing"),
    "not positive": ("linear:-1:2:4", "> 0"),
    "one replica": ("linear:1:2:1", "R >= 2"),
    "not a spec": ("steps:1:2", "linear:LOW:HIGH:R"),
    "R not an integer": ("geometric:1:2:2.5", "linear:LOW:HIGH:R"),
}


@pytest.mark.parametrize("case", BAD_LADDERS)
def test_bad_ladders_are_one_line_errors(case):
    spec, needle = BAD_LADDERS[case]
    with pytest.raises(ValueError, match=needle.replace("+", r"\+")) as e:
        parse_ladder(spec)
    assert len(str(e.value).splitlines()) == 1


BAD_SETUPS = {
    "target not on the ladder": (U1((4, 4), 2.5), "hmc", (1.0, 2.0, 3.0), "must be one of the ladder"),
    "heatbath on phi4": (Phi4((4, 4), kappa=0.2, lam=0.1), "heatbath", (0.1, 0.2), "not phi4"),
    "phi4 flow parameterization": (Phi4((4, 4), m2=1.0, g=0.5), "hmc", (0.1, 0.2), "--kappa/--lam"),
    "free field without mass on a rung": (Phi4((4, 4), kappa=0.2, lam=0.0), "hmc", (0.2, 0.3), "positive mass"),
}


@pytest.mark.parametrize("case", BAD_SETUPS)
def test_setups_that_cannot_run_are_refused_by_check(case):
    theory, algorithm, ladder, needle = BAD_SETUPS[case]
    with pytest.raises(ValueError, match=needle) as e:
        pt(ladder, algorithm).check(theory)
    assert len(str(e.value).splitlines()) == 1


def test_unknown_replica_algorithm_and_bad_swap_every_are_refused():
    with pytest.raises(ValueError, match="replica algorithm must be one of"):
        pt((1.0, 2.0), "learned-mh")
    with pytest.raises(ValueError, match="--swap-every"):
        pt((1.0, 2.0), "hmc", swap_every=0)


def test_hmc_replica_settings_are_kept_per_rung():
    sampler = Tempering((1.0, 2.0), {"algorithm": "hmc", "settings": [HMC(step_size=0.3).settings(),
                                                                      HMC(step_size=0.1).settings()]})
    assert [s.step_size for s in sampler.replicas] == [0.3, 0.1]
