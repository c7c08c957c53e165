"""python -m generate --chains K --first-chain k0: one file per chain, NAME.chain{k}.h5, chain k defined by
(seed, k) alone; a killed set resumes every chain bit for bit."""
import h5py
import numpy as np
import pytest

import generate
from samplers.ensemble import read_ensemble
from tests.cli import generate_then_kill, run_cli

U1_SMALL = ["--theory", "u1", "--L", "4", "--beta", "2", "--n-therm", "20", "--seed", "3", "--quiet"]


def configs(path):
    return read_ensemble(path).configs


def test_a_set_writes_one_file_per_chain_and_one_chain_writes_the_plain_name(tmp_path):
    assert generate.main([*U1_SMALL, "--n-configs", "30", "--chains", "3", "--out", str(tmp_path / "s.h5")]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == ["s.chain0.h5", "s.chain1.h5", "s.chain2.h5"]
    assert generate.main([*U1_SMALL, "--n-configs", "30", "--chains", "1", "--out", str(tmp_path / "one.h5")]) == 0
    assert (tmp_path / "one.h5").exists()
    with h5py.File(tmp_path / "s.chain2.h5", "r") as f:
        assert f.attrs["chain"] == 2 and f.attrs["seed"] == 3


def test_chain_zero_of_a_set_is_the_single_chain_and_first_chain_picks_the_same_chains(tmp_path):
    assert generate.main([*U1_SMALL, "--n-configs", "30", "--chains", "3", "--out", str(tmp_path / "s.h5")]) == 0
    assert generate.main([*U1_SMALL, "--n-configs", "30", "--out", str(tmp_path / "single.h5")]) == 0
    assert generate.main([*U1_SMALL, "--n-configs", "30", "--chains", "2", "--first-chain", "1",
                          "--out", str(tmp_path / "late.h5")]) == 0
    np.testing.assert_array_equal(configs(tmp_path / "s.chain0.h5"), configs(tmp_path / "single.h5"))
    for k in (1, 2):
        np.testing.assert_array_equal(configs(tmp_path / f"s.chain{k}.h5"), configs(tmp_path / f"late.chain{k}.h5"))
    assert not np.array_equal(configs(tmp_path / "s.chain1.h5"), configs(tmp_path / "s.chain2.h5"))


def test_a_set_does_not_depend_on_the_thread_count(tmp_path):
    args = ["--theory", "xy", "--L", "8", "--beta", "1", "--algorithm", "metropolis", "--n-therm", "10",
            "--n-configs", "20", "--chains", "2", "--quiet"]
    for threads in (1, 2):
        assert run_cli("generate", *args, "--threads", threads, "--out", tmp_path / f"t{threads}.h5")[0] == 0
    for k in (0, 1):
        np.testing.assert_array_equal(configs(tmp_path / f"t1.chain{k}.h5"), configs(tmp_path / f"t2.chain{k}.h5"))


def test_the_summary_reports_every_chain_and_the_total(tmp_path):
    code, out, err = run_cli("generate", *U1_SMALL[:-1], "--n-configs", "25", "--chains", "3",
                             "--out", tmp_path / "s.h5")
    assert code == 0, err
    assert "3, 75 configurations stored in total" in out
    for k in range(3):
        assert f"chain {k}:" in out and f"s.chain{k}.h5" in out


def test_a_killed_set_resumes_every_chain_to_the_same_chains(tmp_path):
    args = ["--theory", "phi4", "--L", "8", "--kappa", "0.25", "--lam", "0.5", "--algorithm", "hmc", "--n-therm",
            "50", "--seed", "7", "--quiet", "--flush-seconds", "0.02", "--every", "10", "--chains", "3"]
    n = 2000
    assert run_cli("generate", *args, "--n-configs", n, "--out", tmp_path / "ref.h5")[0] == 0
    stored = generate_then_kill([*args, "--n-configs", n], tmp_path / "k.h5", min_stored=100,
                                watch=tmp_path / "k.chain2.h5")
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"
    code, _, err = run_cli("generate", "--resume", "--chains", "3", "--out", tmp_path / "k.h5", "--n-configs", n,
                           "--quiet")
    assert code == 0, err
    for k in range(3):
        np.testing.assert_array_equal(configs(tmp_path / f"k.chain{k}.h5"), configs(tmp_path / f"ref.chain{k}.h5"))
        with h5py.File(tmp_path / f"k.chain{k}.h5", "r") as f:
            assert f.attrs["status"] == "complete"


def test_a_killed_learned_mh_set_resumes_every_chain_to_the_same_chains(trained, tmp_path):
    args = ["--algorithm", "learned-mh", "--proposal", trained("u1_L4_trained"), "--seed", "7", "--n-therm", "10",
            "--flush-seconds", "0.02", "--every", "3", "--proposal-batch", "64", "--quiet", "--threads", "1",
            "--chains", "2"]
    n = 2000
    assert run_cli("generate", *args, "--n-configs", n, "--out", tmp_path / "ref.h5")[0] == 0
    stored = generate_then_kill([*args, "--n-configs", n], tmp_path / "k.h5", min_stored=200,
                                watch=tmp_path / "k.chain1.h5")
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"
    code, _, err = run_cli("generate", "--resume", "--chains", "2", "--out", tmp_path / "k.h5", "--n-configs", n,
                           "--quiet")
    assert code == 0, err
    for k in range(2):
        a, b = read_ensemble(tmp_path / f"k.chain{k}.h5"), read_ensemble(tmp_path / f"ref.chain{k}.h5")
        np.testing.assert_array_equal(a.configs, b.configs)
        np.testing.assert_array_equal(a.diagnostics["log_q"], b.diagnostics["log_q"])


def test_resume_extends_a_set_by_new_chains(tmp_path):
    out = tmp_path / "s.h5"
    assert generate.main([*U1_SMALL, "--n-configs", "20", "--chains", "2", "--out", str(out)]) == 0
    assert generate.main(["--resume", "--chains", "3", "--n-configs", "20", "--out", str(out), "--quiet"]) == 0
    assert generate.main([*U1_SMALL, "--n-configs", "20", "--chains", "1", "--first-chain", "2",
                          "--out", str(tmp_path / "alone.h5")]) == 0
    np.testing.assert_array_equal(configs(tmp_path / "s.chain2.h5"), configs(tmp_path / "alone.chain2.h5"))


BAD = {
    "no chains": (["--chains", "0"], "--chains must be >= 1"),
    "negative first chain": (["--first-chain", "-1"], "--first-chain must be >= 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_chain_flags_are_one_line_errors(tmp_path, case):
    flags, needle = BAD[case]
    code, out, err = run_cli("generate", *U1_SMALL, "--n-configs", "5", *flags, "--out", tmp_path / "s.h5")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.glob("*.h5"))


def test_an_existing_chain_file_is_not_replaced_without_resume_or_overwrite(tmp_path):
    out = tmp_path / "s.h5"
    assert generate.main([*U1_SMALL, "--n-configs", "10", "--chains", "2", "--out", str(out)]) == 0
    before = configs(tmp_path / "s.chain1.h5")
    code, _, err = run_cli("generate", *U1_SMALL, "--n-configs", "10", "--chains", "2", "--seed", "4", "--out", out)
    assert code == 2 and "s.chain0.h5 exists" in err
    np.testing.assert_array_equal(configs(tmp_path / "s.chain1.h5"), before)


def test_resume_refuses_a_file_of_another_chain(tmp_path):
    assert generate.main([*U1_SMALL, "--n-configs", "10", "--chains", "1", "--first-chain", "1",
                          "--out", str(tmp_path / "a.h5")]) == 0
    (tmp_path / "a.chain1.h5").rename(tmp_path / "a.chain0.h5")
    code, _, err = run_cli("generate", "--resume", "--chains", "2", "--n-configs", "20", "--out", tmp_path / "a.h5")
    assert code == 2 and "holds chain 1" in err, err
