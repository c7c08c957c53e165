"""Autoregressive models: exact-density learned samplers with q(x) = prod_i q(x_i | x_<i).

``build_model("autoregressive", theory, **hyper)`` (samplers/flows/base.py's registry) calls
``build`` below. Modules, one job each:
    conditionals.py   mixtures of K Gaussians (phi4) / K von Mises (xy): exact log-density and sampling
    pixelcnn.py       masked periodic convolutions over the raster order (any lattice size)
    made.py           a masked MLP over all sites (small lattices)
    model.py          AutoregressiveModel: features, log q, sequential cached sampling
See docs/autoregressive.md for usage.
"""
from __future__ import annotations

import math

import torch

from samplers.flows.base import as_dtype, conv_layers, positive_ints

from .conditionals import CONDITIONALS, GaussianMixture, VonMisesMixture, sample_von_mises  # noqa: F401
from .made import MADE
from .model import AutoregressiveModel
from .pixelcnn import PixelCNN

THEORIES = ("phi4", "xy")
FLOW = False  # not a normalizing flow: tests/flows/test_base_transforms.py does not apply
ARCHS = ("pixelcnn", "made")


def build(theory, arch: str = "pixelcnn", hidden=None, n_layers: int | None = None, kernel_size: int = 3,
          n_components: int = 4, dtype: torch.dtype | str = torch.float32) -> AutoregressiveModel:
    """An autoregressive model for a 2D phi4 or xy theory.

    arch: "pixelcnn" (default; hidden = widths of the masked conv layers, default (32, 32, 32);
    kernel_size odd) or "made" (hidden = widths of the hidden layers, default two of
    max(64, 4 V)). n_layers, if given, repeats hidden[0] n_layers times. n_components: K of the
    mixture conditionals. dtype: of the network (log q is float64 either way). The returned
    model's ``hyper`` rebuilds the same architecture: build(theory, **model.hyper)."""
    name = getattr(theory, "name", None)
    if name not in THEORIES:
        raise ValueError(f"autoregressive is for {', '.join(THEORIES)}, not {name or theory!r}")
    shape = tuple(theory.shape)
    if len(shape) != 2:
        raise ValueError(f"autoregressive needs a 2D lattice, got shape {shape}")
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    dtype = as_dtype(dtype)
    (n_components,) = positive_ints("n_components", n_components)
    V = math.prod(shape)
    if hidden is None:
        hidden = (32, 32, 32) if arch == "pixelcnn" else (max(64, 4 * V),) * 2
    hidden, kernel_size = conv_layers(hidden, n_layers, kernel_size)
    conditional = CONDITIONALS[name](n_components)
    in_features = 3 if conditional.periodic else 2
    if arch == "pixelcnn":
        net = PixelCNN(shape, in_features, conditional.n_params, hidden, kernel_size, conditional.init_bias())
    else:
        net = MADE(shape, in_features, conditional.n_params, hidden, conditional.init_bias())
    hyper = {"arch": arch, "hidden": list(hidden), "kernel_size": kernel_size, "n_components": n_components,
             "dtype": "float32" if dtype == torch.float32 else "float64"}
    return AutoregressiveModel(net, conditional, theory, "autoregressive", hyper).to(dtype)
