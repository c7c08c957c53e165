"""2D XY model (O(2) spins as angles theta_x in [-pi, pi)), PHYSICS.md:

    S[theta] = -beta sum_x sum_mu cos(theta_{x+mu} - theta_x)

HMC force F_x = -dS/dtheta_x = beta sum_{y nn x} sin(theta_y - theta_x)
             = beta (cos theta_x sum_y sin theta_y - sin theta_x sum_y cos theta_y),
so the kernels take one sin and one cos per site instead of one per link.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import geometry
from .fastmath import FMA, FMA_SUM, fcos, fsin, wrap_angle
from .rng import uniform


@njit(cache=True, fastmath=FMA_SUM)
def action_kernel(t: np.ndarray, beta: float) -> float:
    L0, L1 = t.shape
    total = 0.0
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            total += fcos(t[ip, j] - t[i, j]) + fcos(t[i, jp] - t[i, j])
    return -beta * total


@njit(cache=True, parallel=True)
def action_batch_kernel(ts: np.ndarray, beta: float) -> np.ndarray:
    out = np.empty(ts.shape[0])
    for k in prange(ts.shape[0]):
        out[k] = action_kernel(ts[k], beta)
    return out


@njit(cache=True, fastmath=FMA)
def _cos_sin(t: np.ndarray, cs: np.ndarray) -> None:
    """cs[0] = cos t, cs[1] = sin t."""
    L0, L1 = t.shape
    for i in range(L0):
        for j in range(L1):
            cs[0, i, j] = fcos(t[i, j])
            cs[1, i, j] = fsin(t[i, j])


@njit(cache=True, fastmath=FMA)
def kick_kernel(t, p, eps, beta, cs):
    """p += eps * F(t); cs is scratch of shape (2, L0, L1)."""
    _cos_sin(t, cs)
    L0, L1 = t.shape
    c = cs[0]
    s = cs[1]
    eb = eps * beta
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        im = i - 1 if i > 0 else L0 - 1
        # interior of the row vectorizes; the two ends wrap
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            jm = j - 1 if j > 0 else L1 - 1
            sc = c[ip, j] + c[im, j] + c[i, jp] + c[i, jm]
            ss = s[ip, j] + s[im, j] + s[i, jp] + s[i, jm]
            p[i, j] += eb * (c[i, j] * ss - s[i, j] * sc)


@njit(cache=True, parallel=True)
def force_batch_kernel(ts, beta, out):
    for k in prange(ts.shape[0]):
        out[k] = 0.0
        cs = np.empty((2,) + ts.shape[1:])
        kick_kernel(ts[k], out[k], 1.0, beta, cs)


@njit(cache=True, parallel=True, fastmath=FMA)
def metropolis_kernel(t, beta, delta, key):
    """Checkerboard sweep, theta' = wrap(theta + delta (2u - 1)); 2 uniforms per site.

    dS = -beta [(cos theta' - cos theta) sum_y cos theta_y + (sin theta' - sin theta) sum_y sin theta_y].
    """
    L0, L1 = t.shape
    cs = np.empty((2, L0, L1))
    _cos_sin(t, cs)
    c = cs[0]
    s = cs[1]
    accepted = 0
    for parity in range(2):
        for i in prange(L0):
            ip = i + 1 if i + 1 < L0 else 0
            im = i - 1 if i > 0 else L0 - 1
            for j in range((i + parity) % 2, L1, 2):
                jp = j + 1 if j + 1 < L1 else 0
                jm = j - 1 if j > 0 else L1 - 1
                site = i * L1 + j
                new = wrap_angle(t[i, j] + delta * (2.0 * uniform(key, 2 * site) - 1.0))
                cn = fcos(new)
                sn = fsin(new)
                sc = c[ip, j] + c[im, j] + c[i, jp] + c[i, jm]
                ss = s[ip, j] + s[im, j] + s[i, jp] + s[i, jm]
                dS = -beta * ((cn - c[i, j]) * sc + (sn - s[i, j]) * ss)
                if dS <= 0.0 or uniform(key, 2 * site + 1) < np.exp(-dS):
                    t[i, j] = new
                    c[i, j] = cn
                    s[i, j] = sn
                    accepted += 1
    return accepted


@dataclass(frozen=True)
class XY:
    """2D XY model at inverse temperature beta."""

    shape: tuple[int, int]
    beta: float

    name = "xy"
    compact = True

    def __post_init__(self):
        shape = geometry.validate_shape(self.shape)
        if len(shape) != 2:
            raise ValueError(f"the XY model is two-dimensional, got shape {shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_scratch", np.empty((2,) + shape))

    parameterization = "standard"

    def params(self) -> dict:
        return {"beta": float(self.beta)}

    @property
    def config_shape(self) -> tuple[int, int]:
        return self.shape

    @property
    def n_dof(self) -> int:
        return self.shape[0] * self.shape[1]

    def random_config(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-np.pi, np.pi, self.shape)

    def action(self, q: np.ndarray) -> float:
        return action_kernel(q, self.beta)

    def action_batch(self, qs: np.ndarray) -> np.ndarray:
        return action_batch_kernel(qs, self.beta)

    def force(self, q: np.ndarray) -> np.ndarray:
        return self.force_batch(q[None])[0]

    def force_batch(self, qs: np.ndarray) -> np.ndarray:
        out = np.empty_like(qs)
        force_batch_kernel(qs, self.beta, out)
        return out

    def kick(self, q: np.ndarray, p: np.ndarray, eps: float) -> None:
        """p += eps * F(q), in place."""
        kick_kernel(q, p, eps, self.beta, self._scratch)

    def check_metropolis(self) -> None:
        geometry.require_even(self.shape, "the checkerboard Metropolis update")

    def metropolis_sweep(self, q: np.ndarray, delta: float, key: np.uint64) -> int:
        return metropolis_kernel(q, self.beta, delta, key)

    def torch_action(self, x):
        """S of a batch x of shape (N, L0, L1), float64 torch, differentiable."""
        import torch

        links = sum(torch.cos(torch.roll(x, -1, dims=mu) - x) for mu in (1, 2))
        return -self.beta * links.sum(dim=(1, 2))
