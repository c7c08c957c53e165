"""Helpers and session-trained diffusion models for tests/diffusion (fixed seeds)."""
from pathlib import Path

from lattice import theory_from_attrs  # first: sets OMP_WAIT_POLICY before torch starts its OpenMP runtime

import pytest  # noqa: E402
import torch  # noqa: E402

import generate  # noqa: E402
from samplers.ensemble import read_ensemble  # noqa: E402
from samplers.flows import build_model  # noqa: E402
from samplers.training import TrainConfig, train  # noqa: E402


def perturbed(theory, seed=0, noise=0.05, **hyper):
    """A float64 diffusion model with random (non-trivial) parameters: the score depends on x and t."""
    torch.manual_seed(seed)
    model = build_model("diffusion", theory, dtype="float64", **hyper)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def hmc_ensemble(path: Path, theory_flags: list[str], n: int, every: int = 2) -> Path:
    assert generate.main([*theory_flags, "--algorithm", "hmc", "--n-configs", str(n), "--every", str(every),
                          "--n-therm", "300", "--seed", "7", "--out", str(path), "--quiet"]) == 0
    return path


# name -> (theory flags of the HMC training ensemble, configurations, hyperparameters, steps, learning rate);
# measured learned-mh acceptance with 12 Euler steps, moved to beta = 2 and 3: u1 L2 0.50, 0.29
# (on 4 x 4: 0.08-0.15 and 0.02-0.07, too sticky and slow for a suite test; see benchmarks/RESULTS.md)
TRAINED = {
    "u1_L2_b1": (["--theory", "u1", "--L", "2", "--beta", "1"], 2000,
                 {"hidden": [16, 16], "n_steps": 16}, 400, 3e-3),
}


@pytest.fixture(scope="session")
def dm_trained(tmp_path_factory):
    """dm_trained(name) -> run folder of TRAINED[name] (DSM on an HMC ensemble), trained on first use."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            flags, n, hyper, steps, lr = TRAINED[name]
            folder = tmp_path_factory.mktemp(name)
            ens = hmc_ensemble(folder / "train.h5", flags, n)
            theory = theory_from_attrs(read_ensemble(ens, stop=0).attrs)
            torch.manual_seed(0)
            model = build_model("diffusion", theory, **hyper)
            train(model, TrainConfig(model="diffusion", hyper=model.hyper, objective="dsm", steps=steps,
                                     batch_size=64, lr=lr, checkpoint_every=steps, eval_batch=0,
                                     ensemble=str(ens)), folder / "run")
            cache[name] = folder / "run"
        return cache[name]

    return get
