"""python -m generate --algorithm tempering: the file (target chain, settings, per-pair swap report),
chain sets, exact resume (also after SIGKILL: configurations, diagnostics and state bit for bit), and
bad input as one line with exit status 2."""
import json

import h5py
import numpy as np
import pytest

import generate
from samplers.ensemble import read_ensemble
from samplers.tempering import replica_path
from tests import cli
from tests.cli import generate_then_kill
from tests.exact import u1_plaquette_torus
from tests.samplers.test_exact_results import assert_agrees

U1_PT = ["--theory", "u1", "--L", "4", "--beta", "3", "--algorithm", "tempering", "--ladder", "geometric:1:3:3",
         "--n-therm", "20", "--quiet"]


def arrays(path):
    """Everything a chain file holds that must be bitwise reproducible."""
    with h5py.File(path, "r") as f:
        out = {"configs": f["configs"][...], **{f"diagnostics/{k}": v[...] for k, v in f["diagnostics"].items()},
               **{f"state/{k}": v[...] for k, v in f["state"].items()}}
        out["settings"] = json.loads(f.attrs["sampler_settings"])
        out["settings"].pop("replica_of", None)  # a rung's file names its chain's file, which differs by test
    return out


def assert_same_chain(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if key == "settings":
            assert a[key] == b[key]
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_tempering_stores_the_target_chain_with_its_ladder_and_swap_report(tmp_path):
    out = tmp_path / "u1.h5"
    assert generate.main([*U1_PT, "--replica-algorithm", "heatbath", "--n-configs", "50", "--out", str(out)]) == 0
    e = read_ensemble(out)
    assert e.configs.shape == (50, 2, 4, 4) and e.attrs["algorithm"] == "tempering"
    s = e.attrs["sampler_settings"]
    assert s["ladder"][-1] == 3.0 and s["parameter"] == "beta" and len(s["ladder"]) == 3
    assert s["replica"]["algorithm"] == "heatbath" and s["init"] == "hot"
    assert set(e.diagnostics) == {"action", "accept", "swap_accept"}
    report = json.loads(e.attrs["sampler_report"]) if isinstance(e.attrs["sampler_report"], str) else \
        e.attrs["sampler_report"]
    assert len(report["swap_acceptance"]) == 2 and all(0 < a <= 1 for a in report["swap_acceptance"])
    with h5py.File(out, "r") as f:  # the other replicas travel in the chain state
        assert f["state/sampler"].shape == (4 + 2 * 3 + 2 * 2 + 2 * 32,)


def test_the_run_summary_prints_the_acceptance_of_each_pair(tmp_path, capsys):
    args = [a for a in U1_PT if a != "--quiet"]
    assert generate.main([*args, "--replica-algorithm", "metropolis", "--n-configs", "20",
                          "--out", str(tmp_path / "x.h5")]) == 0
    text = capsys.readouterr().out
    assert "swap_acceptance:" in text and "round_trips:" in text


@pytest.mark.parametrize("chains", [1, 2])
def test_resume_extends_the_chains_exactly(tmp_path, chains):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    args = [*U1_PT, "--chains", str(chains), "--init", "cold"]
    assert generate.main([*args, "--n-configs", "40", "--out", str(whole)]) == 0
    assert generate.main([*args, "--n-configs", "15", "--out", str(part)]) == 0
    assert generate.main(["--resume", "--out", str(part), "--n-configs", "40", "--chains", str(chains), "--quiet"]) == 0
    names = ["{}.h5"] if chains == 1 else [f"{{}}.chain{k}.h5" for k in range(chains)]
    for name in names:
        assert_same_chain(arrays(tmp_path / name.format("part")), arrays(tmp_path / name.format("whole")))
    if chains == 2:
        assert not np.array_equal(arrays(tmp_path / "whole.chain0.h5")["configs"],
                                  arrays(tmp_path / "whole.chain1.h5")["configs"])


def test_killed_run_resumes_to_the_same_chain_and_rung_files_bit_for_bit(tmp_path):
    args = ["--theory", "u1", "--L", "8", "--beta", "4", "--algorithm", "tempering", "--ladder", "geometric:1:4:4",
            "--replica-algorithm", "heatbath", "--store-replicas", "all", "--n-therm", "20", "--seed", "7", "--quiet",
            "--flush-seconds", "0.1", "--every", "2"]  # a flush of the 4 files takes ~30 ms: not more often
    n = 1000
    reference = tmp_path / "reference.h5"
    assert cli.run_cli("generate", *args, "--n-configs", n, "--out", reference)[0] == 0
    killed = tmp_path / "killed.h5"
    stored = generate_then_kill([*args, "--n-configs", n], killed, min_stored=50)
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"
    code, _, err = cli.run_cli("generate", "--resume", "--out", killed, "--n-configs", n, "--quiet")
    assert code == 0, err
    assert_same_chain(arrays(killed), arrays(reference))
    with h5py.File(killed, "r") as f:
        assert f.attrs["status"] == "complete" and int(f.attrs["resumed"]) == 1
    for r in range(3):
        assert_same_chain(arrays(replica_path(killed, r)), arrays(replica_path(reference, r)))


def test_store_replicas_all_writes_each_rung_as_an_ensemble_of_its_coupling(tmp_path):
    out = tmp_path / "u1.h5"
    assert generate.main([*U1_PT, "--replica-algorithm", "heatbath", "--store-replicas", "all", "--n-configs", "3000",
                          "--seed", "2", "--out", str(out)]) == 0
    ladder = read_ensemble(out).attrs["sampler_settings"]["ladder"]
    for r, beta in enumerate(ladder[:-1]):
        e = read_ensemble(replica_path(out, r))
        assert e.attrs["params"] == {"beta": beta} and e.attrs["replica"] == r and e.attrs["replica_of"] == "u1.h5"
        assert e.configs.shape == (3000, 2, 4, 4) and e.attrs["status"] == "complete"
        assert_agrees(1.0 - e.diagnostics["action"] / (beta * 16), u1_plaquette_torus(beta, 16))
    assert not replica_path(out, 2).exists()  # the target rung is the chain's own file


def test_resuming_a_rung_file_is_refused_with_one_line(tmp_path, capsys):
    out = tmp_path / "u1.h5"
    assert generate.main([*U1_PT, "--store-replicas", "all", "--n-configs", "5", "--out", str(out)]) == 0
    rung = replica_path(out, 0)
    before = rung.read_bytes()
    assert generate.main(["--resume", "--out", str(rung), "--n-configs", "10", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume that file" in err and "u1.h5" in err
    assert rung.read_bytes() == before


BAD = {
    "no ladder": (["--beta", "3"], "needs --ladder"),
    "target not on the ladder": (["--beta", "2.5", "--ladder", "1,2,3"], "must be one of the ladder"),
    "not increasing": (["--beta", "3", "--ladder", "3,1"], "strictly increasing"),
    "R < 2": (["--beta", "3", "--ladder", "linear:1:3:1"], "R >= 2"),
    "unknown replica algorithm": (["--beta", "3", "--ladder", "1,3", "--replica-algorithm", "hybrid"],
                                  "--replica-algorithm must be one of"),
    "heatbath on phi4": (["--theory", "phi4", "--kappa", "0.2", "--lam", "0.1", "--ladder", "0.1,0.2",
                          "--replica-algorithm", "heatbath"], "not phi4"),
    "ladder without tempering": (["--beta", "3", "--algorithm", "hmc", "--ladder", "1,3"],
                                 "go with --algorithm tempering"),
    "store replicas without tempering": (["--beta", "3", "--algorithm", "hmc", "--store-replicas", "all"],
                                         "go with --algorithm tempering"),
    "ladder with a learned proposal": (["--beta", "3", "--algorithm", "learned-mh", "--proposal", "runs/none",
                                        "--ladder", "1,3"], "go with --algorithm tempering"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, capsys):
    extra, needle = BAD[case]
    theory = [] if "--theory" in extra else ["--theory", "u1"]
    algorithm = [] if "--algorithm" in extra else ["--algorithm", "tempering"]
    out = tmp_path / "x.h5"
    assert generate.main([*theory, "--L", "4", *algorithm, *extra, "--n-configs", "5", "--quiet",
                          "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_bad_ladder_is_refused_by_the_cli_process_with_one_line(tmp_path):
    code, _, stderr = cli.run_cli("generate", "--theory", "u1", "--L", "4", "--beta", "6", "--algorithm", "tempering",
                                  "--ladder", "linear:1:5:4", "--n-configs", "5", "--out", tmp_path / "x.h5")
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "beta = 6" in stderr


def test_resume_refuses_a_new_ladder(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert generate.main([*U1_PT, "--n-configs", "3", "--out", str(out)]) == 0
    before = out.read_bytes()
    assert generate.main(["--resume", "--out", str(out), "--n-configs", "6", "--ladder", "1,3", "--quiet"]) == 2
    assert "--ladder" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_help_lists_the_tempering_flags(capsys):
    with pytest.raises(SystemExit):
        generate.main(["--help"])
    text = capsys.readouterr().out
    for word in ("tempering", "--ladder", "--replica-algorithm", "--swap-every", "--store-replicas"):
        assert word in text
