"""Gauge-field priors for the gauge-equivariant flow (samplers/flows/gauge.py, ``--model-opt prior=...``).

``PlaquettePrior(shape, beta0)``: U(1) links on L0 x L1 (PHYSICS.md layout (2, L0, L1), x + e_mu = roll by -1
along axis mu, theta_P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x)) built exactly from
independent plaquettes. Draw the V - 1 plaquette angles phi(x), x != P_last = (L0 - 1, L1 - 1), independently
from the von Mises law exp(beta0 cos phi) / (2 pi I_0(beta0)); two holonomies h0, h1 and a gauge transformation
alpha(x) uniform in [-pi, pi). Then (``links_from_plaquettes``; the same convention as lattice/u1_plaquettes.py)

    theta_1(x0, x1) = 0 for x1 < L1 - 1;   theta_0(x0, 0) = 0 for x0 < L0 - 1;   theta_0(L0 - 1, 0) = h0;
    theta_0(x0, x1 + 1) = theta_0(x0, x1) - phi(x0, x1)                          (x1 = 0 .. L1 - 2, all x0);
    theta_1(0, L1 - 1) = h1;
    theta_1(x0 + 1, L1 - 1) = theta_1(x0, L1 - 1) + phi(x0, L1 - 1) - theta_0(x0, L1 - 1) + theta_0(x0, 0)
                                                                                 (x0 = 0 .. L0 - 2);
    theta_mu(x) += alpha(x) - alpha(x + e_mu),  wrapped to [-pi, pi).

Then theta_P(x) = phi(x) (mod 2 pi) for x != P_last, and theta_P(P_last) = -sum of the others (mod 2 pi), the
torus constraint. The map (phi, h0, h1, alpha) in T^(V-1) x T^2 x T^V -> links in T^(2V) is a surjective
homomorphism of tori (its kernel is the constant gauge transformations), so it pushes Haar measure to Haar
measure, and the pushforward of the product law above has the exact density on the links

    log r(theta) = -2 V log(2 pi) + sum_{x != P_last} [beta0 cos theta_P(x) - log I_0(beta0)],

a function of the plaquettes alone (gauge invariant), evaluated in float64 with log I_0(b) = log i0e(b) + b.
At beta0 = beta this is exp(-S) up to the factor exp(beta cos theta_P(P_last)) and the constant: the flow on
top only has to learn the torus constraint (Kanwar et al. PRL 125 (2020) 121601 use the Haar prior).

Von Mises draws (``von_mises``) are the Best-Fisher rejection algorithm (Appl. Statist. 28 (1979) 152) in the
cancellation-free form of lattice/vonmises.py, vectorized: one round draws 3 uniforms per entry still
rejected, from the caller's torch.Generator, on its device, in float64; exact.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .circular import wrap

PRIORS = ("haar", "plaquette")
KAPPA_UNIFORM = 1e-100  # below: exactly uniform to float64 resolution (lattice/vonmises.py)
MAX_ROUNDS = 10_000  # each round accepts with probability >= 0.65: never reached for a finite kappa


def plaquette_angles(theta: torch.Tensor) -> torch.Tensor:
    """theta_P(x) (unwrapped) of links (N, 2, L0, L1) -> (N, L0, L1) (PHYSICS.md)."""
    t0, t1 = theta[:, 0], theta[:, 1]
    return t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1


def log_i0(kappa: float) -> float:
    """log I_0(kappa) in float64, without overflow: log i0e(kappa) + kappa."""
    k = torch.tensor(float(kappa), dtype=torch.float64)
    return float(torch.log(torch.special.i0e(k))) + float(kappa)


def von_mises(kappa: float, shape: tuple[int, ...], generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Exact draws d ~ VM(0, kappa) in [-pi, pi] (float64) of the given shape (Best-Fisher, module docstring).

    With (r - 1, rho) from lattice.vonmises.best_fisher_params, a round is u1, u2, u3 uniform,
    1 - z = 2 sin^2(pi u1 / 2), r + z = (r - 1) + 2 cos^2(pi u1 / 2), c = kappa (r - 1)(r + 1) / (r + z);
    accept if c (2 - c) > u2 or log(c / u2) + 1 - c >= 0, then |d| = 2 arcsin(sqrt((r - 1)(1 - z) / (2 (r + z))))
    with the sign of u3 - 1/2. kappa < 1e-100: d = pi (2 u - 1), uniform."""
    kappa = float(kappa)
    if not (math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"von Mises concentration kappa = {kappa}: needs a finite kappa >= 0")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    n = math.prod(shape)
    if kappa < KAPPA_UNIFORM:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        return (math.pi * (2 * u - 1)).reshape(shape)
    from lattice.vonmises import best_fisher_params

    rm1, _ = best_fisher_params(kappa)  # r - 1
    rp1 = rm1 + 2.0
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    for _ in range(MAX_ROUNDS):
        if todo.numel() == 0:
            return out.reshape(shape)
        u = torch.rand((3, todo.numel()), generator=generator, dtype=torch.float64, device=device)
        h = (0.5 * math.pi) * u[0]
        sh, ch = torch.sin(h), torch.cos(h)
        r_plus_z = rm1 + 2.0 * ch * ch
        c = (kappa * rm1 * rp1) / r_plus_z
        ok = (c * (2.0 - c) > u[1]) | (torch.log(c / u[1]) + 1.0 - c >= 0.0)
        half = (0.5 * rm1) * (2.0 * sh * sh) / r_plus_z  # (1 - f) / 2
        d = 2.0 * torch.asin(torch.sqrt(half.clamp(max=1.0)))
        d = torch.where(u[2] > 0.5, d, -d)
        out[todo[ok]] = d[ok]
        todo = todo[~ok]
    raise RuntimeError(f"von Mises rejection sampling did not finish in {MAX_ROUNDS} rounds (kappa = {kappa})")


