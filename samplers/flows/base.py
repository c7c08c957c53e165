"""The flow interface every learned normalizing-flow model implements.

Names of log-densities (torchlft's convention, so sign and direction are never in doubt):
    log_prior(z)   log r(z) of the prior (base) density
    log_q(x)       log-density of the model (pushforward of the prior) at x, exact
    log_p(x)       -S(x): the target's unnormalized log-density (theory.torch_action)
    log_w = log_p - log_q   the log importance weight

A ``Transform`` is an invertible, batched torch module on configurations (PHYSICS.md layouts,
batch first) with
    forward(z) -> (x, logdet)   logdet = log |det dx/dz|, shape (N,), float64
    inverse(x) -> (z, logdet)   logdet = log |det dz/dx| = -(forward logdet at z)
A ``Flow`` is a prior followed by transforms: sample(n) pushes prior samples forward and returns
(x, log_q) from the same pass, log_q(x) pulls x back. Computation is in the modules' dtype
(float32 by default, float64 on request); log-determinants and log-densities are accumulated in
float64. Works on any device: the prior samples on the device of the flow's parameters.
"""
from __future__ import annotations

import importlib
import math

import torch
from torch import nn

# model name -> module that defines ``THEORIES`` (the theories it serves) and
# ``build(theory, **hyperparameters) -> model``; a module that is not a flow (no transforms) says
# so with ``FLOW = False`` (the shared transform tests skip it)
MODELS = {"realnvp": "samplers.flows.realnvp", "circular-flow": "samplers.flows.circular",
          "gauge-flow": "samplers.flows.gauge", "autoregressive": "samplers.autoregressive",
          "diffusion": "samplers.diffusion"}


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """float32 / float64 as a torch dtype, given as one or by name (ValueError otherwise), so that
    ``build(theory, **model.hyper)`` rebuilds a model whose hyper stores the dtype's name."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: choose from {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype {dtype}: choose torch.float32 or torch.float64")
    return dtype


def positive_ints(name: str, values) -> tuple[int, ...]:
    """values (one number or a sequence) as a tuple of positive integers (ValueError naming ``name``)."""
    if isinstance(values, (int, float)):
        values = (values,)
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be positive integers, got {values!r}") from None
    if not out or any(v < 1 or v != float(w) for v, w in zip(out, values)):
        raise ValueError(f"{name} must be positive integers, got {values!r}")
    return out


def conv_layers(hidden, n_layers: int | None, kernel_size) -> tuple[tuple[int, ...], int]:
    """Checked hidden widths (n_layers, if given, repeats hidden[0] n_layers times) and an odd kernel size."""
    hidden = positive_ints("hidden", hidden)
    if n_layers is not None:
        (n_layers,) = positive_ints("n_layers", n_layers)
        hidden = (hidden[0],) * n_layers
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    return hidden, int(kernel_size)


def model_module(name: str):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name])


def build_model(name: str, theory, **hyper) -> "Flow":
    """The flow ``name`` for ``theory`` (ValueError if the model does not serve that theory)."""
    module = model_module(name)
    if theory.name not in module.THEORIES:
        raise ValueError(f"model {name} is for {', '.join(module.THEORIES)}, not {theory.name}")
    return module.build(theory, **hyper)


class Transform(nn.Module):
    """Invertible layer; subclasses implement forward and inverse, both returning float64 logdets.

    A ``lean`` transform (issue 14) also works on flattened configurations: ``forward_flat(x, batch_last)``
    / ``inverse_flat(x, batch_last)`` on x of shape (N, D) (or (D, N) with ``batch_last``) return
    (x', logdet) with x' possibly not yet in its canonical range (angles not wrapped), and
    ``finish_flat(x)`` brings it there. Without autograd the passes use the (N, D) layout, in which every
    configuration's arithmetic is the same whatever the batch (bitwise row independence, which the chain
    sets rely on); with autograd (training) the batch-last layout, faster there (samplers/flows/nets.py).
    A Flow whose transforms are all lean runs them back to back and finishes once; a lean transform's own
    ``forward`` / ``inverse`` do it for a single layer."""

    lean = False

    def use_lean(self, x: torch.Tensor) -> bool:
        """Whether to run the lean pass on x (a lean transform may prefer its reference pass for some
        inputs, where that measured faster; off entirely within nets.reference_passes())."""
        from .nets import reference_mode

        return self.lean and not reference_mode()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def finish_flat(x: torch.Tensor) -> torch.Tensor:
        return x

    def run_lean(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """forward (or inverse) of one lean layer on a batch in the usual layout."""
        bl = torch.is_grad_enabled()
        y = x.reshape(x.shape[0], -1)
        y, ld = (self.inverse_flat if inverse else self.forward_flat)(y.t().contiguous() if bl else y, bl)
        y = self.finish_flat(y)
        return (y.t().contiguous() if bl else y).view(x.shape), ld


class NormalPrior(nn.Module):
    """Independent N(0, 1) on every site: log r(z) = -sum z^2 / 2 - (V/2) log(2 pi)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("_anchor", torch.zeros(()))  # follows .to(device/dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        a = self._anchor
        return torch.randn((n, *self.shape), generator=generator, device=a.device, dtype=a.dtype)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.float64).flatten(1)
        return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


