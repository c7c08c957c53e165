"""Noise schedules of variance-exploding (VE) diffusion and the Gaussian / wrapped-Gaussian kernels.

A VE SDE has no drift, dx = g(t) dw for t in [0, 1], so the perturbation kernel is
x_t = x_0 + std(t) z, z ~ N(0, I), with std(t)^2 = int_0^t g(s)^2 ds (Song et al., "Score-based
generative modeling through stochastic differential equations", ICLR 2021). Two schedules:

    "ve"          (default; the one of Wang, Aarts, Zhou, JHEP 05 (2024) 060 and Song's tutorial)
                  g(t) = sigma^t,  std(t)^2 = (sigma^(2t) - 1) / (2 ln sigma);  sigma = 25 gives
                  std(1) = 9.85
    "geometric"   (Song et al.'s SMLD form) std(t) = sigma_min (sigma / sigma_min)^t,
                  g(t)^2 = d std^2/dt = 2 std(t)^2 ln(sigma / sigma_min); std(0) = sigma_min > 0

For angle fields (XY, U(1)) the same SDE runs on the torus [-pi, pi)^V: the kernel is the wrapped
Gaussian WN(x_t - x_0; std) = sum_k N(x_t - x_0 + 2 pi k; std^2), evaluated here either by the image
sum (small std) or by its Fourier series (large std), each truncated where its terms fall below
float64 rounding, so ``wrapped_normal_log_prob`` is exact in float64.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SCHEDULES = ("ve", "geometric")
TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class Schedule:
    """kind: "ve" or "geometric"; sigma: the schedule's sigma (sigma_max of geometric);
    sigma_min: geometric only."""

    kind: str = "ve"
    sigma: float = 25.0
    sigma_min: float = 0.01

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {self.kind!r}; choose from {', '.join(SCHEDULES)}")
        if not self.sigma > 1:
            raise ValueError(f"schedule sigma must be > 1, got {self.sigma}")
        if self.kind == "geometric" and not 0 < self.sigma_min < self.sigma:
            raise ValueError(f"geometric schedule needs 0 < sigma_min < sigma, got {self.sigma_min}, {self.sigma}")

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """std(t) of the perturbation kernel."""
        if self.kind == "ve":
            return torch.sqrt((self.sigma ** (2 * t) - 1) / (2 * math.log(self.sigma)))
        return self.sigma_min * (self.sigma / self.sigma_min) ** t

    def t_of_std(self, std: float) -> float:
        """The time at which the kernel has this std (inverse of ``std``)."""
        if self.kind == "ve":
            return math.log1p(2 * math.log(self.sigma) * std ** 2) / (2 * math.log(self.sigma))
        return math.log(std / self.sigma_min) / math.log(self.sigma / self.sigma_min)

    def grid(self, t_min: float, n_steps: int) -> list[float]:
        """Generation times 1 = t_0 > ... > t_n = t_min, equally spaced in log std(t): the noise
        level falls by the same factor at every step (Karras et al. 2022 space theirs similarly),
        so a few steps resolve both the fast start at large noise and the fine end."""
        hi = float(self.std(torch.tensor(1.0, dtype=torch.float64)))
        lo = float(self.std(torch.tensor(t_min, dtype=torch.float64)))
        stds = [hi * (lo / hi) ** (k / n_steps) for k in range(n_steps + 1)]
        return [1.0] + [self.t_of_std(v) for v in stds[1:-1]] + [t_min]

    def g2(self, t: torch.Tensor) -> torch.Tensor:
        """g(t)^2, the diffusion coefficient squared."""
        if self.kind == "ve":
            return self.sigma ** (2 * t)
        return 2 * self.std(t) ** 2 * math.log(self.sigma / self.sigma_min)


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Angles to [-pi, pi)."""
    return torch.remainder(x + math.pi, TWO_PI) - math.pi


def normal_log_prob(x: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; 0, std^2) summed over all but the batch dimension, float64."""
    x = x.to(torch.float64).flatten(1)
    return -0.5 * (x * x).sum(1) / std ** 2 - x.shape[1] * (math.log(std) + 0.5 * math.log(TWO_PI))


def _wrapped_terms(std: float) -> tuple[str, int]:
    """Which series converges faster at this std, and how many terms reach float64 rounding
    (relative size of the first dropped term below 1e-18)."""
    if std < 1.5:  # images: exp(-(2 pi k)^2 / (8 std^2)) is the smallest relative weight kept at |d| <= pi
        return "images", int(math.ceil(std * math.sqrt(8 * math.log(1e18)) / TWO_PI)) + 1
    return "fourier", int(math.ceil(math.sqrt(2 * math.log(1e18)) / std)) + 1


def wrapped_normal_log_prob_sites(d: torch.Tensor, std: float) -> torch.Tensor:
    """log WN(d; std) per element, float64: the wrapped Gaussian density of an angle difference d.

    images:  WN(d) = sum_{|k|<=K} exp(-(d + 2 pi k)^2 / (2 std^2)) / (std sqrt(2 pi))
    fourier: WN(d) = [1 + 2 sum_{n=1}^{N} exp(-n^2 std^2 / 2) cos(n d)] / (2 pi)"""
    d = wrap(d.to(torch.float64))
    kind, n = _wrapped_terms(std)
    if kind == "images":
        k = torch.arange(-n, n + 1, dtype=torch.float64, device=d.device)
        e = -((d.unsqueeze(-1) + TWO_PI * k) ** 2) / (2 * std ** 2)
        return torch.logsumexp(e, -1) - math.log(std) - 0.5 * math.log(TWO_PI)
    m = torch.arange(1, n + 1, dtype=torch.float64, device=d.device)
    series = 1 + 2 * (torch.exp(-0.5 * m ** 2 * std ** 2) * torch.cos(d.unsqueeze(-1) * m)).sum(-1)
    return torch.log(series) - math.log(TWO_PI)


def wrapped_normal_log_prob(x: torch.Tensor, std: float) -> torch.Tensor:
    """log of the wrapped Gaussian WN(x; 0, std) summed over all but the batch dimension, float64."""
    return wrapped_normal_log_prob_sites(x, std).flatten(1).sum(1)


def wrapped_normal_score(d: torch.Tensor, std: torch.Tensor, n_images: int) -> torch.Tensor:
    """d/dd log WN(d; std) by the image sum over |k| <= n_images (the DSM training target for angle
    fields; std broadcasts against d). A truncated sum: enough images for the stds used in training
    are chosen by the caller; the exact densities of sampling never use it."""
    d = wrap(d)
    k = torch.arange(-n_images, n_images + 1, dtype=d.dtype, device=d.device)
    s2 = (std ** 2).unsqueeze(-1)
    shifted = d.unsqueeze(-1) + TWO_PI * k
    w = torch.softmax(-shifted ** 2 / (2 * s2), dim=-1)
    return -(w * shifted).sum(-1) / s2.squeeze(-1)
