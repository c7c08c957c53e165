"""Winding HMC (samplers/winding.py): HMC + winding moves reproduces the exact 2D U(1) torus results where
HMC alone is frozen (beta = 6), an asymmetric proposal is caught, chain sets are bit for bit the per-chain
updates, and ``python -m generate --algorithm hmc --winding-every N`` refuses bad flags in one line and
resumes a killed run to the same chain. Errors: Gamma method (autocorrelation included), |z| < 4."""
import h5py
import numpy as np
import pytest

import generate
from lattice import U1, XY
from observables.stats import gamma_method
from observables.u1 import charge_distribution, topological_charge, wilson_loops
from samplers import SAMPLERS, HMC
from samplers.chain import update_chains
from samplers.ensemble import read_ensemble
from samplers.winding import WindingHMC
from tests.cli import generate_then_kill
from tests.exact import (u1_charge_distribution, u1_plaquette_torus, u1_topological_susceptibility_torus,
                         u1_wilson_loop_torus)
from tests.samplers.test_exact_results import Z_MAX, sample

L = 8
V = L * L


def z_score(series, exact):
    est = gamma_method(np.asarray(series, dtype=np.float64))
    return (est.value - exact) / est.error, est


def charges(configs):
    return topological_charge(configs).astype(np.float64)


class AlwaysInstanton(WindingHMC):
    """The bug to catch: the move always adds an instanton (s = +1), never the reverse anti-instanton."""

    def draw(self, bits, shape):
        x0, x1, _ = super().draw(bits, shape)
        return x0, x1, 1.0


# --------------------------------------------------------------------------- exact results
@pytest.mark.parametrize("beta,size", [(1.0, None), (3.0, None), (3.0, 6), (6.0, None)],
                         ids=["b1", "b3", "b3-Lw6", "b6"])
def test_plaquette_and_charge_susceptibility_match_the_character_expansion(beta, size):
    theory = U1((L, L), beta)
    sampler = WindingHMC(HMC(), winding_every=1, winding_size=size)
    configs, actions, diag = sample(theory, sampler, 12000, n_therm=200, seed=2)
    z_p, _ = z_score(1.0 - actions / (beta * V), u1_plaquette_torus(beta, V))
    z_q2, _ = z_score(charges(configs) ** 2, V * u1_topological_susceptibility_torus(beta, V))
    assert abs(z_p) < Z_MAX and abs(z_q2) < Z_MAX, (z_p, z_q2)
    assert diag["winding_accept"].sum() > 200  # the moves do happen


@pytest.mark.parametrize("beta,size", [(6.0, 16), (10.0, 16)], ids=["b6", "b10"])
def test_wilson_loops_and_charge_on_16x16_match_the_character_expansion(beta, size):
    # the larger lattice and coupling; whole-lattice windings (acceptance ~0.6 at beta = 6)
    theory, volume = U1((size, size), beta), size * size
    configs, _, diag = sample(theory, WindingHMC(HMC(), winding_every=1), 3000, n_therm=200, seed=5)
    loops = wilson_loops(configs, 2, 2)
    for (r, t) in [(1, 1), (1, 2), (2, 2)]:
        z, _ = z_score(loops[:, r - 1, t - 1], u1_wilson_loop_torus(beta, volume, r * t))
        assert abs(z) < Z_MAX, ((r, t), z)
    z_q2, _ = z_score(charges(configs) ** 2, volume * u1_topological_susceptibility_torus(beta, volume))
    assert abs(z_q2) < Z_MAX, z_q2
    assert diag["winding_accept"].sum() > 300


def test_charge_distribution_at_beta_6_matches_the_exact_one():
    # HMC alone has tau_int(Q) ~ 1300 trajectories here: 12000 trajectories would not sample P(Q)
    theory = U1((L, L), 6.0)
    configs, _, _ = sample(theory, WindingHMC(HMC(), winding_every=1), 12000, n_therm=200, seed=3)
    dist = charge_distribution(charges(configs).astype(np.int64), q_max=2)
    exact = u1_charge_distribution(6.0, V)[12 - 2:12 + 3]
    z = (dist.p - exact) / dist.error
    assert np.all(np.abs(z) < Z_MAX), z
    assert dist.tau_int.max() < 10  # in updates of one trajectory + one move


def test_an_asymmetric_proposal_is_caught_by_the_mean_charge():
    theory = U1((L, L), 6.0)
    configs, _, _ = sample(theory, AlwaysInstanton(HMC(), winding_every=1), 12000, n_therm=200, seed=3)
    z, _ = z_score(charges(configs), 0.0)
    assert z > Z_MAX  # a symmetric proposal gives <Q> = 0 (the test above, same seed)


def test_charge_decorrelates_much_faster_than_with_hmc_alone():
    theory = U1((L, L), 6.0)
    configs, _, _ = sample(theory, WindingHMC(HMC(), winding_every=4), 3000, n_therm=200, seed=4)
    est = gamma_method(charges(configs))
    assert est.tau_int * 4 < 50  # trajectories; HMC alone: ~1300 (benchmarks/RESULTS.md)


# --------------------------------------------------------------------------- chain sets, settings
def hot_set(theory, k, seed=0):
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(np.stack([theory.random_config(rng) for _ in range(k)]))


