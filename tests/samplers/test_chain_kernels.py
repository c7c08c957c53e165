"""Chain sets (issue 14 item 6): ``update_chains`` of HMC, Metropolis, heat bath and over-relaxation
advances K chains (rows of one array, each with its own sampler and generator) bit for bit as the
per-chain loop ``[s.update(theory, q, r) for ...]`` does: the same configurations, the same
UpdateInfo, the same generator states after; whatever the grouping of the chains, the thread count,
or whether the kernels run the chains serially or in parallel (``rows``: lattice.fastmath.run_parallel
forced either way; the U(1) and XY kicks with the chains in lanes or not, lattice.fastmath.use_lanes).
And the kernels they are made of are bit for bit their single-configuration counterparts."""
from __future__ import annotations

import copy
import math

import numba
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from lattice import fastmath
from lattice.rng import new_key, new_keys, normals, normals_chains
from samplers.heatbath import HeatBath, OverRelaxation
from samplers.hmc import HMC, kinetic_energies
from samplers.integrators import INTEGRATORS, INTEGRATORS_CHAINS, drift
from samplers.metropolis import Metropolis

THEORIES = {
    "phi4": Phi4((6, 6), kappa=0.25, lam=0.5),
    "phi4-flow-3d": Phi4((4, 4, 4), m2=-1.0, g=1.0),
    "xy": XY((6, 6), 1.1),
    "u1": U1((6, 8), 2.0),
}
K = 5

# per-chain settings differ (as after per-chain tuning): the step sizes give different n_steps
SAMPLERS = {
    "hmc-leapfrog": lambda k: HMC(step_size=1.0 / (3 + 2 * k)),  # 3, 5, ... 11 steps
    "hmc-omelyan": lambda k: HMC(step_size=1.0 / (2 + k), integrator="omelyan"),  # 2 ... 6 steps
    "metropolis": lambda k: Metropolis(delta=0.3 + 0.2 * k),
    "heatbath": lambda k: HeatBath(),
    "overrelaxation": lambda k: OverRelaxation(or_per_sweep=2),
    "overrelaxation-metropolis": lambda k: OverRelaxation(or_per_sweep=1, or_with="metropolis", delta=0.4 + 0.1 * k),
}
CASES = [(t, s) for t in THEORIES for s in SAMPLERS
         if s.startswith(("hmc", "metropolis")) or THEORIES[t].name != "phi4"]


@pytest.fixture(params=["serial", "parallel", "serial, no lanes", "parallel, no lanes"])
def rows(request, monkeypatch):
    """Chain-set kernels run their rows serially / in parallel whatever the work (fastmath.run_parallel),
    and the U(1) and XY kicks with the chains in lanes (fastmath.use_lanes, these lattices' default) or
    chain by chain."""
    monkeypatch.setattr(fastmath, "PARALLEL_NS", math.inf if request.param.startswith("serial") else 0)
    if request.param.startswith("parallel"):
        monkeypatch.setattr(fastmath, "LANE_BLOCK", 2)  # several blocks of lanes, and a last partial one
    if "no lanes" in request.param:
        monkeypatch.setattr(fastmath, "LANES_MAX_ROW", 0)
    return request.param


def hot_start(theory, n_chains: int = K) -> np.ndarray:
    qs = np.stack([theory.random_config(np.random.default_rng(100 + k)) for k in range(n_chains)])
    return np.ascontiguousarray(qs if theory.compact else 0.5 * qs)


def chain_set(theory, sampler: str, n_chains: int = K):
    """(samplers, qs, rngs) of a fresh chain set with fixed seeds."""
    return ([SAMPLERS[sampler](k) for k in range(n_chains)], hot_start(theory, n_chains),
            [np.random.default_rng(k) for k in range(n_chains)])


def info_tuple(info) -> tuple:
    """An UpdateInfo as comparable values (NaN == NaN)."""
    nan = lambda x: "nan" if isinstance(x, float) and math.isnan(x) else x  # noqa: E731
    return nan(info.accept), nan(info.dH), info.extra


def loop(theory, samplers, qs, rngs) -> list:
    return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]


