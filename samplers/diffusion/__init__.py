"""Score-based diffusion models: learned stochastic quantization with an exact-density sampler.

``build_model("diffusion", theory, **hyper)`` (samplers/flows/base.py's registry) calls ``build``
below. Modules, one job each:
    schedules.py   VE noise schedules, Gaussian and wrapped-Gaussian kernels (exact in float64)
    score.py       the periodic convolutional, time-conditioned score network
    model.py       DiffusionModel: DSM loss, reverse SDE, PF-ODE with exact log q, transfer
See docs/diffusion.md for usage, costs and the papers the defaults follow.
"""
from __future__ import annotations

import torch

from samplers.flows.base import as_dtype, conv_layers, positive_ints

from .model import INTEGRATORS, DiffusionModel
from .schedules import Schedule
from .score import ScoreNet

THEORIES = ("phi4", "xy", "u1")
FLOW = False  # not a normalizing flow: tests/flows/test_base_transforms.py does not apply


def build(theory, hidden=(32, 32, 32), n_layers: int | None = None, kernel_size: int = 3, time_dim: int = 32,
          schedule: str = "ve", sigma: float = 25.0, sigma_min: float = 0.01, t_min: float = 1e-3,
          n_steps: int = 16, integrator: str = "heun", dtype: torch.dtype | str = torch.float32) -> DiffusionModel:
    """A diffusion model for a 2D phi4, xy or u1 theory.

    hidden: widths of the score network's hidden convolutions (n_layers repeats hidden[0]);
    kernel_size: odd; time_dim: size of the time embedding; schedule: "ve" (g = sigma^t, the
    paper's) or "geometric" (std = sigma_min (sigma / sigma_min)^t); t_min: the last time of
    generation; n_steps, integrator: the default generation grid (set_sampling changes them).
    ``build(theory, **model.hyper)`` rebuilds the same model."""
    name = getattr(theory, "name", None)
    if name not in THEORIES:
        raise ValueError(f"diffusion is for {', '.join(THEORIES)}, not {name or theory!r}")
    if len(theory.shape) != 2:
        raise ValueError(f"diffusion needs a 2D lattice, got shape {tuple(theory.shape)}")
    hidden, kernel_size = conv_layers(hidden, n_layers, kernel_size)
    (time_dim,) = positive_ints("time_dim", time_dim)
    if time_dim % 2:
        raise ValueError(f"time_dim must be even, got {time_dim}")
    if not 0 < t_min < 1:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min}")
    if integrator not in INTEGRATORS:
        raise ValueError(f"unknown integrator {integrator!r}; choose from {', '.join(INTEGRATORS)}")
    dtype = as_dtype(dtype)
    sched = Schedule(schedule, float(sigma), float(sigma_min))
    net = ScoreNet(name, hidden, kernel_size, time_dim)
    hyper = {"hidden": list(hidden), "kernel_size": kernel_size, "time_dim": time_dim, "schedule": schedule,
             "sigma": float(sigma), "sigma_min": float(sigma_min), "t_min": float(t_min), "n_steps": int(n_steps),
             "integrator": integrator, "dtype": "float32" if dtype == torch.float32 else "float64"}
    model = DiffusionModel(net, sched, theory, "diffusion", hyper, t_min, n_steps, integrator)
    return model.to(dtype)
