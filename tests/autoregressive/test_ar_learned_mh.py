"""learned-mh with an autoregressive proposal is exact: the free-field <phi^2> and the XY 2 x 2 ring
energy (exact results, tests/exact.py) within |z| < 4, Gamma-method errors."""
import numpy as np

from lattice import XY, Phi4
from observables.stats import gamma_method
from samplers import LearnedMH
from samplers.chain import ChainState, MemoryWriter, run_chain
from samplers.proposal import ModelProposal
from tests.exact import free_field_phi2, ring_link_cos

Z_MAX = 4.0


def chain(run, theory, n, seed=1):
    writer = MemoryWriter()
    summary = run_chain(theory, LearnedMH({"path": str(run), "seed": seed}), ChainState.start(theory, seed), n,
                        n_therm=500, writer=writer)
    configs, actions, _ = writer.arrays()
    return configs, actions, summary


def test_proposal_interface_serves_an_autoregressive_model(ar_trained):
    prop = ModelProposal(str(ar_trained("xy_2x2")), batch_size=32)
    assert prop.model == "autoregressive"
    x, lq = prop.proposal(5)
    assert x.shape == (2, 2) and abs(prop.log_q(x) - lq) < 1e-10


def test_learned_mh_reproduces_the_free_field_phi2(ar_trained):
    theory = Phi4((4, 4), m2=1.0, g=0.0)
    configs, _, summary = chain(ar_trained("phi4_free_L4"), theory, 6000)
    assert 0.2 < summary.acceptance < 1
    A, B, _ = theory.coefficients
    est = gamma_method((configs**2).mean(axis=(1, 2)))
    z = (est.value - free_field_phi2(theory.shape, A, B)) / est.error
    assert abs(z) < Z_MAX, f"<phi^2> = {est}: z = {z:.2f}"


def test_learned_mh_reproduces_the_xy_2x2_ring(ar_trained):
    theory = XY((2, 2), 1.0)
    _, actions, summary = chain(ar_trained("xy_2x2"), theory, 6000)
    assert 0.1 < summary.acceptance < 1
    est = gamma_method(-actions / (theory.beta * 8))  # S = -beta * 8 <cos> on the 8 (x, mu) terms
    z = (est.value - ring_link_cos(2 * theory.beta, 4)) / est.error
    assert abs(z) < Z_MAX, f"<cos> = {est}: z = {z:.2f}"