def assert_same_chains(a, b) -> None:
    """Two (samplers, qs, rngs, infos) after the same updates: bitwise the same."""
    (_, qs_a, rngs_a, infos_a), (_, qs_b, rngs_b, infos_b) = a, b
    assert qs_a.tobytes() == qs_b.tobytes()
    assert [info_tuple(i) for i in infos_a] == [info_tuple(i) for i in infos_b]
    assert [r.bit_generator.state for r in rngs_a] == [r.bit_generator.state for r in rngs_b]


def run(theory, sampler: str, batched: bool, n_updates: int = 3, chains: list[list[int]] | None = None):
    """n_updates updates of a fresh chain set, batched (in the groups ``chains``, default all) or by the loop."""
    samplers, qs, rngs = chain_set(theory, sampler)
    groups = chains or [list(range(K))]
    infos = [None] * K
    for _ in range(n_updates):
        for group in groups:
            sub = np.ascontiguousarray(qs[group])
            args = (theory, [samplers[k] for k in group], sub, [rngs[k] for k in group])
            out = type(samplers[0]).update_chains(*args) if batched else loop(*args)
            qs[group] = sub
            for k, info in zip(group, out):
                infos[k] = info
    return samplers, qs, rngs, infos


@pytest.mark.parametrize("theory_name, sampler", CASES)
def test_update_chains_is_bitwise_the_per_chain_loop(theory_name, sampler, rows):
    theory = THEORIES[theory_name]
    assert_same_chains(run(theory, sampler, batched=True), run(theory, sampler, batched=False))


@pytest.mark.parametrize("sampler", ["hmc-leapfrog", "hmc-omelyan"])
def test_hmc_chains_run_their_own_number_of_steps(sampler):
    samplers, _, _ = chain_set(THEORIES["u1"], sampler)
    assert len({s.n_steps for s in samplers}) == K  # so the tests above integrate K different lengths


@pytest.mark.parametrize("sampler", ["hmc-leapfrog", "metropolis", "overrelaxation"])
def test_update_chains_does_not_depend_on_how_chains_are_grouped(sampler):
    theory = THEORIES["u1"]
    assert_same_chains(run(theory, sampler, True, chains=[[0, 1], [2, 3, 4]]),
                       run(theory, sampler, True, chains=[[0, 1, 2, 3, 4]]))


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
@pytest.mark.parametrize("sampler", ["hmc-omelyan", "metropolis", "heatbath"])
def test_update_chains_does_not_depend_on_the_thread_count(sampler, rows):
    theory = THEORIES["xy"]
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(theory, sampler, True)
        numba.set_num_threads(2)
        two = run(theory, sampler, True)
    finally:
        numba.set_num_threads(saved)
    assert_same_chains(one, two)


def test_a_diverging_chain_is_rejected_without_disturbing_the_others():
    theory = THEORIES["phi4"]
    samplers, qs, rngs = chain_set(theory, "hmc-leapfrog")
    samplers[2] = HMC(step_size=5.0, traj_length=50.0)  # 10 steps of 5: the quartic force blows up
    start = qs.copy()
    ref = (copy.deepcopy(samplers), qs.copy(), copy.deepcopy(rngs))
    infos = HMC.update_chains(theory, samplers, qs, rngs)
    assert not math.isfinite(infos[2].dH) and infos[2].accept == 0.0
    assert np.array_equal(qs[2], start[2])
    assert_same_chains((None, qs, rngs, infos), (None, ref[1], ref[2], loop(theory, *ref)))


def test_chains_with_different_integrators_fall_back_to_the_loop():
    theory = THEORIES["u1"]
    samplers, qs, rngs = chain_set(theory, "hmc-leapfrog")
    samplers[1] = HMC(step_size=0.3, integrator="omelyan")
    ref = (copy.deepcopy(samplers), qs.copy(), copy.deepcopy(rngs))
    infos = HMC.update_chains(theory, samplers, qs, rngs)
    assert_same_chains((None, qs, rngs, infos), (None, ref[1], ref[2], loop(theory, *ref)))


def test_update_chains_refuses_a_non_contiguous_array():
    theory = THEORIES["u1"]
    samplers, qs, rngs = chain_set(theory, "hmc-leapfrog", 2 * K)
    with pytest.raises(ValueError, match="C-contiguous"):
        HMC.update_chains(theory, samplers[::2], qs[::2], rngs[::2])


