"""Transfer across couplings: a diffusion model trained at one coupling proposes at another; the
rescaled score is exact at t -> 0 for a Gaussian theory, and learned-mh makes the chain exact."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lattice import U1, Phi4
from observables.stats import gamma_method
from observables.u1 import average_plaquette, topological_charge
from samplers import Hybrid, LearnedMH, Metropolis
from samplers.chain import ChainState, MemoryWriter, run_chain
from samplers.flows import build_model
from tests.cli import run_cli
from tests.exact import u1_plaquette_torus, u1_topological_susceptibility_torus

Z_MAX = 4.0


class GaussianScore(nn.Module):
    """The exact noised score -(M^-1 + std^2)^-1 x of N(0, M^-1), in place of a score network."""

    def __init__(self, M: torch.Tensor):
        super().__init__()
        self.M = M

    def forward(self, x, std):
        eye = torch.eye(self.M.shape[0], dtype=x.dtype)
        out = [-torch.linalg.solve(torch.linalg.inv(self.M) + s ** 2 * eye, xi.flatten()) for xi, s in zip(x, std)]
        return torch.stack(out).view(x.shape)


def precision(theory) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda v: theory.torch_action(v.view(1, *theory.config_shape))[0],
                                             torch.zeros(theory.n_dof, dtype=torch.float64))


def relative_error(a, b):
    return float((a - b).norm() / b.norm())


def small_noise_scores(model, target_M, n=64):
    """The model's score and the exact score of N(0, target_M^-1), both at the smallest noise level."""
    x = torch.randn(n, *model.config_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((n,), model.t_min, dtype=torch.float64)
    return model.score(x, t), GaussianScore(target_M)(x, model.schedule.std(t))


def test_beta_rescaling_gives_the_target_score_at_small_noise():
    """S = beta x^T A x / 2 (linear in beta): the score at beta_0 times beta / beta_0 is the score at
    beta as t -> 0 (exact up to O(std(t_min)^2)); without the rescaling it is off by 1 - beta_0 / beta."""
    base = U1((2, 2), 1.0)  # carries beta; the Gaussian below stands in for its action
    A = torch.eye(8, dtype=torch.float64) * 2 + 0.5 * torch.ones(8, 8, dtype=torch.float64)
    model = build_model("diffusion", base, hidden=[4], dtype="float64")
    model.net = GaussianScore(base.beta * A)
    unscaled, target = small_noise_scores(model, 3.0 * A)
    assert relative_error(unscaled, target) > 0.6
    model.retarget(beta=3.0)
    scaled, target = small_noise_scores(model, 3.0 * A)
    assert relative_error(scaled, target) < 1e-2 and model.theory == U1((2, 2), 3.0)


def test_kappa_shift_gives_the_target_score_at_small_noise():
    """Free phi4 in hopping parameters (lam = 0): the score at kappa_0 plus the exact hopping-term
    difference is the score at kappa as t -> 0."""
    base, target_theory = Phi4((4, 4), kappa=0.15, lam=0.0), Phi4((4, 4), kappa=0.22, lam=0.0)
    model = build_model("diffusion", base, hidden=[4], dtype="float64")
    model.net = GaussianScore(precision(base))
    unscaled, target = small_noise_scores(model, precision(target_theory))
    assert relative_error(unscaled, target) > 0.08
    model.retarget(kappa=0.22)
    shifted, target = small_noise_scores(model, precision(target_theory))
    assert relative_error(shifted, target) < 1e-2 and model.theory == target_theory


def test_retarget_refuses_the_wrong_coupling():
    model = build_model("diffusion", U1((2, 2), 1.0), hidden=[4])
    with pytest.raises(ValueError, match="retargeted by beta only"):
        model.retarget(kappa=0.2)
    with pytest.raises(ValueError, match="hopping parameterization"):
        build_model("diffusion", Phi4((2, 2), m2=1.0, g=0.0), hidden=[4]).retarget(kappa=0.2)


@pytest.mark.parametrize("beta", [2.0, 3.0])
def test_learned_mh_at_a_new_beta_reproduces_the_exact_plaquette_and_chi_t(dm_trained, beta):
    """A model trained at beta = 1 (DSM on HMC configurations) proposes at beta = 2 and 3: the learned-mh
    chain reproduces the exact plaquette and chi_t of the torus (|z| < 4, Gamma errors). On 2 x 2, where
    exact densities are cheap; the 8 x 8 transfer is measured in benchmarks/bench_diffusion.py."""
    theory = U1((2, 2), beta)
    writer = MemoryWriter()
    proposal = {"path": str(dm_trained("u1_L2_b1")), "batch_size": 128, "target": {"beta": beta},
                "sampling": {"n_steps": 12, "integrator": "euler"}}
    summary = run_chain(theory, LearnedMH(proposal), ChainState.start(theory, 3), 3000, n_therm=100, writer=writer)
    assert summary.acceptance > 0.1
    configs = np.array(writer.configs)
    V = math.prod(theory.shape)
    for name, series, exact in [
        ("P", average_plaquette(configs), u1_plaquette_torus(beta, V)),
        ("chi_t", topological_charge(configs).astype(float) ** 2 / V, u1_topological_susceptibility_torus(beta, V)),
    ]:
        est = gamma_method(series)
        z = (est.value - exact) / est.error
        assert abs(z) < Z_MAX, f"beta {beta} {name} = {est} vs exact {exact:.5f}: z = {z:.2f}"


def test_hybrid_with_a_diffusion_proposal_reproduces_the_exact_plaquette(dm_trained):
    """Hybrid chains need log q of configurations the model did not propose (after each local update):
    the inverted PF-ODE map gives it (Newton steps with exact Jacobians: ~0.1 s per update even on
    2 x 2, hence a short chain); it reproduces the exact plaquette at beta = 2."""
    theory = U1((2, 2), 2.0)
    proposal = {"path": str(dm_trained("u1_L2_b1")), "batch_size": 64, "target": {"beta": 2.0},
                "sampling": {"n_steps": 12, "integrator": "euler"}}
    local = {"algorithm": "metropolis", "settings": Metropolis(delta=1.0).settings()}
    writer = MemoryWriter()
    summary = run_chain(theory, Hybrid(local, proposal), ChainState.start(theory, 5), 200, n_therm=20,
                        writer=writer, tune=False)
    assert summary.acceptance > 0.1
    est = gamma_method(average_plaquette(np.array(writer.configs)))
    z = (est.value - u1_plaquette_torus(2.0, 4)) / est.error
    assert abs(z) < Z_MAX, f"P = {est}: z = {z:.2f}"


def test_generate_cli_transfers_and_records_the_target(dm_trained, tmp_path):
    out = tmp_path / "mh.h5"
    rc, stdout, err = run_cli("generate", "--algorithm", "learned-mh", "--proposal", dm_trained("u1_L2_b1"),
                              "--target-beta", 2, "--diffusion-steps", 16, "--n-configs", 20, "--n-therm", 0, "--proposal-batch", 16,
                              "--out", out)
    assert rc == 0, err
    assert "u1 (beta=2.0)" in stdout and "target=(beta=2" in stdout


@pytest.mark.parametrize("args, message", [
    (["--algorithm", "learned-mh", "--model-sampler", "sde"], "needs the model's exact log q"),
    (["--algorithm", "learned-mh", "--beta", "2"], "--target-beta"),
    (["--algorithm", "learned-mh", "--target-kappa", "0.2"], "retargeted by beta only"),
])
def test_generate_refuses_bad_diffusion_input_in_one_line(dm_trained, tmp_path, args, message):
    rc, _, err = run_cli("generate", "--proposal", dm_trained("u1_L2_b1"), *args, "--n-configs", 5,
                         "--out", tmp_path / "x.h5")
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.h5").exists()


def test_target_options_are_refused_for_a_flow(trained, tmp_path):
    rc, _, err = run_cli("generate", "--algorithm", "learned-mh", "--proposal", trained("u1_L4_trained"),
                         "--target-beta", 3, "--n-configs", 5, "--out", tmp_path / "x.h5")
    assert rc == 2 and "no target options" in err