class UniformAnglePrior(nn.Module):
    """Uniform (Haar) measure on [-pi, pi)^V: log r(z) = -V log(2 pi)."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)
        self.register_buffer("_anchor", torch.zeros(()))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        a = self._anchor
        u = torch.rand((n, *self.shape), generator=generator, device=a.device, dtype=a.dtype)
        return (2 * u - 1) * math.pi

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        v = math.prod(self.shape)
        return torch.full((z.shape[0],), -v * math.log(2 * math.pi), dtype=torch.float64, device=z.device)


class Flow(nn.Module):
    """prior -> transforms[0] -> ... -> transforms[-1]; knows the theory it was built for."""

    def __init__(self, prior: nn.Module, transforms: list[Transform], theory, name: str, hyper: dict):
        super().__init__()
        self.prior = prior
        self.transforms = nn.ModuleList(transforms)
        self.theory = theory
        self.name = name
        self.hyper = dict(hyper)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = T(z) and log |det dx/dz| (float64)."""
        if self._lean(z):
            return self._run_lean(z, inverse=False)
        logdet = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
        x = z
        for t in self.transforms:
            x, ld = t.forward(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z = T^-1(x) and log |det dz/dx| (float64)."""
        if self._lean(x):
            return self._run_lean(x, inverse=True)
        logdet = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        z = x
        for t in reversed(self.transforms):
            z, ld = t.inverse(z)
            logdet = logdet + ld
        return z, logdet

    # -------------------------------------------------------------- lean passes (issue 14)
    def _lean(self, x: torch.Tensor) -> bool:
        return len(self.transforms) > 0 and all(t.use_lean(x) for t in self.transforms)

    def _run_lean(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """All (lean) transforms back to back on the flattened configurations, finished once. Without
        autograd a large batch runs in chunks of rows (``nets.chunk_rows``: the buffers then stay in the
        CPU caches); each row's arithmetic is the same whatever the batch or chunk, so row i of the result
        is bitwise a function of row i of x."""
        from .nets import chunk_rows, keep_freed_memory

        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            keep_freed_memory()
        n, shape = x.shape[0], x.shape[1:]
        bl = torch.is_grad_enabled()  # training: the batch-last layout (faster with autograd)
        step = n if bl else chunk_rows(math.prod(shape), device=x.device)
        if n > step:
            parts = [self._run_lean(x[i:i + step], inverse) for i in range(0, n, step)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        y = x.reshape(n, -1)
        if bl:
            y = y.t().contiguous()
        logdet = None
        for t in (reversed(self.transforms) if inverse else self.transforms):
            y, ld = (t.inverse_flat if inverse else t.forward_flat)(y, bl)
            logdet = ld if logdet is None else logdet + ld
        y = self.transforms[0].finish_flat(y)
        return (y.t().contiguous() if bl else y).view(x.shape), logdet

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n configurations x and their exact log q(x) = log r(z) - log |det dx/dz| (float64)."""
        return self.push(self.sample_prior(n, generator))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random part of ``sample``: n prior draws z (``sample(n, g) == push(sample_prior(n, g))``)."""
        return self.prior.sample(n, generator)

    def push(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic part of ``sample``: x = T(z) and log q(x) = log r(z) - log |det dx/dz|. Row i of
        the result depends on row i of z alone, so prior draws of several chains can share one pass."""
        x, logdet = self.forward(z)
        return x, self.prior.log_prob(z) - logdet

    def log_q(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of the model at x: log r(T^-1 x) + log |det dz/dx| (float64)."""
        z, logdet = self.inverse(x)
        return self.prior.log_prob(z) + logdet

    def log_p(self, x: torch.Tensor) -> torch.Tensor:
        """-S(x) of the target theory (float64, unnormalized)."""
        return -self.theory.torch_action(x.to(torch.float64))
