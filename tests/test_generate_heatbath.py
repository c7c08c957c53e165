"""python -m generate --algorithm heatbath|overrelaxation: the file, exact resume (also after SIGKILL),
and bad input as one line with exit status 2."""
import h5py
import numpy as np
import pytest

import generate
from samplers.ensemble import read_ensemble
from tests import cli
from tests.cli import generate_then_kill

U1_OR = ["--theory", "u1", "--L", "4", "--beta", "2", "--algorithm", "overrelaxation", "--n-therm", "30", "--quiet"]
XY_HB = ["--theory", "xy", "--L", "4", "--beta", "1.1", "--algorithm", "heatbath", "--n-therm", "10", "--quiet"]


def test_heatbath_writes_an_ensemble_with_its_settings(tmp_path):
    out = tmp_path / "xy.h5"
    assert generate.main([*XY_HB, "--n-configs", "30", "--every", "2", "--seed", "4", "--out", str(out)]) == 0
    e = read_ensemble(out)
    assert e.configs.shape == (30, 4, 4) and np.all(np.abs(e.configs) <= np.pi)
    assert len(np.unique(e.configs[:, 0, 0])) == 30  # every stored configuration is new
    assert (e.attrs["algorithm"], e.attrs["sampler_settings"], e.attrs["status"]) == ("heatbath", {}, "complete")
    np.testing.assert_array_equal(e.diagnostics["accept"], 1.0)


def test_overrelaxation_records_its_mixing_ratio_and_partner_sweep(tmp_path):
    out = tmp_path / "u1.h5"
    assert generate.main([*U1_OR, "--or-per-sweep", "5", "--or-with", "metropolis", "--n-configs", "10",
                          "--out", str(out)]) == 0
    s = read_ensemble(out).attrs["sampler_settings"]
    assert (s["or_per_sweep"], s["or_with"]) == (5, "metropolis") and s["delta"] > 0
    out2 = tmp_path / "default.h5"
    assert generate.main([*U1_OR, "--n-configs", "10", "--out", str(out2)]) == 0
    assert read_ensemble(out2).attrs["sampler_settings"] == {"or_per_sweep": 3, "or_with": "heatbath"}


@pytest.mark.parametrize("extra", [[], ["--or-with", "metropolis", "--or-per-sweep", "2"]], ids=["heatbath", "metropolis"])
def test_resume_extends_the_chain_exactly(tmp_path, extra):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate.main([*U1_OR, *extra, "--n-configs", "40", "--out", str(whole)]) == 0
    assert generate.main([*U1_OR, *extra, "--n-configs", "15", "--out", str(part)]) == 0
    assert generate.main(["--resume", "--out", str(part), "--n-configs", "40", "--quiet"]) == 0
    a, b = read_ensemble(part), read_ensemble(whole)
    np.testing.assert_array_equal(a.configs, b.configs)
    np.testing.assert_array_equal(a.diagnostics["accept"], b.diagnostics["accept"])
    assert a.attrs["sampler_settings"] == b.attrs["sampler_settings"]


def test_killed_run_resumes_to_the_same_chain(tmp_path):
    args = ["--theory", "u1", "--L", "8", "--beta", "3", "--algorithm", "overrelaxation", "--n-therm", "20",
            "--seed", "7", "--quiet", "--flush-seconds", "0.02", "--every", "4"]
    n = 1500
    reference = tmp_path / "reference.h5"
    assert cli.run_cli("generate", *args, "--n-configs", n, "--out", reference)[0] == 0
    killed = tmp_path / "killed.h5"
    stored = generate_then_kill([*args, "--n-configs", n], killed, min_stored=100)
    assert 0 < stored < n, "the run finished (or never flushed) before it could be killed"
    code, _, err = cli.run_cli("generate", "--resume", "--out", killed, "--n-configs", n, "--quiet")
    assert code == 0, err
    np.testing.assert_array_equal(read_ensemble(killed).configs, read_ensemble(reference).configs)
    with h5py.File(killed, "r") as f:
        assert f.attrs["status"] == "complete"


BAD = {
    "phi4": (["--theory", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--algorithm", "heatbath"], "not phi4"),
    "odd L": (["--theory", "u1", "--L", "5", "--beta", "1", "--algorithm", "overrelaxation"], "even"),
    "or flags with heatbath": (["--theory", "xy", "--L", "4", "--beta", "1", "--algorithm", "heatbath",
                                "--or-per-sweep", "2"], "--algorithm overrelaxation"),
    "negative K": (["--theory", "xy", "--L", "4", "--beta", "1", "--algorithm", "overrelaxation",
                    "--or-per-sweep", "-1"], "or-per-sweep"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, capsys):
    args, needle = BAD[case]
    out = tmp_path / "x.h5"
    assert generate.main([*args, "--n-configs", "5", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_phi4_is_refused_by_the_cli_process_with_one_line(tmp_path):
    code, _, stderr = cli.run_cli("generate", *BAD["phi4"][0], "--n-configs", "5", "--out", tmp_path / "x.h5")
    assert code == 2 and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "heatbath" in stderr and "phi4" in stderr


def test_resume_refuses_new_overrelaxation_settings(tmp_path, capsys):
    out = tmp_path / "x.h5"
    assert generate.main([*U1_OR, "--n-configs", "3", "--out", str(out)]) == 0
    before = out.read_bytes()
    assert generate.main(["--resume", "--out", str(out), "--n-configs", "6", "--or-per-sweep", "1", "--quiet"]) == 2
    assert "or-per-sweep" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_help_lists_the_algorithms_and_their_flags(capsys):
    with pytest.raises(SystemExit):
        generate.main(["--help"])
    text = capsys.readouterr().out
    for word in ("heatbath", "overrelaxation", "--or-per-sweep", "--or-with"):
        assert word in text
