"""Chain sets (samplers/chain.py run_chains): chain k is defined by (seed, k) alone, whatever chains
run beside it; chain 0 is the single chain; learned chains of a set share model passes and stay exact."""
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from observables.stats import gamma_method
from observables.u1 import primaries
from samplers import HMC, HeatBath, Hybrid, LearnedMH, Metropolis, ModelSamples, OverRelaxation, Wolff
from samplers.chain import ChainState, MemoryWriter, chain_rng, run_chain, run_chains
from samplers.proposal import ModelProposal, stream_seed
from tests.exact import u1_plaquette_torus, u1_topological_susceptibility_torus

Z_MAX = 4.0
U1_4 = U1((4, 4), 2.0)
CLASSICAL = {
    "hmc u1": (U1_4, lambda: HMC()),
    "hmc omelyan phi4": (Phi4((4, 4), m2=-1.0, g=1.0), lambda: HMC(integrator="omelyan")),
    "metropolis xy": (XY((4, 4), 1.0), lambda: Metropolis()),
    "heatbath u1": (U1_4, lambda: HeatBath()),
    "overrelaxation xy": (XY((4, 4), 1.0), lambda: OverRelaxation()),
    "wolff xy": (XY((4, 4), 1.0), lambda: Wolff()),
}


def run_set(theory, make, chains, n=40, n_therm=20, seed=5):
    """Configurations and diagnostics of the chains numbered ``chains``, run as one set."""
    writers = [MemoryWriter() for _ in chains]
    run_chains(theory, [make() for _ in chains], [ChainState.start(theory, seed, chain=k) for k in chains], n,
               n_therm=n_therm, writers=writers)
    return {k: w.arrays() for k, w in zip(chains, writers)}


