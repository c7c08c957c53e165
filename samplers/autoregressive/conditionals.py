"""One-site conditional densities of the autoregressive models: mixtures of K Gaussians (real
fields, phi^4) and of K von Mises distributions (angles in [-pi, pi), XY).

A conditional turns P = 3K unconstrained network outputs ``raw`` (last axis; any leading axes)
into a normalized density of one site's variable and samples it exactly:

    GaussianMixture   q(x) = sum_k pi_k N(x; mu_k, sigma_k^2)
                      pi = softmax(raw[:K]), mu_k = raw[K + k],
                      sigma_k = softplus(raw[2K + k] + SOFTPLUS_ONE) + MIN_SCALE
    VonMisesMixture   q(theta) = sum_k pi_k exp(kappa_k cos(theta - mu_k)) / (2 pi I_0(kappa_k))
                      pi = softmax(raw[:K]), mu_k = raw[K + k] (the density is 2 pi-periodic in mu_k),
                      kappa_k = softplus(raw[2K + k] + SOFTPLUS_ONE) + MIN_KAPPA

The parameters come out of the network in the module's dtype; ``log_prob`` casts them to float64
and evaluates the density there (log I_0(kappa) = log i0e(kappa) + kappa, so no overflow), so the
per-site log-densities, and their sum log q(x) = sum_i log q(x_i | x_<i), are float64.

Sampling is exact: a component k ~ Categorical(pi) by inverse CDF of one uniform, then
x = mu_k + sigma_k * N(0, 1), or theta = wrap(mu_k + d) with d drawn from the von Mises
distribution VM(0, kappa_k) by the rejection algorithm of Best and Fisher (Appl. Statist. 28
(1979) 152; the wrapped-Cauchy envelope), vectorized: the draws still rejected are redrawn until
none is left. Every random number comes from the caller's torch.Generator, so a batch is a
deterministic function of the generator state (torch.distributions.VonMises takes no generator).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(SOFTPLUS_ONE) = 1: raw = 0 gives sigma ~ 1, kappa ~ 1
MIN_SCALE = 1e-3
MIN_KAPPA = 1e-4
LOG_2PI = math.log(2.0 * math.pi)


def wrap(theta: torch.Tensor) -> torch.Tensor:
    """theta mapped to [-pi, pi)."""
    return torch.remainder(theta + math.pi, 2.0 * math.pi) - math.pi


def _categorical(logits: torch.Tensor, generator) -> torch.Tensor:
    """One component index per row of logits (..., K) by inverse CDF of a uniform (float64)."""
    probs = torch.softmax(logits.to(torch.float64), dim=-1)
    cdf = probs.cumsum(-1)
    u = torch.rand(probs.shape[:-1], generator=generator, dtype=torch.float64, device=probs.device)
    k = (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return k.clamp_(max=probs.shape[-1] - 1)


def sample_von_mises(kappa: torch.Tensor, generator=None, max_rounds: int = 1000) -> torch.Tensor:
    """Exact draws d ~ VM(0, kappa) in (-pi, pi] (float64), one per entry of kappa > 0.

    Best-Fisher: tau = 1 + sqrt(1 + 4 kappa^2), rho = (tau - sqrt(2 tau)) / (2 kappa),
    r = (1 + rho^2) / (2 rho); repeat  z = cos(pi u1), f = (1 + r z) / (r + z), c = kappa (r - f)
    until c (2 - c) > u2 or log(c / u2) + 1 - c >= 0; then d = sign(u3 - 1/2) arccos(f).
    rho is computed without cancellation for small kappa: tau - sqrt(2 tau) =
    tau (tau - 2) / (tau + sqrt(2 tau)) with tau - 2 = 4 kappa^2 / (sqrt(1 + 4 kappa^2) + 1).
    The acceptance rate is >= 0.65 for every kappa, so a few rounds finish a batch."""
    kappa = kappa.to(torch.float64)
    s = torch.sqrt(1.0 + 4.0 * kappa * kappa)
    tau = 1.0 + s
    rho = tau * (4.0 * kappa * kappa / (s + 1.0)) / (tau + torch.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho * rho) / (2.0 * rho)
    out = torch.empty_like(kappa)
    todo = torch.arange(kappa.numel(), device=kappa.device)
    kf, rf, of = kappa.reshape(-1), r.reshape(-1), out.view(-1)
    for _ in range(max_rounds):
        if todo.numel() == 0:
            return out
        u = torch.rand((3, todo.numel()), generator=generator, dtype=torch.float64, device=kappa.device)
        k, rr = kf[todo], rf[todo]
        z = torch.cos(math.pi * u[0])
        f = (1.0 + rr * z) / (rr + z)
        c = k * (rr - f)
        ok = (c * (2.0 - c) > u[1]) | (torch.log(c / u[1]) + 1.0 - c >= 0)
        d = torch.sign(u[2] - 0.5) * torch.acos(f.clamp(-1.0, 1.0))
        of[todo[ok]] = d[ok]
        todo = todo[~ok]
    raise RuntimeError("von Mises rejection sampling did not finish (non-finite kappa?)")


class GaussianMixture:
    """Mixture of K Gaussians on the real line; raw[..., 3K] = (logits, means, scale parameters)."""

    periodic = False

    def __init__(self, n_components: int):
        self.K = int(n_components)
        self.n_params = 3 * self.K

    def init_bias(self) -> torch.Tensor:
        """Output bias of the network's last layer: equal weights, means spread over [-1.5, 1.5], sigma = 1."""
        K = self.K
        mu = torch.linspace(-1.5, 1.5, K) if K > 1 else torch.zeros(1)
        return torch.cat([torch.zeros(K), mu, torch.zeros(K)])

    def params(self, raw: torch.Tensor):
        """(log pi, mu, sigma) in float64 from raw (..., 3K)."""
        raw = raw.to(torch.float64)
        K = self.K
        log_pi = torch.log_softmax(raw[..., :K], dim=-1)
        sigma = F.softplus(raw[..., 2 * K:] + SOFTPLUS_ONE) + MIN_SCALE
        return log_pi, raw[..., K:2 * K], sigma

    def log_prob(self, raw: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(x) (float64), x of the shape of raw without its last axis."""
        log_pi, mu, sigma = self.params(raw)
        t = (x.to(torch.float64).unsqueeze(-1) - mu) / sigma
        return torch.logsumexp(log_pi - 0.5 * t * t - torch.log(sigma) - 0.5 * LOG_2PI, dim=-1)

    def sample(self, raw: torch.Tensor, generator=None) -> torch.Tensor:
        """One exact draw per row of raw (..., 3K), float64."""
        log_pi, mu, sigma = self.params(raw)
        k = _categorical(log_pi, generator).unsqueeze(-1)
        eps = torch.randn(k.shape[:-1], generator=generator, dtype=torch.float64, device=raw.device)
        return mu.gather(-1, k).squeeze(-1) + sigma.gather(-1, k).squeeze(-1) * eps


class VonMisesMixture:
    """Mixture of K von Mises densities on [-pi, pi); raw[..., 3K] = (logits, means, concentration parameters)."""

    periodic = True

    def __init__(self, n_components: int):
        self.K = int(n_components)
        self.n_params = 3 * self.K

    def init_bias(self) -> torch.Tensor:
        """Equal weights, means evenly spread on the circle, kappa = 1."""
        K = self.K
        mu = -math.pi + 2 * math.pi * (torch.arange(K) + 0.5) / K
        return torch.cat([torch.zeros(K), mu, torch.zeros(K)])

    def params(self, raw: torch.Tensor):
        """(log pi, mu, kappa) in float64 from raw (..., 3K)."""
        raw = raw.to(torch.float64)
        K = self.K
        log_pi = torch.log_softmax(raw[..., :K], dim=-1)
        kappa = F.softplus(raw[..., 2 * K:] + SOFTPLUS_ONE) + MIN_KAPPA
        return log_pi, raw[..., K:2 * K], kappa

    def log_prob(self, raw: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """log q(theta) (float64): logsumexp_k [log pi_k + kappa_k (cos(theta - mu_k) - 1) - log 2 pi - log i0e(kappa_k)]."""
        log_pi, mu, kappa = self.params(raw)
        c = torch.cos(theta.to(torch.float64).unsqueeze(-1) - mu)
        return torch.logsumexp(log_pi + kappa * (c - 1.0) - LOG_2PI - torch.log(torch.special.i0e(kappa)), dim=-1)

    def sample(self, raw: torch.Tensor, generator=None) -> torch.Tensor:
        """One exact draw per row of raw (..., 3K), float64 in [-pi, pi)."""
        log_pi, mu, kappa = self.params(raw)
        k = _categorical(log_pi, generator).unsqueeze(-1)
        d = sample_von_mises(kappa.gather(-1, k).squeeze(-1), generator)
        return wrap(mu.gather(-1, k).squeeze(-1) + d)


CONDITIONALS = {"phi4": GaussianMixture, "xy": VonMisesMixture}