# --------------------------------------------------------------------------- the kernels underneath
def test_new_key_is_the_generators_uint64_draw():
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(5):
        assert new_key(a) == b.integers(0, 2**64, dtype=np.uint64)
        assert a.random() == b.random()  # and the generator is left in the same state
    rngs = [np.random.default_rng(k) for k in range(4)]
    expected = [new_key(r) for r in copy.deepcopy(rngs)]
    assert new_keys(rngs).tolist() == expected


def test_normals_chains_fills_each_row_from_its_key(rows):
    keys = np.array([1, 2**63 + 5, 42, 7], dtype=np.uint64)
    out = normals_chains(keys, np.empty((4, 3, 97)))
    for k, key in enumerate(keys):
        assert out[k].tobytes() == normals(key, np.empty((3, 97))).tobytes()


def test_kinetic_energies_are_np_dot_of_each_row():
    ps = np.random.default_rng(0).standard_normal((6, 2, 9, 7)) * 3.0
    expected = [0.5 * float(np.dot(p.reshape(-1), p.reshape(-1))) for p in ps]
    assert kinetic_energies(ps).tolist() == expected


@pytest.mark.parametrize("theory_name", THEORIES)
def test_action_batch_is_the_action_of_each_row(theory_name, rows):
    theory = THEORIES[theory_name]
    qs = hot_start(theory)
    assert theory.action_batch(qs).tolist() == [theory.action(q) for q in qs]


@pytest.mark.parametrize("theory_name", THEORIES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_chain_integrators_are_the_integrator_on_each_row(theory_name, integrator, rows):
    theory = THEORIES[theory_name]
    qs = hot_start(theory)
    ps = np.ascontiguousarray(np.random.default_rng(1).standard_normal(qs.shape))
    eps, n_steps = np.array([0.3, 0.05, 0.11, 0.2, 0.07]), np.array([3, 1, 8, 5, 2])
    expected_q, expected_p = qs.copy(), ps.copy()
    for k in range(K):
        INTEGRATORS[integrator](theory, expected_q[k], expected_p[k], eps[k], n_steps[k])
    INTEGRATORS_CHAINS[integrator](theory, qs, ps, eps, n_steps)
    assert qs.tobytes() == expected_q.tobytes() and ps.tobytes() == expected_p.tobytes()


def test_kick_drift_chains_is_kick_and_drift_on_each_row():
    theory = THEORIES["xy"]
    qs = hot_start(theory, 2)
    ps = np.ascontiguousarray(np.random.default_rng(2).standard_normal(qs.shape))
    kicks, drifts, n_kicks = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]), np.array([[0.7, 0.8], [0.9, 1.0]]), [3, 2]
    expected_q, expected_p = qs.copy(), ps.copy()
    for k in range(2):
        for j in range(n_kicks[k]):
            if j:
                drift(expected_q[k], expected_p[k], drifts[k, j - 1])
            theory.kick(expected_q[k], expected_p[k], kicks[k, j])
    theory.kick_drift_chains(qs, ps, kicks, drifts, n_kicks)
    assert qs.tobytes() == expected_q.tobytes() and ps.tobytes() == expected_p.tobytes()


def test_chains_sharing_a_generator_are_updated_as_the_loop_updates_them():
    theory = THEORIES["u1"]
    samplers, qs, rngs = chain_set(theory, "hmc-leapfrog")
    rngs[3] = rngs[1]  # the loop takes chain 1's three draws, then chain 3's
    ref = (copy.deepcopy(samplers), qs.copy(), copy.deepcopy(rngs))
    infos = HMC.update_chains(theory, samplers, qs, rngs)
    assert_same_chains((None, qs, rngs, infos), (None, ref[1], ref[2], loop(theory, *ref)))


def test_chain_kernels_refuse_tables_that_do_not_fit_the_chains():
    theory = THEORIES["u1"]
    qs = hot_start(theory, 2)
    ps = np.zeros_like(qs)
    with pytest.raises(ValueError, match="too small"):
        theory.kick_drift_chains(qs, ps, np.ones((2, 2)), np.ones((2, 2)), [3, 1])
    with pytest.raises(ValueError, match="one entry per chain"):
        theory.metropolis_sweep_chains(qs, [0.5], np.arange(2, dtype=np.uint64))
