"""python -m generate: the file it writes, resume and kill-safety, and bad input."""

import h5py
import numpy as np
import pytest

import generate
from samplers.ensemble import read_ensemble
from tests import cli
from tests.cli import generate_then_kill

U1_SMALL = ["--theory", "u1", "--L", "4", "--beta", "2", "--algorithm", "hmc", "--n-therm", "20", "--quiet"]


def run_cli(*args):
    """python -m generate in a subprocess; (exit code, stdout, stderr)."""
    return cli.run_cli("generate", *args)


def test_writes_ensemble_with_configs_diagnostics_and_provenance(tmp_path):
    out = tmp_path / "u1.h5"
    assert generate.main([*U1_SMALL, "--n-configs", "50", "--every", "2", "--seed", "3", "--out", str(out)]) == 0
    e = read_ensemble(out)
    assert e.configs.shape == (50, 2, 4, 4)
    assert np.all(np.abs(e.configs) <= np.pi)
    assert set(e.diagnostics) == {"action", "accept", "dH"}
    a = e.attrs
    assert (a["theory"], a["params"], a["shape"], a["algorithm"], a["seed"], a["every"]) == \
        ("u1", {"beta": 2.0}, [4, 4], "hmc", 3, 2)
    assert a["status"] == "complete" and a["n_configs"] == 50
    for key in ("sampler_settings", "version", "git_commit", "host", "user", "command_line",
                "start_time", "end_time", "compile_time_s"):
        assert key in a, key
    assert a["sampler_settings"]["step_size"] > 0
    with h5py.File(out, "r") as f:
        assert f["configs"].chunks is not None and f["configs"].maxshape[0] is None


def test_toml_config_file_gives_the_same_run_as_flags(tmp_path):
    toml = tmp_path / "xy.toml"
    toml.write_text('theory = "xy"\nL = 4\nbeta = 1.1\nalgorithm = "metropolis"\nn-configs = 30\n'
                    'seed = 5\nn_therm = 10\nquiet = true\n')
    assert generate.main(["--config", str(toml), "--out", str(tmp_path / "a.h5")]) == 0
    assert generate.main(["--theory", "xy", "--L", "4", "--beta", "1.1", "--algorithm", "metropolis",
                          "--n-configs", "30", "--seed", "5", "--n-therm", "10", "--quiet",
                          "--out", str(tmp_path / "b.h5")]) == 0
    np.testing.assert_array_equal(read_ensemble(tmp_path / "a.h5").configs, read_ensemble(tmp_path / "b.h5").configs)


def test_phi4_flow_parameterization_is_recorded(tmp_path):
    out = tmp_path / "phi4.h5"
    assert generate.main(["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8", "--n-configs", "5",
                          "--n-therm", "5", "--quiet", "--out", str(out)]) == 0
    a = read_ensemble(out).attrs
    assert a["parameterization"] == "flow" and a["params"] == {"m2": -4.0, "g": 8.0}


def test_resume_extends_the_chain_exactly(tmp_path):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate.main([*U1_SMALL, "--n-configs", "40", "--out", str(whole)]) == 0
    assert generate.main([*U1_SMALL, "--n-configs", "15", "--out", str(part)]) == 0
    assert generate.main(["--resume", "--out", str(part), "--n-configs", "40", "--quiet"]) == 0
    np.testing.assert_array_equal(read_ensemble(part).configs, read_ensemble(whole).configs)
    np.testing.assert_array_equal(read_ensemble(part).diagnostics["dH"], read_ensemble(whole).diagnostics["dH"])


