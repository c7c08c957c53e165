"""Autoregressive proposals in chain sets: the chains share one pass over the sites, and chain k still
gets bit for bit the proposals (and so the chain) it gets alone."""
import numpy as np
import pytest

from lattice import XY, Phi4
from samplers import LearnedMH
from samplers.chain import ChainState, MemoryWriter, run_chains
from samplers.proposal import ModelProposal, sample_batches

THEORIES = {"phi4_free_L4": Phi4((4, 4), m2=1.0, g=0.0), "xy_2x2": XY((2, 2), 1.0)}  # pixelcnn, made


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("batch", [16, 7])
def test_a_shared_pass_gives_each_chain_its_own_batch_bitwise(ar_trained, name, batch):
    ps = [ModelProposal(path=str(ar_trained(name)), chain=k, batch_size=batch) for k in range(3)]
    together = sample_batches(ps, [0, 4, 2])
    for p, b, (x, lq) in zip(ps, [0, 4, 2], together):
        x1, lq1 = p.sample_batch(b)  # alone
        np.testing.assert_array_equal(x, x1)
        np.testing.assert_array_equal(lq, lq1)
    assert not np.array_equal(together[0][0], together[1][0])


def run_set(run, theory, chains, n=60):
    writers = [MemoryWriter() for _ in chains]
    samplers = [LearnedMH({"path": str(run), "seed": 3, "batch_size": 16, "chain": k}) for k in chains]
    run_chains(theory, samplers, [ChainState.start(theory, 5, chain=k) for k in chains], n, n_therm=10,
               writers=writers)
    return {k: w.arrays() for k, w in zip(chains, writers)}


@pytest.mark.parametrize("name", THEORIES)
def test_an_autoregressive_chain_does_not_depend_on_the_chains_beside_it(ar_trained, name):
    big = run_set(ar_trained(name), THEORIES[name], [0, 1, 2])
    alone = run_set(ar_trained(name), THEORIES[name], [2])
    for a, b in zip(big[2], alone[2]):
        if isinstance(a, dict):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
        else:
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(big[1][0], big[2][0])