def test_chain_set_update_is_bitwise_the_per_chain_updates():
    theory = U1((L, L), 6.0)
    make = lambda: [WindingHMC(HMC(step_size=0.2 + 0.01 * k), 3, size) for k, size in enumerate([None, 4, 6])]
    qs = hot_set(theory, 3)
    loop_qs, loop = qs.copy(), make()
    rngs = [np.random.default_rng(10 + k) for k in range(3)]
    loop_rngs = [np.random.default_rng(10 + k) for k in range(3)]
    batched = make()
    for _ in range(20):
        infos = update_chains(theory, batched, qs, rngs)
        loop_infos = [s.update(theory, q, r) for s, q, r in zip(loop, loop_qs, loop_rngs)]
        assert infos == loop_infos
    np.testing.assert_array_equal(qs, loop_qs)
    assert [r.random() for r in rngs] == [r.random() for r in loop_rngs]  # the same draws were taken
    assert [s.report() for s in batched] == [s.report() for s in loop]


def test_settings_round_trip_through_the_file_attributes():
    sampler = WindingHMC(HMC(step_size=0.15, n_steps=5), winding_every=3, winding_size=6)
    again = SAMPLERS[sampler.name].from_settings(sampler.settings())
    assert again.settings() == sampler.settings()
    assert (again.winding_every, again.winding_size, again.hmc.n_steps) == (3, 6, 5)


@pytest.mark.parametrize("theory,sampler", [
    (XY((8, 8), 1.0), WindingHMC()),
    (U1((8, 8), 1.0), WindingHMC(winding_every=0)),
    (U1((8, 8), 1.0), WindingHMC(winding_size=9)),
    (U1((8, 8), 1.0), WindingHMC(winding_size=1)),
], ids=["xy", "every 0", "size 9", "size 1"])
def test_check_refuses_what_cannot_run_in_one_line(theory, sampler):
    with pytest.raises(ValueError) as e:
        sampler.check(theory)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- the CLI
U1_ARGS = ["--theory", "u1", "--L", "8", "--beta", "6", "--algorithm", "hmc", "--n-therm", "50", "--quiet"]


def test_generate_records_the_winding_sampler_and_its_diagnostics(tmp_path):
    out = tmp_path / "w.h5"
    assert generate.main([*U1_ARGS, "--winding-every", "2", "--winding-size", "6", "--n-configs", "200",
                          "--out", str(out)]) == 0
    e = read_ensemble(out)
    assert e.attrs["algorithm"] == "winding-hmc"
    s = e.attrs["sampler_settings"]
    assert (s["winding_every"], s["winding_size"], s["integrator"]) == (2, 6, "leapfrog")
    assert set(np.unique(e.diagnostics["winding_accept"])) <= {0.0, 1.0}
    assert np.isfinite(e.diagnostics["winding_dS"]).all()
    out0 = tmp_path / "plain.h5"
    assert generate.main([*U1_ARGS, "--winding-every", "0", "--n-configs", "10", "--out", str(out0)]) == 0
    assert read_ensemble(out0).attrs["algorithm"] == "hmc"


BAD = {
    "metropolis": (["--theory", "u1", "--algorithm", "metropolis", "--winding-every", "2"], "--algorithm hmc"),
    "xy": (["--theory", "xy", "--algorithm", "hmc", "--winding-every", "2"], "--theory u1"),
    "size without every": (["--theory", "u1", "--algorithm", "hmc", "--winding-size", "4"], "--winding-every"),
    "size 9": (["--theory", "u1", "--algorithm", "hmc", "--winding-every", "1", "--winding-size", "9"], "[2, 8]"),
    "negative": (["--theory", "u1", "--algorithm", "hmc", "--winding-every", "-1"], ">= 0"),
}


@pytest.mark.parametrize("case", BAD)
def test_winding_flags_are_refused_in_one_line_where_they_do_not_apply(tmp_path, case, capsys):
    args, needle = BAD[case]
    assert generate.main([*args, "--L", "8", "--beta", "1", "--n-configs", "5", "--quiet",
                          "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_resume_refuses_to_change_the_winding_flags(tmp_path, capsys):
    out = tmp_path / "w.h5"
    assert generate.main([*U1_ARGS, "--winding-every", "2", "--n-configs", "20", "--out", str(out)]) == 0
    assert generate.main(["--resume", "--out", str(out), "--n-configs", "30", "--winding-every", "3"]) == 2
    assert "drop --winding-every" in capsys.readouterr().err
    # the original command line (--algorithm hmc) continues it
    assert generate.main(["--resume", "--out", str(out), "--n-configs", "30", "--algorithm", "hmc", "--quiet"]) == 0
    assert read_ensemble(out).configs.shape[0] == 30


def test_killed_chain_set_resumes_bitwise_to_the_uninterrupted_run(tmp_path):
    args = [*U1_ARGS, "--winding-every", "2", "--seed", "7", "--chains", "2", "--n-configs", "1500"]
    reference = tmp_path / "ref.h5"
    assert generate.main([*args, "--out", str(reference)]) == 0  # how often a run flushes does not change it
    killed = tmp_path / "k.h5"
    stored = generate_then_kill([*args, "--flush-seconds", "0.05"], killed, min_stored=100,
                                watch=tmp_path / "k.chain0.h5")
    assert 0 < stored < 1500, "the run finished (or never flushed) before it could be killed"
    assert generate.main(["--resume", "--out", str(killed), "--chains", "2", "--n-configs", "1500", "--quiet"]) == 0
    for k in range(2):
        a, b = read_ensemble(tmp_path / f"k.chain{k}.h5"), read_ensemble(tmp_path / f"ref.chain{k}.h5")
        np.testing.assert_array_equal(a.configs, b.configs)
        for name in ("accept", "dH", "winding_accept", "winding_dS"):
            np.testing.assert_array_equal(a.diagnostics[name], b.diagnostics[name])
        assert a.attrs["sampler_settings"] == b.attrs["sampler_settings"]
        with h5py.File(tmp_path / f"k.chain{k}.h5", "r") as f:
            assert f.attrs["status"] == "complete"