def assert_same_chain(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    for name in a[2]:
        np.testing.assert_array_equal(a[2][name], b[2][name])


def test_chain_zero_has_the_single_chain_generator():
    assert chain_rng(7, 0).random() == np.random.default_rng(7).random()


def test_chains_of_one_seed_have_different_generators():
    draws = {chain_rng(7, k).integers(2**62) for k in range(50)} | {chain_rng(8, 0).integers(2**62)}
    assert len(draws) == 51


def test_proposal_streams_of_chains_and_batches_are_distinct():
    # a plain SeedSequence([seed, chain, batch]) would collide with [seed, batch] (trailing zeros)
    seeds = {stream_seed(3, k, b) for k in range(20) for b in range(20)}
    assert len(seeds) == 400
    assert stream_seed(3, 0, 5) == int(np.random.SeedSequence([3, 5]).generate_state(1, np.uint64)[0])


@pytest.mark.parametrize("case", CLASSICAL)
def test_chain_zero_of_a_set_is_the_single_chain(case):
    theory, make = CLASSICAL[case]
    single = MemoryWriter()
    run_chain(theory, make(), ChainState.start(theory, 5), 40, n_therm=20, writer=single)
    assert_same_chain(run_set(theory, make, [0, 1, 2])[0], single.arrays())


@pytest.mark.parametrize("case", CLASSICAL)
def test_a_chain_does_not_depend_on_the_chains_beside_it(case):
    theory, make = CLASSICAL[case]
    big = run_set(theory, make, [0, 1, 2, 3])
    assert_same_chain(big[2], run_set(theory, make, [2])[2])
    assert_same_chain(big[3], run_set(theory, make, [3, 1])[3])
    assert not np.array_equal(big[1][0], big[2][0])


def test_a_resumed_set_whose_chains_stopped_at_different_points_continues_each_chain(tmp_path):
    theory, make = CLASSICAL["hmc u1"]
    whole = run_set(theory, make, [0, 1], n=60)
    states = [ChainState.start(theory, 5, chain=k) for k in (0, 1)]
    samplers = [make(), make()]
    firsts = [MemoryWriter(), MemoryWriter()]
    run_chain(theory, samplers[0], states[0], 25, n_therm=20, writer=firsts[0])
    run_chain(theory, samplers[1], states[1], 40, n_therm=20, writer=firsts[1])
    rests = [MemoryWriter(), MemoryWriter()]
    run_chains(theory, samplers, states, 60, writers=rests)
    for k in (0, 1):
        np.testing.assert_array_equal(np.concatenate([firsts[k].arrays()[0], rests[k].arrays()[0]]), whole[k][0])


# ------------------------------------------------------------------ learned chains
def learned(kind, run, batch=32):
    proposal = {"path": str(run), "seed": 3, "batch_size": batch}

    def make_for(chain):
        p = {**proposal, "chain": chain}
        if kind == "hybrid":
            return Hybrid({"algorithm": "hmc", "settings": HMC().settings()}, p)
        return {"learned-mh": LearnedMH, "model-samples": ModelSamples}[kind](p)
    return make_for


def run_learned_set(theory, make_for, chains, n=100, n_therm=10):
    writers = [MemoryWriter() for _ in chains]
    run_chains(theory, [make_for(k) for k in chains], [ChainState.start(theory, 5, chain=k) for k in chains], n,
               n_therm=n_therm, writers=writers)
    return {k: w.arrays() for k, w in zip(chains, writers)}


@pytest.mark.parametrize("kind", ["learned-mh", "hybrid", "model-samples"])
def test_learned_chain_zero_of_a_set_is_the_single_chain(trained, kind):
    make_for = learned(kind, trained("u1_L4_undertrained"))
    single = MemoryWriter()
    run_chain(U1_4, make_for(0), ChainState.start(U1_4, 5), 100, n_therm=10, writer=single)
    assert_same_chain(run_learned_set(U1_4, make_for, [0, 1, 2])[0], single.arrays())


@pytest.mark.parametrize("kind", ["learned-mh", "hybrid"])
def test_a_learned_chain_does_not_depend_on_the_chains_beside_it(trained, kind):
    make_for = learned(kind, trained("u1_L4_undertrained"))
    big = run_learned_set(U1_4, make_for, [0, 1, 2, 3])
    assert_same_chain(big[2], run_learned_set(U1_4, make_for, [2])[2])
    assert not np.array_equal(big[1][0], big[2][0])
    assert not np.array_equal(big[1][2]["proposal"], big[2][2]["proposal"]) or \
        not np.array_equal(big[1][2]["log_q"], big[2][2]["log_q"])


def test_chains_of_a_set_share_one_loaded_model(trained):
    a, b = (ModelProposal(path=str(trained("u1_L4_undertrained")), chain=k) for k in (0, 1))
    assert a.net is b.net


def test_batched_log_q_equals_the_log_q_of_each_configuration(trained):
    p = ModelProposal(path=str(trained("u1_L8_trained")))
    xs = p.sample_batch(0)[0][:16]
    xs = xs + 0.3 * np.random.default_rng(1).standard_normal(xs.shape)  # not the model's own samples
    single = np.array([p.log_q(x) for x in xs])
    np.testing.assert_allclose(p.log_q_batch(xs), single, rtol=1e-12, atol=0)


def test_a_shared_pass_gives_each_chain_its_own_batch(trained):
    from samplers.proposal import sample_batches

    ps = [ModelProposal(path=str(trained("u1_L4_undertrained")), chain=k, batch_size=16) for k in range(3)]
    together = sample_batches(ps, [0, 4, 2])
    for p, b, (x, lq) in zip(ps, [0, 4, 2], together):
        x1, lq1 = p.sample_batch(b)  # alone
        np.testing.assert_allclose(x, x1, rtol=0, atol=1e-12)
        np.testing.assert_allclose(lq, lq1, rtol=1e-12)


@pytest.mark.parametrize("kind", ["learned-mh", "hybrid"])
def test_a_learned_chain_set_reproduces_exact_u1_results(trained, kind):
    # 4 chains x n, the replica Gamma method: <P> and chi_t against the exact torus values
    n = {"learned-mh": 2500, "hybrid": 600}[kind]
    chains = run_learned_set(U1_4, learned(kind, trained("u1_L4_trained"), batch=256), [0, 1, 2, 3], n=n,
                             n_therm=100)
    s = [primaries(chains[k][0], U1_4) for k in range(4)]
    exact = {"P": u1_plaquette_torus(2.0, 16), "chi_t": u1_topological_susceptibility_torus(2.0, 16)}
    series = {"P": [x["P"] for x in s], "chi_t": [x["Q^2"] / 16 for x in s]}
    for name, parts in series.items():
        est = gamma_method(np.concatenate(parts), replicas=[len(p) for p in parts])
        z = (est.value - exact[name]) / est.error
        assert abs(z) < Z_MAX, f"{kind} {name}: {est.value} +- {est.error} vs {exact[name]}: z = {z:.2f}"
