"""python -m observables measure|compare: tables, stored results, verdicts, plots, bad input."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import generate
from observables.__main__ import main
from samplers.ensemble import open_ensemble

ROOT = Path(__file__).resolve().parents[2]


def make(path, *extra, theory=("--theory", "u1", "--L", "4", "--beta", "1.5"), n=400, seed=1):
    args = [*theory, "--n-configs", str(n), "--n-therm", "50", "--seed", str(seed), "--quiet", "--out", str(path), *extra]
    assert generate.main(args) == 0
    return path


@pytest.fixture(scope="module")
def u1_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("u1")
    return make(d / "hmc.h5"), make(d / "metro.h5", "--algorithm", "metropolis", seed=2)


def configs_digest(path):
    with h5py.File(path, "r") as f:
        return hashlib.sha256(f["configs"][...].tobytes()).hexdigest()


def test_measure_prints_one_line_per_observable_and_stores_results(u1_pair, capsys, tmp_path):
    path = Path(shutil.copy(u1_pair[0], tmp_path / "x.h5"))
    before = configs_digest(path)
    assert main(["measure", str(path)]) == 0
    out = capsys.readouterr().out
    for name in ("P ", "W(2,2)", "Q ", "chi_t"):
        assert any(line.startswith(name) and "±" in line for line in out.splitlines()), name
    doc = json.loads((tmp_path / "x.observables.json").read_text())
    rows = doc["results"]
    assert doc["settings"]["S"] == 2.0
    assert {r["name"] for r in rows} >= {"P", "W(1,1)", "Q", "Q^2"}
    assert configs_digest(path) == before


def test_measure_json_is_machine_readable(u1_pair, capsys):
    assert main(["measure", str(u1_pair[0]), "--json", "--no-store", "--select", "P"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["results"]
    assert row["name"] == "P" and row["error"] > 0 and row["tau_int"] >= 0.5 and row["n"] == 400


def test_compare_agreeing_ensembles(u1_pair, capsys):
    assert main(["compare", *map(str, u1_pair), "--select", "[PQ]*", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "agree" in out and "DIFFER" not in out


def test_compare_flags_a_wrong_ensemble_and_strict_fails(u1_pair, tmp_path, capsys):
    wrong = Path(shutil.copy(u1_pair[1], tmp_path / "wrong.h5"))
    with h5py.File(wrong, "r+") as f:  # a 'sampler' that ignores the action: uniform links
        f["configs"][...] = np.random.default_rng(0).uniform(-np.pi, np.pi, f["configs"].shape)
    assert main(["compare", str(u1_pair[0]), str(wrong), "--select", "P"]) == 0
    assert "DIFFER" in capsys.readouterr().out
    assert main(["compare", str(u1_pair[0]), str(wrong), "--select", "P", "--strict"]) == 1


def test_compare_refuses_different_theories(u1_pair, tmp_path, capsys):
    other = make(tmp_path / "b2.h5", theory=("--theory", "u1", "--L", "4", "--beta", "2.0"), n=20)
    assert main(["compare", str(u1_pair[0]), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "beta" in err[0]


def test_compare_writes_plots(u1_pair, tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["compare", *map(str, u1_pair), "--select", "[PQ]", "--plots", str(tmp_path / "plots")]) == 0
    for name in ("histories.png", "histogram.png", "autocorrelation.png", "charge_distribution.png"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_plots_without_matplotlib_say_how_to_get_it(u1_pair, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert main(["compare", *map(str, u1_pair), "--plots", str(tmp_path / "p")]) == 2
    assert "pip install" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_bad_file_is_a_one_line_error(tmp_path, capsys, content):
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    assert main(["measure", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_measure_reads_a_file_that_is_still_being_written(tmp_path):
    path = tmp_path / "running.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "generate", "--theory", "phi4", "--L", "8", "--kappa", "0.2",
                             "--lam", "0.1", "--algorithm", "metropolis", "--n-configs", "10000000", "--quiet",
                             "--flush-seconds", "0.05", "--out", str(path)], cwd=ROOT, env=env)
    try:
        deadline, stored = time.time() + 120, 0
        while time.time() < deadline and stored < 100:
            time.sleep(0.1)
            try:
                with open_ensemble(path) as f:
                    stored = int(f["state/counters"][0])
            except Exception:
                pass
        p = subprocess.run([sys.executable, "-m", "observables", "measure", str(path), "--json", "--select", "M"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["results"][0]["n"] >= 100
        assert proc.poll() is None  # the writer was not disturbed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize("args, needle", [
    (["--S", "nan"], "--S must be a finite number > 0"),
    (["--S", "-1"], "--S must be a finite number > 0"),
    (["--select", "zzz"], "matches no observable of u1"),
    (["--select", "["], "matches no observable of u1"),
])
def test_measure_bad_option_is_one_line_error(u1_pair, capsys, args, needle):
    assert main(["measure", str(u1_pair[0]), "--no-store", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_measure_names_the_file_and_configuration_holding_nan(u1_pair, tmp_path, capsys):
    path = Path(shutil.copy(u1_pair[0], tmp_path / "nan.h5"))
    with h5py.File(path, "r+") as f:
        f["configs"][7, 0, 1, 1] = np.nan
    assert main(["measure", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "configuration 7 holds NaN" in err
    assert not (tmp_path / "nan.observables.json").exists()


def test_nan_never_agrees_and_unreliable_is_no_agreement():
    from observables.analysis import verdict

    assert verdict([float("nan")], [[], []]) == "NaN"
    assert verdict([0.5], [[], ["unreliable (sticky: 12 blocks of 2 x the longest stay)"]]) == "unreliable"
    assert verdict([3.5], [[], ["unreliable (heavy tail of w: sticky chain)"]]) == "DIFFER"
    assert verdict([0.5], [["short"], []]) == "agree (short)"
    assert verdict([0.5], [[], []]) == "agree"


def test_compare_drops_rows_equal_by_symmetry_and_shows_tau_int(u1_pair, capsys):
    assert main(["compare", *map(str, u1_pair)]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "P" in rows and "W(1,2)" in rows and "W(1,1)" not in rows and "W(2,1)" not in rows


def test_compare_json_is_strict_json(u1_pair, capsys):
    assert main(["compare", *map(str, u1_pair), "--json"]) == 0

    def refuse(token):
        raise AssertionError(f"bare {token} in JSON")

    doc = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert "W(1,1)" not in doc["verdict"] and doc["verdict"]["P"] in ("agree", "agree (short)")


def test_measure_stores_the_connected_correlator_as_an_array(tmp_path):
    path = make(tmp_path / "phi4.h5", theory=("--theory", "phi4", "--L", "6", "--kappa", "0.2", "--lam", "0.02"),
                n=200)
    assert main(["measure", str(path)]) == 0
    g = json.loads((tmp_path / "phi4.observables.json").read_text())["arrays"]["G_c"]
    assert g["separation"][0] == [0, 0] and [1, 0] in g["separation"]
    assert len(g["value"]) == len(g["error"]) == len(g["separation"]) and all(e > 0 for e in g["error"])


def test_measure_notes_a_chain_whose_magnetization_never_changes_sign(tmp_path, capsys):
    path = make(tmp_path / "broken.h5", "--init", "cold",
                theory=("--theory", "phi4", "--L", "6", "--kappa", "0.5", "--lam", "0.05"), n=100)
    assert main(["measure", str(path), "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "note: M never changes sign" in out and "pole mass:" in out