def links_from_plaquettes(phi: torch.Tensor, h0: torch.Tensor, h1: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Links (N, 2, L0, L1) in [-pi, pi) whose plaquettes are phi(x) for x != P_last (module docstring).

    phi (N, L0, L1) (the entry at P_last = (L0 - 1, L1 - 1) is not read), h0, h1 (N,), alpha (N, L0, L1);
    computed in the dtype of phi (float64 for an exact construction)."""
    n, l0, l1 = phi.shape
    t0 = torch.zeros((n, l0, l1), dtype=phi.dtype, device=phi.device)
    t1 = torch.zeros_like(t0)
    t0[:, l0 - 1, 0] = h0
    # theta_0(x0, x1) = theta_0(x0, 0) - sum_{k < x1} phi(x0, k)
    t0[:, :, 1:] = t0[:, :, :1] - torch.cumsum(phi[:, :, :l1 - 1], dim=2)
    # theta_1(x0, L1 - 1) = h1 + sum_{k < x0} [phi(k, L1 - 1) - theta_0(k, L1 - 1) + theta_0(k, 0)]
    step = phi[:, :l0 - 1, l1 - 1] - t0[:, :l0 - 1, l1 - 1] + t0[:, :l0 - 1, 0]
    t1[:, 0, l1 - 1] = h1
    t1[:, 1:, l1 - 1] = h1.unsqueeze(1) + torch.cumsum(step, dim=1)
    t0 = t0 + alpha - torch.roll(alpha, -1, dims=1)
    t1 = t1 + alpha - torch.roll(alpha, -1, dims=2)
    return wrap(torch.stack((t0, t1), dim=1))


class PlaquettePrior(nn.Module):
    """Links from independent von Mises plaquettes at coupling beta0 (module docstring):
    log r(theta) = -2 V log(2 pi) + sum_{x != P_last} [beta0 cos theta_P(x) - log I_0(beta0)], exact."""

    def __init__(self, shape: tuple[int, int, int], beta0: float):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or self.shape[0] != 2:
            raise ValueError(f"the plaquette prior is for 2D U(1) links of shape (2, L0, L1), not {self.shape}")
        beta0 = float(beta0)
        if not (math.isfinite(beta0) and beta0 >= 0):
            raise ValueError(f"prior_beta = {beta0}: needs a finite value >= 0")
        self.beta0 = beta0
        self.volume = self.shape[1] * self.shape[2]
        self.log_norm = -2 * self.volume * math.log(2 * math.pi) - (self.volume - 1) * log_i0(beta0)
        self.register_buffer("_anchor", torch.zeros(()))  # follows .to(device/dtype)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, beta0={self.beta0}"

    def draw_parts(self, n: int, generator: torch.Generator | None = None):
        """The random inputs of the construction, float64 on the prior's device: phi (n, L0, L1) (von Mises
        except at P_last, which is set to 0 and not used), h0, h1 (n,), alpha (n, L0, L1). Draw order:
        phi, then (h0, h1), then alpha."""
        dev = self._anchor.device
        _, l0, l1 = self.shape
        phi = torch.zeros((n, l0 * l1), dtype=torch.float64, device=dev)
        phi[:, :-1] = von_mises(self.beta0, (n, l0 * l1 - 1), generator, dev)
        h = (2 * torch.rand((2, n), generator=generator, dtype=torch.float64, device=dev) - 1) * math.pi
        alpha = (2 * torch.rand((n, l0, l1), generator=generator, dtype=torch.float64, device=dev) - 1) * math.pi
        return phi.view(n, l0, l1), h[0], h[1], alpha

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n link configurations (n, 2, L0, L1) in the prior's dtype, built in float64."""
        x = links_from_plaquettes(*self.draw_parts(n, generator))
        x = x.to(self._anchor.dtype)
        if x.dtype != torch.float64:  # float32 rounding may give +pi
            x = torch.where(x >= math.pi, x - 2 * math.pi, x)
        return x

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log r(z) (float64, shape (N,)), differentiable in z."""
        c = torch.cos(plaquette_angles(z.to(torch.float64))).flatten(1)
        return self.log_norm + self.beta0 * c[:, :-1].sum(1)
