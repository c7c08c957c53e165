"""Helpers and session-trained autoregressive models for tests/autoregressive."""
from pathlib import Path

import pytest
import torch

from lattice import XY, Phi4
from samplers.flows import build_model
from samplers.training import TrainConfig, train


def perturbed(theory, seed=0, noise=0.3, dtype="float64", **hyper):
    """A model with random (non-trivial) parameters: every conditional depends on its context."""
    torch.manual_seed(seed)
    model = build_model("autoregressive", theory, dtype=dtype, **hyper)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


# name -> (theory, hyperparameters, training steps, learning rate); reverse KL from the action
# (measured acceptance of independence MH after training: phi4 free ~0.77, xy 2x2 ~0.3-0.5)
TRAINED = {
    "phi4_free_L4": (Phi4((4, 4), m2=1.0, g=0.0), {"arch": "pixelcnn", "hidden": [16, 16], "n_components": 2}, 200, 3e-3),
    "xy_2x2": (XY((2, 2), 1.0), {"arch": "made", "hidden": [32, 32], "n_components": 2}, 150, 3e-3),
}


@pytest.fixture(scope="session")
def ar_trained(tmp_path_factory):
    """ar_trained(name) -> run folder of TRAINED[name], trained on first use."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            theory, hyper, steps, lr = TRAINED[name]
            torch.manual_seed(0)
            model = build_model("autoregressive", theory, **hyper)
            run = tmp_path_factory.mktemp(name)
            train(model, TrainConfig(model="autoregressive", hyper=model.hyper, steps=steps, batch_size=64, lr=lr,
                                     checkpoint_every=steps, eval_batch=256), run)
            cache[name] = run
        return cache[name]

    return get
