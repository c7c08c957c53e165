"""Several chains of one setup as replicas of one ensemble: the Gamma method with replicas (as
pyerrors), exact U(1) values from a set of chains, and a replica that disagrees."""
import shutil

import h5py
import numpy as np
import pyerrors as pe
import pytest

import generate
from lattice.exact import u1_plaquette_torus, u1_topological_susceptibility_torus
from observables.__main__ import main
from observables.analysis import analyze_replicas
from observables.derived import Derived
from observables.stats import gamma_method, gamma_method_derived


def ar1(rng, n, rho, mean=0.0):
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = rho * x[i - 1] + np.sqrt(1 - rho**2) * rng.normal()
    return x + mean


def test_primary_with_replicas_agrees_with_pyerrors():
    rng = np.random.default_rng(1)
    xs = [ar1(rng, 3000, 0.8, 0.1), ar1(rng, 2000, 0.8), ar1(rng, 2500, 0.8)]
    est = gamma_method(np.concatenate(xs), replicas=[len(x) for x in xs])
    obs = pe.Obs(xs, ["ens|r0", "ens|r1", "ens|r2"])
    obs.gamma_method(S=2.0)
    assert est.value == pytest.approx(obs.value, rel=1e-12)
    assert est.error == pytest.approx(obs.dvalue, rel=1e-9)
    assert est.window == obs.e_windowsize["ens"]


def test_derived_with_replicas_agrees_with_pyerrors():
    rng = np.random.default_rng(2)
    a = [ar1(rng, 2000, 0.6, 2.0), ar1(rng, 1500, 0.6, 2.0)]
    b = [ar1(rng, 2000, 0.6, 1.0) + 0.3 * a[0], ar1(rng, 1500, 0.6, 1.0) + 0.3 * a[1]]
    names = ["ens|r0", "ens|r1"]
    ratio = pe.Obs(a, names) / pe.Obs(b, names)
    ratio.gamma_method(S=2.0)
    est = gamma_method_derived(Derived("a/b", ("a", "b"), lambda x, y: x / y),
                               {"a": np.concatenate(a), "b": np.concatenate(b)}, replicas=[2000, 1500])
    assert est.value == pytest.approx(ratio.value, rel=1e-12)
    assert est.error == pytest.approx(ratio.dvalue, rel=1e-6)


def test_replica_lengths_must_add_up():
    with pytest.raises(ValueError, match="add up"):
        gamma_method(np.arange(10.0), replicas=[4, 5])


@pytest.fixture(scope="module")
def chain_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("set")
    files = []
    for k in range(3):
        out = d / f"u1.chain{k}.h5"
        assert generate.main(["--theory", "u1", "--L", "4", "--beta", "1.5", "--n-configs", "3000", "--n-therm", "100",
                              "--seed", str(10 + k), "--quiet", "--out", str(out)]) == 0
        files.append(str(out))
    return files


def test_a_chain_set_as_replicas_reproduces_the_exact_plaquette_and_chi_t(chain_set):
    a = analyze_replicas(chain_set)
    assert a.settings["n"] == 9000 and [r["n"] for r in a.settings["replicas"]] == [3000] * 3
    for name, exact in (("P", u1_plaquette_torus(1.5, 16)), ("chi_t", u1_topological_susceptibility_torus(1.5, 16))):
        est = a.estimates[name]
        assert abs(est.value - exact) / est.error < 4, name
    assert not any("disagrees" in f for fl in a.flags.values() for f in fl)


def test_a_replica_that_disagrees_is_flagged(chain_set, tmp_path, capsys):
    cold = shutil.copy(chain_set[2], tmp_path / "cold.h5")
    with h5py.File(cold, "r+") as f:
        f["configs"][...] = 0.0  # every plaquette 1: not a sample of beta = 1.5
    assert main(["measure", chain_set[0], chain_set[1], str(cold), "--select", "P"]) == 0
    out = capsys.readouterr().out
    assert "replica cold.h5 disagrees" in out and "not stored" in out


def test_replicas_of_different_theories_are_refused(chain_set, tmp_path, capsys):
    other = tmp_path / "other.h5"
    assert generate.main(["--theory", "u1", "--L", "4", "--beta", "2.5", "--n-configs", "50", "--quiet",
                          "--out", str(other)]) == 0
    assert main(["measure", chain_set[0], str(other)]) == 2
    assert "not a replica of" in capsys.readouterr().err


def test_the_sticky_chain_floor_pools_the_blocks_of_all_replicas():
    from observables.stats import blocking_error

    rng = np.random.default_rng(4)
    parts = [np.repeat(rng.standard_normal(60), 50) for _ in range(3)]  # stays of 50: sticky
    x = np.concatenate(parts)
    delta = np.concatenate([p - p.mean() for p in parts])
    block_error, n_blocks = blocking_error(delta, 100, replicas=[3000] * 3)
    assert n_blocks == 90
    floored = gamma_method(x, min_block=100, replicas=[3000] * 3)
    assert floored.error >= block_error and floored.n_blocks == 90
