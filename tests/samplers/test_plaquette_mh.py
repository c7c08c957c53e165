"""samplers/plaquette_mh.py: independence MH from independent plaquettes (lattice/u1_plaquettes.py). The update
and its random stream, the report, exact results against the character expansion (fixed seeds, Gamma-method
errors, |z| < 4), and the CLI (python -m generate --algorithm plaquette-mh: a file, exact resume, bad input)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import generate
from lattice import U1, XY, Phi4
from lattice.rng import new_key
from lattice.u1_plaquettes import expected_ess_fraction, log_weight, propose
from observables.stats import gamma_method
from observables.u1 import charge_distribution, plaquette_angles, topological_charge, wilson_loops
from samplers import SAMPLERS, PlaquetteMH
from samplers.chain import ChainState, MemoryWriter, chain_rng, run_chain
from samplers.ensemble import read_ensemble
from samplers.plaquette_mh import WeightTally
from samplers.weights import ess_fraction
from tests import cli
from tests.exact import (u1_charge_distribution, u1_plaquette_torus, u1_topological_susceptibility_torus,
                         u1_wilson_loop_torus)

Z_MAX = 4.0


def hot(theory, seed):
    return np.ascontiguousarray(theory.random_config(np.random.default_rng(seed)))


# --------------------------------------------------------------------------- the update
def test_update_proposes_from_one_key_and_accepts_with_the_last_plaquette_weight():
    theory = U1((4, 6), 3.0)
    q, rng = hot(theory, 0), chain_rng(5)
    sampler, outcomes = PlaquetteMH(), set()
    for _ in range(40):
        mirror = chain_rng(0)
        mirror.bit_generator.state = rng.bit_generator.state
        key, u = new_key(mirror), mirror.random()
        proposal = propose(key, theory.shape, theory.beta)
        ratio = math.exp(log_weight(proposal, theory.beta) - log_weight(q, theory.beta))
        before = q.copy()
        info = sampler.update(theory, q, rng)
        assert rng.bit_generator.state == mirror.bit_generator.state  # one key, one uniform, whatever happened
        accepted = u < ratio
        assert info.accept == float(accepted)
        np.testing.assert_array_equal(q, proposal if accepted else before)
        outcomes.add(accepted)
    assert outcomes == {True, False}


def test_report_gives_acceptance_and_measured_and_derived_proposal_ess():
    theory = U1((4, 4), 2.0)
    q, rng = hot(theory, 1), chain_rng(6)
    mirror = chain_rng(6)
    sampler, log_w, n_acc = PlaquetteMH(), [], 0
    for _ in range(300):
        n_acc += sampler.update(theory, q, rng).accept
        key, _ = new_key(mirror), mirror.random()
        log_w.append(log_weight(propose(key, theory.shape, theory.beta), theory.beta))
    r = sampler.report()
    assert r["proposals"] == 300 and r["acceptance_mh"] == n_acc / 300
    assert abs(r["proposal_ess"] - ess_fraction(log_w)) < 1e-12
    assert r["proposal_ess_expected"] == expected_ess_fraction(2.0, 16)
    assert PlaquetteMH().report() == {}


def test_weight_tally_is_ess_fraction_of_the_weights_seen():
    log_w = np.random.default_rng(2).normal(0.0, 30.0, 1000)  # weights over 10^40 of range, rising maxima
    tally = WeightTally()
    for x in log_w:
        tally.add(float(x))
    assert abs(tally.ess_fraction() - ess_fraction(log_w)) < 1e-12


def test_sampler_carries_no_state_and_round_trips_its_settings():
    s = PlaquetteMH()
    s.update(U1((4, 4), 1.0), hot(U1((4, 4), 1.0), 2), chain_rng(0))
    assert s.get_state().size == 0 and s.settings() == {}
    assert PlaquetteMH.from_settings(s.settings()) == s and SAMPLERS["plaquette-mh"] is PlaquetteMH


@pytest.mark.parametrize("theory", [XY((4, 4), 1.0), Phi4((4, 4), kappa=0.2, lam=0.1)], ids=["xy", "phi4"])
def test_refuses_theories_other_than_u1_in_one_line(theory):
    with pytest.raises(ValueError) as e:
        PlaquetteMH().check(theory)
    assert "\n" not in str(e.value) and theory.name in str(e.value)


def test_odd_and_rectangular_lattices_are_fine():
    theory = U1((3, 5), 2.0)
    PlaquetteMH().check(theory)
    writer = MemoryWriter()
    run_chain(theory, PlaquetteMH(), ChainState.start(theory, 3), 50, n_therm=10, writer=writer)
    configs, actions, diag = writer.arrays()
    assert configs.shape == (50, 2, 3, 5) and 0 < diag["accept"].mean() < 1


# --------------------------------------------------------------------------- exact results
def chain_observables(theory, n, seed, n_therm=200, chunk=2000):
    """Per update of a plaquette-mh chain (every configuration measured): plaquette (from S), W(1,1), W(1,2),
    W(2,2), Q, and cos theta_P(P_last) (the one plaquette the accept step weighs: by translation invariance
    its expectation is the plaquette's, and an error in the weight shows there undiluted by 1/V)."""
    sampler, rng = PlaquetteMH(), chain_rng(seed)
    q = hot(theory, seed)
    for _ in range(n_therm):
        sampler.update(theory, q, rng)
    out = {k: [] for k in ("P", "W11", "W12", "W22", "Q", "P_last")}
    buf = np.empty((chunk,) + theory.config_shape)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        for i in range(m):
            sampler.update(theory, q, rng)
            buf[i] = q
        block = buf[:m]
        out["P"].append(1.0 - theory.action_batch(block) / (theory.beta * theory.shape[0] * theory.shape[1]))
        w = wilson_loops(block, 2, 2)
        out["W11"].append(w[:, 0, 0])
        out["W12"].append(w[:, 0, 1])
        out["W22"].append(w[:, 1, 1])
        out["Q"].append(topological_charge(block))
        out["P_last"].append(np.cos(plaquette_angles(block)[:, -1, -1]))
    return {k: np.concatenate(v) for k, v in out.items()}


def z_score(series, exact):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a P(Q) bin with few entries may warn of a short chain
        e = gamma_method(np.asarray(series, dtype=np.float64))
    return (e.value - exact) / e.error


@pytest.mark.parametrize("L", [8, 16])
@pytest.mark.parametrize("beta", [1.0, 3.0, 6.0, 10.0])
def test_plaquette_loops_and_topology_match_character_expansion(beta, L):
    theory, V = U1((L, L), beta), L * L
    n = 12_000
    obs = chain_observables(theory, n, seed=int(10 * beta) + L)
    z = {"P": z_score(obs["P"], u1_plaquette_torus(beta, V)),
         "cos theta_P(P_last)": z_score(obs["P_last"], u1_plaquette_torus(beta, V)),
         "W(1,1)": z_score(obs["W11"], u1_wilson_loop_torus(beta, V, 1)),
         "W(1,2)": z_score(obs["W12"], u1_wilson_loop_torus(beta, V, 2)),
         "W(2,2)": z_score(obs["W22"], u1_wilson_loop_torus(beta, V, 4)),
         "chi_t": z_score(obs["Q"].astype(float) ** 2 / V, u1_topological_susceptibility_torus(beta, V))}
    q_max = 12
    exact_pq = u1_charge_distribution(beta, V, q_max)
    dist = charge_distribution(obs["Q"], q_max=q_max, symmetric=True)
    for q in np.argsort(-exact_pq[q_max:])[:3]:  # the three most probable |Q|, if the chain can see them
        if n * exact_pq[q_max + q] < 50:
            continue
        z[f"P(|Q|={q})"] = (dist.p[q_max + q] - exact_pq[q_max + q]) / dist.error[q_max + q]
    bad = {k: round(v, 2) for k, v in z.items() if not abs(v) < Z_MAX}
    assert not bad, f"|z| >= {Z_MAX}: {bad} (all: {z})"


# --------------------------------------------------------------------------- the CLI
CLI = ["--theory", "u1", "--L", "8", "--beta", "6", "--algorithm", "plaquette-mh", "--seed", "3", "--quiet"]


def test_generate_writes_a_plaquette_mh_ensemble_and_resumes_it_exactly(tmp_path):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate.main([*CLI, "--n-configs", "200", "--out", str(whole)]) == 0
    code, _, err = cli.run_cli("generate", *CLI, "--n-configs", 80, "--out", part)
    assert code == 0, err
    code, _, err = cli.run_cli("generate", "--resume", "--out", part, "--n-configs", 200, "--quiet")
    assert code == 0, err
    a, b = read_ensemble(part), read_ensemble(whole)
    assert b.configs.shape == (200, 2, 8, 8) and b.attrs["algorithm"] == "plaquette-mh"
    assert b.attrs["status"] == "complete" and b.attrs["sampler_settings"] == {}
    assert 0.1 < b.diagnostics["accept"].mean() < 0.4  # ~0.22 at beta = 6
    np.testing.assert_array_equal(a.configs, b.configs)
    np.testing.assert_array_equal(a.diagnostics["accept"], b.diagnostics["accept"])


def test_generate_refuses_plaquette_mh_for_xy_in_one_line_with_exit_2(tmp_path, capsys):
    args = ["--theory", "xy", "--L", "8", "--beta", "1", "--algorithm", "plaquette-mh", "--n-configs", "5", "--quiet"]
    assert generate.main([*args, "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plaquette-mh" in err and "xy" in err