@pytest.mark.parametrize("algorithm", ["metropolis", "hmc"])
def test_killed_run_keeps_its_configs_and_resumes_to_the_same_chain(tmp_path, algorithm):
    # long enough (a few seconds) that the kill lands mid-run, with frequent flushes
    args = ["--theory", "phi4", "--L", "8", "--kappa", "0.25", "--lam", "0.5", "--algorithm", algorithm,
            "--n-therm", "50", "--seed", "7", "--quiet", "--flush-seconds", "0.02", "--every", "10"]
    n = 5000
    reference = tmp_path / "reference.h5"
    assert run_cli(*args, "--n-configs", n, "--out", reference)[0] == 0

    killed = tmp_path / "killed.h5"
    stored = generate_then_kill([*args, "--n-configs", n], killed, min_stored=200)
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"

    e = read_ensemble(killed)  # the killed file opens and holds every flushed configuration
    assert 0 < len(e.configs) < n
    np.testing.assert_array_equal(e.configs, read_ensemble(reference).configs[: len(e.configs)])

    code, _, err = run_cli("--resume", "--out", killed, "--n-configs", n, "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(read_ensemble(killed).configs, read_ensemble(reference).configs)
    with h5py.File(killed, "r") as f:  # a clean file again
        assert f.attrs["status"] == "complete"


# ------------------------------------------------------------------ bad input
BASE = ["--n-configs", "5", "--n-therm", "2", "--quiet"]
BAD = {
    "unknown theory": (["--theory", "su3", "--L", "4", "--beta", "1"], "invalid choice"),
    "unknown algorithm": (["--theory", "u1", "--L", "4", "--beta", "1", "--algorithm", "gibbs"], "invalid choice"),
    "L < 2": (["--theory", "u1", "--L", "1", "--beta", "1"], "extent must be >= 2"),
    "odd L for checkerboard": (["--theory", "xy", "--L", "5", "--beta", "1", "--algorithm", "metropolis"], "even"),
    "lambda < 0": (["--theory", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "-0.1"], "unbounded"),
    "g < 0": (["--theory", "phi4", "--L", "4", "--m2", "1", "--g", "-1"], "unbounded"),
    "beta < 0 for u1": (["--theory", "u1", "--L", "4", "--beta", "-1"], "beta"),
    "missing parameter": (["--theory", "phi4", "--L", "4", "--kappa", "0.2"], "kappa, lam"),
    "parameter of another theory": (["--theory", "xy", "--L", "4", "--beta", "1", "--kappa", "0.2"], "no parameter"),
    "non-positive n-configs": (["--theory", "xy", "--L", "4", "--beta", "1", "--n-configs", "0"], "n-configs"),
    "every < 1": (["--theory", "xy", "--L", "4", "--beta", "1", "--every", "0"], "every"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_error_and_nonzero_exit(tmp_path, case):
    args, needle = BAD[case]
    out = tmp_path / "x.h5"
    code, stdout, stderr = run_cli(*BASE, *args, "--out", out)
    assert code != 0
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert needle in last, stderr
    assert not out.exists()


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    code, _, stderr = run_cli(*U1_SMALL, "--n-configs", "3", "--out", out)
    assert code == 2 and "exists" in stderr and "Traceback" not in stderr
    assert out.read_bytes() == b"precious"


def test_overwrite_replaces_an_existing_file(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"old")
    assert generate.main([*U1_SMALL, "--n-configs", "3", "--out", str(out), "--overwrite"]) == 0
    assert len(read_ensemble(out).configs) == 3


@pytest.mark.parametrize("change,needle", [(["--beta", "3"], "beta"), (["--L", "8"], "L"),
                                           (["--theory", "xy"], "theory"), (["--algorithm", "metropolis"], "algorithm")])
def test_resume_refuses_a_file_made_with_other_settings(tmp_path, change, needle):
    out = tmp_path / "x.h5"
    assert generate.main([*U1_SMALL, "--n-configs", "3", "--out", str(out)]) == 0
    before = out.read_bytes()
    args = [*U1_SMALL, "--n-configs", "6", "--out", str(out), "--resume"]
    for flag, value in zip(change[::2], change[1::2]):
        args[args.index(flag) + 1] = value
    code, _, stderr = run_cli(*args)
    assert code == 2 and needle in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize("content", [b"not an hdf5 file at all", "truncated"])
def test_resume_refuses_a_damaged_or_foreign_file(tmp_path, content):
    out = tmp_path / "x.h5"
    if content == "truncated":
        assert generate.main([*U1_SMALL, "--n-configs", "20", "--out", str(out)]) == 0
        content = out.read_bytes()[: len(out.read_bytes()) // 2]
    out.write_bytes(content)
    code, _, stderr = run_cli(*U1_SMALL, "--n-configs", "30", "--out", out, "--resume")
    assert code == 2 and "Traceback" not in stderr
    assert out.read_bytes() == content


def test_unknown_key_in_config_file_is_an_error(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('theory = "xy"\nbogus = 1\n')
    code, _, stderr = run_cli("--config", toml, "--out", tmp_path / "x.h5")
    assert code == 2 and "bogus" in stderr and "Traceback" not in stderr


def test_help_lists_every_option():
    code, stdout, _ = run_cli("--help")
    assert code == 0
    for flag in ("--theory", "--L", "--kappa", "--lam", "--m2", "--g", "--beta", "--algorithm", "--integrator",
                 "--n-configs", "--every", "--n-therm", "--seed", "--out", "--resume", "--overwrite", "--config",
                 "learned-mh", "hybrid", "model-samples", "--proposal", "--proposal-batch", "--proposal-dtype",
                 "--device", "--threads", "--symmetrize", "--local", "--hmc-per-proposal"):
        assert flag in stdout


# ------------------------------------------------------------------ bad input found by fuzzing (in-process)
U1 = ["--theory", "u1", "--L", "4", "--beta", "1"]
FUZZED = {
    "beta nan": (["--theory", "u1", "--L", "4", "--beta", "nan"], "beta must be finite"),
    "beta inf": (["--theory", "xy", "--L", "4", "--beta", "inf"], "beta must be finite"),
    "lam nan": (["--theory", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "nan"], "lam must be finite"),
    "kappa -inf": (["--theory", "phi4", "--L", "4", "--kappa=-inf", "--lam", "0.1"], "kappa must be finite"),
    "both parameterizations": (["--theory", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--m2", "1",
                                "--g", "1"], "not both"),
    "huge lattice": (["--theory", "u1", "--L", "200000", "--beta", "1"], "sites; at most"),
    "huge dimension": (["--theory", "phi4", "--dim", "12", "--L", "32", "--kappa", "0.2", "--lam", "0.1"],
                       "sites; at most"),
    "negative flush interval": ([*U1, "--flush-seconds", "-1"], "--flush-seconds must be"),
    "zero step size untuned": ([*U1, "--step-size", "0", "--no-tune"], "step size must be a finite number > 0"),
    "nan step size": ([*U1, "--step-size", "nan"], "step size must be a finite number > 0"),
}


@pytest.mark.parametrize("case", FUZZED)
def test_fuzzed_bad_input_is_one_line_error(tmp_path, capsys, case):
    args, needle = FUZZED[case]
    out = tmp_path / "x.h5"
    assert generate.main([*BASE, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


TOML_TYPES = {
    "out = 5": ("out must be a string", "out = 5"),
    "list step size": ("step-size must be a number", "step-size = [1, 2]"),
    "fractional n-configs": ("n-configs must be an integer", "n-configs = 50.5"),
    "string n-configs": ("n-configs must be an integer", 'n-configs = "ten"'),
    "unknown choice": ("algorithm must be one of", 'algorithm = "gibbs"'),
    "switch as number": ("quiet must be true or false", "quiet = 1"),
    "beta nan": ("beta must be finite", "beta = nan"),
}


@pytest.mark.parametrize("case", TOML_TYPES)
def test_toml_value_of_the_wrong_type_is_one_line_error(tmp_path, capsys, case):
    needle, line = TOML_TYPES[case]
    key = line.split("=")[0].strip()
    table = {"theory": '"u1"', "L": "4", "beta": "1.0", "n-configs": "5", "n-therm": "2", "out": f'"{tmp_path / "x.h5"}"'}
    table[key] = line.split("=", 1)[1].strip()
    cfg = tmp_path / "run.toml"
    cfg.write_text("".join(f"{k} = {v}\n" for k, v in table.items()))
    assert generate.main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "x.h5").exists()


def test_resume_of_a_missing_file_without_theory_says_there_is_nothing_to_resume(tmp_path, capsys):
    assert generate.main(["--out", str(tmp_path / "missing.h5"), "--resume", "--n-configs", "5"]) == 2
    assert "does not exist, so there is no chain to continue" in capsys.readouterr().err


def test_resume_of_an_hdf5_file_without_the_ensemble_attributes_is_refused(tmp_path, capsys):
    out = tmp_path / "x.h5"
    with h5py.File(out, "w") as f:
        f.attrs["format"] = "latticeml-ensemble"
    assert generate.main(["--out", str(out), "--resume", "--n-configs", "5"]) == 2
    assert "not a complete latticeml ensemble" in capsys.readouterr().err


def test_help_states_each_default_once():
    text = generate.build_parser().format_help()
    assert "(default: None)" not in text and "] (default:" not in text
    assert "docs/physics.md" in text


BROKEN = ["--theory", "phi4", "--L", "16", "--kappa", "1.0", "--lam", "0.022", "--n-configs", "50", "--quiet"]


def test_a_hot_start_frozen_into_domains_in_the_broken_phase_is_warned_about(tmp_path, capsys):
    assert generate.main([*BROKEN, "--out", str(tmp_path / "hot.h5")]) == 0
    assert "ordered domains of both signs" in capsys.readouterr().err


def test_a_cold_start_in_the_broken_phase_gets_no_domain_warning(tmp_path, capsys):
    assert generate.main([*BROKEN, "--init", "cold", "--out", str(tmp_path / "cold.h5")]) == 0
    assert "domains" not in capsys.readouterr().err


def test_an_ordered_start_in_the_broken_phase_gets_no_domain_warning(tmp_path, capsys):
    assert generate.main([*BROKEN, "--init", "ordered", "--out", str(tmp_path / "ordered.h5")]) == 0
    assert "domains" not in capsys.readouterr().err
