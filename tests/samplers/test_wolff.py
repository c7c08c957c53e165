"""Wolff (XY) and Brower-Tamayo + Metropolis (phi^4) chains sample exp(-S): exact results, detailed
balance on a 2 x 2 lattice, agreement with HMC; and python -m generate --algorithm wolff.
Fixed seeds; errors from bins much longer than tau_int (or N_eff = N / (2 tau_int)); |z| < 4."""
import numpy as np
import pytest
from scipy import stats
from scipy.special import ive

import generate
from lattice import XY, Phi4
from observables.stats import binned_mean_error, gamma_method
from samplers import HMC, Wolff
from samplers.chain import ChainState, MemoryWriter, run_chain
from samplers.ensemble import read_ensemble
from tests import cli
from tests.exact import free_field_phi2, ring_link_cos

Z_MAX = 4.0
MIXES = {"pure-clusters": dict(clusters_per_sweep=1, metropolis_sweeps=0),
         "clusters+metropolis": dict(clusters_per_sweep=2, metropolis_sweeps=1)}


def sample(theory, sampler, n, every=1, n_therm=300, seed=1):
    writer = MemoryWriter()
    run_chain(theory, sampler, ChainState.start(theory, seed), n, every=every, n_therm=n_therm, writer=writer)
    return writer.arrays()


def z_score(a, b=None, exact=None):
    """(mean(a) - mean(b) or exact) / combined binned error."""
    ma, ea = binned_mean_error(a)
    if b is None:
        return (ma - exact) / ea
    mb, eb = binned_mean_error(b)
    return (ma - mb) / np.hypot(ea, eb)


@pytest.mark.parametrize("beta", [0.5, 1.2])
@pytest.mark.parametrize("mix", MIXES)
def test_xy_2x2_energy_matches_exact_ring(beta, mix):
    # 2 x 2 torus: S = -2 beta sum over the 4 links of a ring (tests/samplers/test_exact_results.py)
    _, actions, diag = sample(XY((2, 2), beta), Wolff(**MIXES[mix]), 6000, seed=4)
    assert abs(z_score(-actions / (beta * 8), exact=ring_link_cos(2 * beta, 4))) < Z_MAX
    assert 0 < diag["cluster_fraction"].min() and diag["cluster_fraction"].max() <= MIXES[mix]["clusters_per_sweep"]


def ring_link_angle_density(coupling: float, n_links: int, delta: np.ndarray) -> np.ndarray:
    """Unnormalized density of one link angle delta = theta_{i+1} - theta_i of a closed O(2) ring with
    weight exp(K sum cos): the other n - 1 link angles sum to -delta mod 2 pi, and their convolution has
    Fourier coefficients I_n(K)^(n-1): p(delta) ~ exp(K cos delta) sum_n I_n(K)^(n_links-1) cos(n delta)."""
    n = np.arange(-40, 41)
    series = (ive(n, coupling)[:, None] ** (n_links - 1) * np.cos(np.outer(n, delta))).sum(axis=0)
    return np.exp(coupling * (np.cos(delta) - 1)) * series


def _cdf(density: np.ndarray, grid: np.ndarray) -> np.ndarray:
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return cdf / cdf[-1]


def test_xy_2x2_link_angle_distribution_matches_exact_density_detailed_balance():
    beta = 1.2
    configs, _, _ = sample(XY((2, 2), beta), Wolff(metropolis_sweeps=0), 40000, every=3, seed=5)
    # |theta_(0,1) - theta_(0,0)| wrapped: sites (0,0), (0,1) are neighbours on the ring
    delta = np.abs((configs[:, 0, 1] - configs[:, 0, 0] + np.pi) % (2 * np.pi) - np.pi)
    grid = np.linspace(0.0, np.pi, 20001)
    n_eff = len(delta) / (2 * max(0.5, gamma_method(np.cos(delta)).tau_int))

    def scaled_ks(coupling):  # sqrt(N_eff) D: > 1.95 has p < 0.001 for N_eff independent draws
        cdf = _cdf(ring_link_angle_density(coupling, 4, grid), grid)
        return np.sqrt(n_eff) * stats.kstest(delta, lambda d: np.interp(d, grid, cdf)).statistic

    assert scaled_ks(2 * beta) < 1.95
    assert scaled_ks(2 * 0.9 * beta) > 1.95  # sensitive: the density at a 10 % lower beta is rejected


def test_xy_8x8_wolff_agrees_with_hmc():
    theory = XY((8, 8), 1.0)
    c_w, s_w, _ = sample(theory, Wolff(metropolis_sweeps=0), 6000, every=2, seed=6)
    c_h, s_h, _ = sample(theory, HMC(), 4000, seed=7)
    chi = lambda c: 64 * (np.cos(c).mean(axis=(1, 2)) ** 2 + np.sin(c).mean(axis=(1, 2)) ** 2)
    assert abs(z_score(s_w, s_h)) < Z_MAX
    assert abs(z_score(chi(c_w), chi(c_h))) < Z_MAX


