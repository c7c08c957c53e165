"""Trained models shared by the tests of learned proposals (trained once per session, fixed seeds)."""
from pathlib import Path

from lattice import U1, Phi4  # first: sets OMP_WAIT_POLICY before torch starts its OpenMP runtime (lattice/__init__.py)

import pytest  # noqa: E402
import torch  # noqa: E402

from samplers.flows import build_model
from samplers.training import TrainConfig, train

# name -> (theory, model, hyperparameters, training steps); "undertrained": a few steps only, so
# its raw samples are far from the target and only the MH correction makes a chain exact
# (independence-MH acceptance reached, measured: u1 L4 0.13 / 0.30, u1 L8 0.07 / 0.23, phi4 free 0.78)
MODELS = {  # name -> (theory, model, hyperparameters, steps, learning rate)
    "u1_L4_undertrained": (U1((4, 4), 2.0), "gauge-flow", {"n_layers": 8, "hidden": (8,)}, 30, 3e-3),
    "u1_L4_trained": (U1((4, 4), 2.0), "gauge-flow", {"n_layers": 8, "hidden": (8,)}, 200, 3e-3),
    "u1_L8_undertrained": (U1((8, 8), 2.0), "gauge-flow", {"n_layers": 8, "hidden": (8,)}, 100, 1e-2),
    "u1_L8_trained": (U1((8, 8), 2.0), "gauge-flow", {"n_layers": 16, "hidden": (8,)}, 300, 1e-2),
    "phi4_free_L4": (Phi4((4, 4), m2=1.0, g=0.0), "realnvp", {"n_layers": 4, "hidden": (8,)}, 300, 3e-3),
    "phi4_L4_broken": (Phi4((4, 4), m2=-4.0, g=8.0), "realnvp", {"n_layers": 4, "hidden": (8,)}, 100, 3e-3),
}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(name) -> run folder of MODELS[name], trained on first use."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            theory, model, hyper, steps, lr = MODELS[name]
            torch.manual_seed(0)
            flow = build_model(model, theory, **hyper)
            run = tmp_path_factory.mktemp(name)
            train(flow, TrainConfig(model=model, hyper=flow.hyper, steps=steps, batch_size=64, lr=lr,
                                    checkpoint_every=steps, eval_batch=256), run)
            cache[name] = run
        return cache[name]

    return get
