"""python -m observables compare with replicas: files of one setup (a chain set, or runs with other
seeds) are one ensemble, combined with the Gamma method with replicas (as measure does), and the
verdicts are between ensembles. The replica Gamma method itself is checked against pyerrors in
test_replicas.py; here the files' combined error is checked against measure's (and pyerrors')."""
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import generate
from lattice.exact import u1_plaquette_torus
from observables.__main__ import files_label, main
from observables.analysis import analyze, file_attrs, replica_groups, setup_key

BETA, L = 2.0, 4
SEEDS = (1, 2, 3)


def make(path, *extra, beta=BETA, n=1500, seed=1):
    assert generate.main(["--theory", "u1", "--L", str(L), "--beta", str(beta), "--n-configs", str(n),
                          "--n-therm", "100", "--seed", str(seed), "--quiet", "--out", str(path), *extra]) == 0
    return str(path)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Three HMC runs and three heat-bath runs of U(1) L = 4, beta = 2 (seeds 1, 2, 3): two setups."""
    d = tmp_path_factory.mktemp("sets")
    return {"hmc": [make(d / f"hmc_s{s}.h5", seed=s) for s in SEEDS],
            "hb": [make(d / f"hb_s{s}.h5", "--algorithm", "heatbath", seed=s) for s in SEEDS]}


def compare_json(capsys, *args):
    code = main(["compare", *map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_two_chain_sets_are_two_ensembles_that_agree_on_the_exact_plaquette(sets, capsys):
    code, doc = compare_json(capsys, *sets["hmc"], *sets["hb"], "--strict")
    assert code == 0
    assert [e["files"] for e in doc["files"]] == [sets["hmc"], sets["hb"]]
    assert all(v in ("agree", "agree (short)") for v in doc["verdict"].values()), doc["verdict"]
    assert len(doc["z"]["P"]) == 1  # one z: the heat-bath set against the HMC set
    exact = u1_plaquette_torus(BETA, L * L)
    for e in doc["files"]:
        p = next(r for r in e["results"] if r["name"] == "P")
        assert p["n"] == 3 * 1500 and abs(p["value"] - exact) / p["error"] < 4, e["files"]
        assert [r["n"] for r in e["settings"]["replicas"]] == [1500] * 3


def test_the_table_names_each_set_and_shows_the_tau_int_of_its_replicas(sets, capsys):
    assert main(["compare", *sets["hmc"], *sets["hb"], "--select", "P"]) == 0
    out = capsys.readouterr().out
    assert "baseline: hmc_s{1..3}.h5" in out and "hb_s{1..3}.h5" in out.splitlines()[1]
    line = next(x for x in out.splitlines() if x.startswith("hb_s{1..3}.h5: replicas (3;"))
    assert all(f"hb_s{s}.h5 N = 1500, tau_int P " in line for s in SEEDS)


def test_the_combined_error_is_that_of_measure_and_of_pyerrors(sets, capsys):
    _, doc = compare_json(capsys, *sets["hmc"], *sets["hb"], "--select", "P")
    assert main(["measure", *sets["hb"], "--json", "--select", "P"]) == 0
    (measured,) = json.loads(capsys.readouterr().out)["results"]
    (compared,) = doc["files"][1]["results"]
    for key in ("value", "error", "tau_int", "n"):
        assert compared[key] == measured[key], key
    pe = pytest.importorskip("pyerrors")
    obs = pe.Obs([analyze(f, select="P").series["P"] for f in sets["hb"]], [f"hb|r{s}" for s in SEEDS])
    obs.gamma_method(S=2.0)
    assert compared["value"] == pytest.approx(obs.value, rel=1e-12)
    assert compared["error"] == pytest.approx(obs.dvalue, rel=1e-9)


def test_a_file_of_another_setup_is_an_ensemble_of_its_own(sets, capsys):
    hmc, hb = sets["hmc"], sets["hb"]
    for files in ([hmc[0], hmc[1], hb[0]], [hmc[0], hb[0], hmc[1]]):  # a group needs not be contiguous
        code, doc = compare_json(capsys, *files, "--select", "P")
        assert code == 0 and [e["files"] for e in doc["files"]] == [[hmc[0], hmc[1]], [hb[0]]]
        assert "replicas" in doc["files"][0]["settings"] and "replicas" not in doc["files"][1]["settings"]
    assert replica_groups([hb[2], *hmc, hb[0]]) == [[hb[2], hb[0]], hmc]


def test_measure_of_files_of_two_setups_says_compare_would_split_them(sets, capsys):
    assert main(["measure", sets["hmc"][0], sets["hb"][0], "--select", "P"]) == 0
    assert "note: these files are 2 setups" in capsys.readouterr().out


def test_the_setup_ignores_seed_chain_and_tuned_step_size_but_not_the_sampler():
    hmc = {"theory": "u1", "parameterization": "wilson", "params": {"beta": 2.0}, "shape": [4, 4], "every": 1,
           "algorithm": "hmc", "tuned": 1, "seed": 1,
           "sampler_settings": {"step_size": 0.17, "traj_length": 1.0, "integrator": "leapfrog",
                                "target_accept": 0.8, "n_steps": 6, "jitter": 0.2}}
    tuned = {**hmc, "seed": 7, "chain": 3, "sampler_settings": {**hmc["sampler_settings"], "step_size": 0.2,
                                                                  "n_steps": 5}}
    assert setup_key(tuned) == setup_key(hmc)
    fixed = {**hmc, "tuned": 0}
    assert setup_key({**fixed, "sampler_settings": {**hmc["sampler_settings"], "step_size": 0.2}}) != setup_key(fixed)
    for other in ({"algorithm": "metropolis"}, {"every": 2}, {"params": {"beta": 2.5}}, {"shape": [8, 8]},
                  {"sampler_settings": {**hmc["sampler_settings"], "traj_length": 2.0}}):
        assert setup_key({**hmc, **other}) != setup_key(hmc), other
    mh = {**hmc, "algorithm": "learned-mh", "proposal_sha256": "ab",
          "sampler_settings": {"proposal": {"path": "run", "seed": 1, "chain": 0, "dtype": "float64"}}}
    assert setup_key({**mh, "sampler_settings": {"proposal": {"path": "run", "seed": 2, "chain": 5,
                                                              "dtype": "float64"}}}) == setup_key(mh)
    assert setup_key({**mh, "proposal_sha256": "cd"}) != setup_key(mh)


def test_a_chain_set_of_generate_chains_is_one_ensemble(sets, tmp_path, capsys):
    try:
        code = generate.main(["--theory", "u1", "--L", str(L), "--beta", str(BETA), "--chains", "3", "--n-configs",
                              "300", "--n-therm", "100", "--seed", "9", "--quiet", "--out", str(tmp_path / "set.h5")])
    except SystemExit:  # no --chains yet
        code = 2
    files = [str(tmp_path / f"set.chain{k}.h5") for k in range(3)]
    if code != 0 or not all(Path(f).exists() for f in files):
        pytest.skip("python -m generate --chains writes no chain set here")
    assert [file_attrs(f).get("chain", 0) for f in files] == [0, 1, 2]
    code, doc = compare_json(capsys, *files, *sets["hb"], "--select", "P")
    assert code == 0 and [e["files"] for e in doc["files"]] == [files, sets["hb"]]


def test_files_label():
    assert files_label([f"d/u1.chain{k}.h5" for k in (0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9)]) == "u1.chain{0..11}.h5"
    assert files_label(["a/run_s1.h5", "a/run_s3.h5"]) == "run_s{1,3}.h5"
    assert files_label(["x.h5"]) == "x.h5"


@pytest.fixture(scope="module")
def relabelled(sets, tmp_path_factory):
    """Heat-bath runs at beta = 3 whose files say beta = 2: a wrong ensemble of the heat-bath setup."""
    d = tmp_path_factory.mktemp("wrong")
    files = [make(d / f"hb_b3_s{s}.h5", "--algorithm", "heatbath", beta=3.0, n=500, seed=s) for s in SEEDS]
    for f in files:
        with h5py.File(f, "r+") as h:
            h.attrs["params"] = json.dumps({"beta": BETA})
    return files


def test_a_set_at_another_beta_differs_and_strict_fails(sets, relabelled, capsys):
    code, doc = compare_json(capsys, *sets["hmc"], *relabelled, "--select", "P")
    assert code == 0 and len(doc["files"]) == 2 and doc["verdict"]["P"] == "DIFFER"
    assert main(["compare", *sets["hmc"], *relabelled, "--select", "P", "--strict"]) == 1
    capsys.readouterr()


def test_sets_of_different_couplings_are_refused_in_one_line(sets, tmp_path, capsys):
    other = [make(tmp_path / f"b3_s{s}.h5", beta=3.0, n=50, seed=s) for s in (1, 2)]
    assert main(["compare", *sets["hmc"], *other]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "beta" in err[0]


# ---------------------------------------------------------------- all files of one setup
def test_replicas_of_one_setup_are_each_compared_with_the_others(sets, capsys):
    assert main(["compare", *sets["hmc"], "--strict"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 files are replicas of one setup (u1 {'beta': 2.0} on 4x4, hmc): each against the "
                          "other 2 combined")
    assert "DIFFER" not in out and "hmc_s{1..3}.h5: replicas (3;" in out
    code, doc = compare_json(capsys, *sets["hmc"], "--select", "P")
    assert code == 0 and doc["replicas_of_one_setup"] and len(doc["z"]["P"]) == 3
    assert main(["measure", *sets["hmc"], "--json", "--select", "P"]) == 0
    assert doc["combined"]["results"] == json.loads(capsys.readouterr().out)["results"]


def test_a_replica_that_is_off_differs_from_the_others(sets, tmp_path, capsys):
    cold = shutil.copy(sets["hmc"][2], tmp_path / "cold.h5")
    with h5py.File(cold, "r+") as f:
        f["configs"][...] = 0.0  # every plaquette 1: not a sample of beta = 2
    code, doc = compare_json(capsys, sets["hmc"][0], sets["hmc"][1], cold, "--select", "P")
    assert code == 0 and doc["verdict"]["P"] == "DIFFER"
    assert abs(doc["z"]["P"][2]) > 3
    assert main(["compare", sets["hmc"][0], sets["hmc"][1], str(cold), "--select", "P", "--strict"]) == 1
    out = capsys.readouterr().out
    (row,) = [line.split() for line in out.splitlines() if line.startswith("P ")]
    assert row[6:8] == ["cold.h5", "DIFFER"] and "replica cold.h5 disagrees" in out


def test_two_files_of_one_setup_are_compared_file_against_file_as_before(sets, capsys):
    code, doc = compare_json(capsys, *sets["hmc"][:2], "--select", "P")
    assert code == 0 and doc["baseline"] == sets["hmc"][0] and [e["file"] for e in doc["files"]] == sets["hmc"][:2]
    a, b = (analyze(f, select="P").estimates["P"] for f in sets["hmc"][:2])
    assert doc["z"]["P"] == [pytest.approx((b.value - a.value) / np.hypot(a.error, b.error))]


def test_one_chain_given_twice_is_not_two_replicas(sets, capsys):
    assert main(["compare", sets["hmc"][0], sets["hmc"][0], *sets["hb"]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not independent replicas" in err[0]


# ---------------------------------------------------------------- learned chains
def test_a_sticky_replica_makes_its_set_unreliable(sets, trained, tmp_path, capsys):
    run = trained("u1_L4_undertrained")
    flow = [make(tmp_path / f"flow_s{s}.h5", "--algorithm", "learned-mh", "--proposal", str(run), "--threads", "1",
                 n=300, seed=s) for s in (1, 2)]
    alone = [analyze(f, select="P") for f in flow]
    assert any(f.startswith("unreliable") for a in alone for f in a.flags.get("P", []))  # the premise
    code, doc = compare_json(capsys, *sets["hmc"], *flow, "--select", "P")
    assert code == 0 and [e["files"] for e in doc["files"]] == [sets["hmc"], flow]
    assert doc["verdict"]["P"] in ("unreliable", "DIFFER")
    assert all("proposals" in r for r in doc["files"][1]["settings"]["replicas"])
    flags = next(r for r in doc["files"][1]["results"] if r["name"] == "P")["flags"]
    assert any(f.startswith("unreliable in flow_s") for f in flags), flags