def test_phi4_free_field_phi2_matches_lattice_propagator():
    theory = Phi4((8, 8), m2=0.5, g=0.0)  # g = 0: the embedded-Ising flip is still an exact move
    configs, _, _ = sample(theory, Wolff(), 4000, seed=8)
    A, B, _ = theory.coefficients
    assert abs(z_score((configs**2).mean(axis=(1, 2)), exact=free_field_phi2(theory.shape, A, B))) < Z_MAX


def test_phi4_broken_phase_agrees_with_hmc_and_tunnels_faster_than_metropolis():
    theory = Phi4((8, 8), m2=-4.0, g=8.0)
    c_w, _, diag = sample(theory, Wolff(), 8000, seed=9)
    c_h, _, _ = sample(theory, HMC(), 4000, seed=10)
    m_w, m_h = c_w.mean(axis=(1, 2)), c_h.mean(axis=(1, 2))
    assert abs(z_score(np.abs(m_w), np.abs(m_h))) < Z_MAX
    assert abs(z_score(64 * m_w**2, 64 * m_h**2)) < Z_MAX  # V <M^2>: sign-blind like <|M|>
    assert abs(z_score(m_w, exact=0.0)) < Z_MAX  # the clusters restore phi -> -phi
    assert gamma_method(m_w).tau_int < 4  # Metropolis alone: tau_int(M) ~ 12 sweeps here
    assert 0.05 < diag["cluster_fraction"].mean() < 1


# ------------------------------------------------------------------ python -m generate --algorithm wolff
PHI4 = ["--theory", "phi4", "--L", "4", "--m2", "-4", "--g", "8", "--algorithm", "wolff", "--clusters-per-sweep", "2",
        "--n-therm", "20", "--seed", "3", "--quiet"]


def test_generate_writes_cluster_fraction_and_resumes_bit_exactly(tmp_path):
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    assert generate.main([*PHI4, "--n-configs", "40", "--out", str(whole)]) == 0
    assert generate.main([*PHI4, "--n-configs", "15", "--out", str(part)]) == 0
    assert generate.main(["--resume", "--out", str(part), "--n-configs", "40", "--quiet"]) == 0
    a, b = read_ensemble(whole), read_ensemble(part)
    np.testing.assert_array_equal(a.configs, b.configs)
    np.testing.assert_array_equal(a.diagnostics["cluster_fraction"], b.diagnostics["cluster_fraction"])
    assert a.attrs["algorithm"] == "wolff" and a.attrs["sampler_settings"]["clusters_per_sweep"] == 2
    assert a.attrs["sampler_settings"]["delta"] != 0.5  # the Metropolis width was tuned, then frozen
    assert np.all((a.diagnostics["cluster_fraction"] > 0) & (a.diagnostics["cluster_fraction"] <= 2))


def test_generate_pure_clusters_on_xy_and_resume_keeps_the_mixing(tmp_path, capsys):
    out = tmp_path / "xy.h5"
    args = ["--theory", "xy", "--L", "5", "--beta", "1.1", "--algorithm", "wolff", "--metropolis-sweeps", "0",
            "--n-therm", "10", "--quiet", "--out", str(out)]
    assert generate.main([*args, "--n-configs", "10"]) == 0  # odd L: no checkerboard needed
    assert np.all(read_ensemble(out).diagnostics["accept"] == 1.0)
    assert generate.main(["--resume", "--out", str(out), "--n-configs", "20", "--clusters-per-sweep", "3",
                          "--quiet"]) == 2
    assert "drop --clusters-per-sweep" in capsys.readouterr().err


@pytest.mark.parametrize("args,needle", [
    (["--theory", "u1", "--L", "4", "--beta", "1"], "not u1"),
    (["--theory", "phi4", "--L", "4", "--m2", "1", "--g", "1", "--metropolis-sweeps", "0"], "Metropolis sweep"),
    (["--theory", "xy", "--L", "4", "--beta", "1", "--clusters-per-sweep", "0"], "clusters-per-sweep"),
])
def test_generate_refuses_what_wolff_cannot_sample_in_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "x.h5"
    assert generate.main([*args, "--algorithm", "wolff", "--n-configs", "5", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert not out.exists()


def test_generate_refuses_u1_from_the_command_line_with_exit_2():
    code, _, stderr = cli.run_cli("generate", "--theory", "u1", "--L", "4", "--beta", "1", "--algorithm", "wolff",
                                  "--n-configs", "5", "--out", "/nonexistent/never.h5")
    assert code == 2 and "Traceback" not in stderr and "not u1" in stderr.strip().splitlines()[-1]


def test_help_documents_the_wolff_flags():
    help_text = generate.build_parser().format_help()
    for flag in ("wolff", "--clusters-per-sweep", "--metropolis-sweeps", "cluster_fraction"):
        assert flag in help_text
