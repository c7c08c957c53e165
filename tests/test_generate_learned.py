"""python -m generate with learned proposals (learned-mh, hybrid, model-samples): files, resume,
kill-safety, bad input; python -m observables measure --reweight."""
import json

import h5py
import numpy as np
import pytest

import generate
from observables.__main__ import main as observables_main
from samplers.ensemble import read_ensemble
from samplers.proposal import checkpoint_file
from tests.cli import generate_then_kill, run_cli

QUIET = ["--quiet", "--threads", "1"]


def test_learned_mh_file_records_the_model_and_per_configuration_densities(trained, tmp_path):
    run, out = trained("u1_L4_trained"), tmp_path / "mh.h5"
    assert generate.main(["--algorithm", "learned-mh", "--proposal", str(run), "--n-configs", "50",
                          "--n-therm", "10", "--out", str(out), *QUIET]) == 0
    e = read_ensemble(out)
    assert e.attrs["theory"] == "u1" and e.attrs["shape"] == [4, 4] and e.attrs["params"] == {"beta": 2.0}
    assert e.attrs["proposal_checkpoint"] == str(checkpoint_file(run).resolve())
    assert len(e.attrs["proposal_sha256"]) == 64 and e.attrs["proposal_exact"] == 1
    assert set(e.diagnostics) == {"action", "accept", "log_q", "log_p", "proposal"}
    np.testing.assert_allclose(e.diagnostics["log_p"], -e.diagnostics["action"], rtol=1e-12)
    report = json.loads(h5py.File(out, "r").attrs["sampler_report"])
    assert {"proposal_ess", "var_log_w", "longest_rejection_run", "acceptance_mh"} <= set(report)


@pytest.mark.parametrize("algorithm", ["learned-mh", "hybrid", "model-samples"])
def test_resume_extends_a_learned_chain_exactly(trained, tmp_path, algorithm):
    base = ["--algorithm", algorithm, "--proposal", str(trained("u1_L4_trained")), "--proposal-batch", "16",
            "--seed", "5", *QUIET] + (["--n-therm", "20"] if algorithm != "model-samples" else [])
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate.main([*base, "--n-configs", "60", "--out", str(whole)]) == 0
    assert generate.main([*base, "--n-configs", "23", "--out", str(part)]) == 0
    assert generate.main(["--resume", "--out", str(part), "--n-configs", "60", *QUIET]) == 0
    a, b = read_ensemble(part), read_ensemble(whole)
    np.testing.assert_array_equal(a.configs, b.configs)
    for k in b.diagnostics:
        np.testing.assert_array_equal(a.diagnostics[k], b.diagnostics[k])


def test_killed_learned_mh_run_resumes_to_the_same_chain(trained, tmp_path):
    args = ["--algorithm", "learned-mh", "--proposal", trained("u1_L4_trained"), "--seed", "7", "--n-therm", "10",
            "--flush-seconds", "0.02", "--every", "3", "--proposal-batch", "64", "--quiet", "--threads", "1"]
    n = 3000
    reference = tmp_path / "reference.h5"
    assert run_cli("generate", *args, "--n-configs", n, "--out", reference)[0] == 0
    killed = tmp_path / "killed.h5"
    stored = generate_then_kill([*args, "--n-configs", n], killed, min_stored=300)
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"
    code, _, err = run_cli("generate", "--resume", "--out", killed, "--n-configs", n, "--quiet")
    assert code == 0, err
    a, b = read_ensemble(killed), read_ensemble(reference)
    np.testing.assert_array_equal(a.configs, b.configs)
    np.testing.assert_array_equal(a.diagnostics["log_q"], b.diagnostics["log_q"])


def bad_cases(run4, run_phi4):
    return {
        "no --proposal": (["--algorithm", "learned-mh"], "needs --proposal"),
        "no such run": (["--algorithm", "learned-mh", "--proposal", "/nonexistent/run"], "no trained model"),
        "another lattice": (["--algorithm", "learned-mh", "--proposal", run4, "--L", "8"],
                            "is for u1 (beta=2.0) on 4x4, not u1 (beta=2.0) on 8x8"),
        "another coupling": (["--algorithm", "hybrid", "--proposal", run4, "--beta", "3"], "not u1 (beta=3.0)"),
        "another theory": (["--algorithm", "learned-mh", "--proposal", run4, "--theory", "xy", "--beta", "2"],
                           "is for u1"),
        "z2 for u1": (["--algorithm", "learned-mh", "--proposal", run4, "--symmetrize", "z2"], "z2 is for phi4"),
        "thermalizing raw samples": (["--algorithm", "model-samples", "--proposal", run_phi4, "--n-therm", "5"],
                                     "no --n-therm"),
        "zero local updates": (["--algorithm", "hybrid", "--proposal", run4, "--hmc-per-proposal", "0"],
                               "must be >= 1"),
        "not a checkpoint": (["--algorithm", "learned-mh", "--proposal", __file__], "not a readable checkpoint"),
    }


def test_bad_input_with_a_proposal_is_a_one_line_error(trained, tmp_path):
    cases = bad_cases(str(trained("u1_L4_trained")), str(trained("phi4_free_L4")))
    for name, (args, needle) in cases.items():
        out = tmp_path / f"{name.replace(' ', '_')}.h5"
        code, _, err = run_cli("generate", *args, "--n-configs", "5", "--out", out, "--quiet")
        assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, \
            f"{name}: {err}"
        assert not out.exists(), name


def test_resume_refuses_another_proposal(trained, tmp_path):
    out = tmp_path / "mh.h5"
    assert generate.main(["--algorithm", "learned-mh", "--proposal", str(trained("u1_L4_trained")),
                          "--n-configs", "5", "--n-therm", "2", "--out", str(out), *QUIET]) == 0
    code, _, err = run_cli("generate", "--resume", "--out", out, "--n-configs", "10",
                           "--proposal", trained("u1_L4_undertrained"))
    assert code == 2 and "drop --proposal" in err


def test_measure_reweights_raw_model_samples_with_their_ess(trained, tmp_path, capsys):
    out = tmp_path / "raw.h5"
    assert generate.main(["--algorithm", "model-samples", "--proposal", str(trained("u1_L4_undertrained")),
                          "--n-configs", "400", "--out", str(out), *QUIET]) == 0
    capsys.readouterr()
    assert observables_main(["measure", str(out), "--reweight", "--json", "--no-store"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["reweighted"] and 0 < result["settings"]["ess"] < 1
    # the reweighted plaquette is the ratio estimator sum w P / sum w of the stored log p - log q
    e = read_ensemble(out)
    w = np.exp(e.diagnostics["log_p"] - e.diagnostics["log_q"] - np.max(e.diagnostics["log_p"] - e.diagnostics["log_q"]))
    from observables.u1 import average_plaquette
    expected = np.sum(w * average_plaquette(e.configs)) / np.sum(w)
    plaquette = next(r for r in result["results"] if r["name"] == "P")
    assert plaquette["value"] == pytest.approx(expected, rel=1e-12)


def test_reweight_is_refused_for_a_chain_of_the_target(trained, tmp_path):
    out = tmp_path / "mh.h5"
    assert generate.main(["--algorithm", "learned-mh", "--proposal", str(trained("u1_L4_trained")),
                          "--n-configs", "20", "--n-therm", "2", "--out", str(out), *QUIET]) == 0
    code, _, err = run_cli("observables", "measure", out, "--reweight")
    assert code == 2 and "--reweight applies to files of raw model samples" in err
