"""2D U(1) lattice gauge theory with the Wilson action (PHYSICS.md).

Links theta[mu, x0, x1] in [-pi, pi); plaquette at x (lower-left corner)

    theta_P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x)
    S[theta]   = beta sum_x (1 - cos theta_P(x))

HMC force F = -dS/dtheta:
    F_0(x) = beta [sin theta_P(x - e1) - sin theta_P(x)]
    F_1(x) = beta [sin theta_P(x) - sin theta_P(x - e0)]

Heat bath / over-relaxation: the terms of S holding one link theta are -beta Re[e^{-i theta} h] with h
the sum of its two staples (as phases; _link_field), so its conditional is the von Mises density
exp(beta |h| cos(theta - arg h)) (heatbath_kernel) and theta -> 2 arg h - theta keeps S (overrelax_kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from . import geometry
from .fastmath import FMA, FMA_SUM, fcos, fsin, wrap_angle
from .rng import uniform
from .vonmises import draw as vonmises_draw


@njit(cache=True)
def _plaquette(t, i, j, ip, jp):
    return t[0, i, j] + t[1, ip, j] - t[0, i, jp] - t[1, i, j]


@njit(cache=True)
def plaquette_angles(t: np.ndarray) -> np.ndarray:
    """theta_P(x) (unwrapped) for every x, shape (L0, L1)."""
    L0, L1 = t.shape[1], t.shape[2]
    out = np.empty((L0, L1))
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            out[i, j] = _plaquette(t, i, j, ip, jp)
    return out


@njit(cache=True, fastmath=FMA_SUM)
def action_kernel(t: np.ndarray, beta: float) -> float:
    L0, L1 = t.shape[1], t.shape[2]
    total = 0.0
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1 - 1):
            total += 1.0 - fcos(t[0, i, j] + t[1, ip, j] - t[0, i, j + 1] - t[1, i, j])
        total += 1.0 - fcos(t[0, i, L1 - 1] + t[1, ip, L1 - 1] - t[0, i, 0] - t[1, i, L1 - 1])
    return beta * total


@njit(cache=True, parallel=True)
def action_batch_kernel(ts: np.ndarray, beta: float) -> np.ndarray:
    out = np.empty(ts.shape[0])
    for k in prange(ts.shape[0]):
        out[k] = action_kernel(ts[k], beta)
    return out


@njit(cache=True, fastmath=FMA)
def _sin_plaquette_row(t, i, ip, out):
    """out[j] = sin theta_P(i, j) for one row of plaquettes."""
    L1 = t.shape[2]
    for j in range(L1 - 1):
        out[j] = fsin(t[0, i, j] + t[1, ip, j] - t[0, i, j + 1] - t[1, i, j])
    out[L1 - 1] = fsin(t[0, i, L1 - 1] + t[1, ip, L1 - 1] - t[0, i, 0] - t[1, i, L1 - 1])


@njit(cache=True, fastmath=FMA)
def kick_kernel(t, p, eps, beta, sp):
    """p += eps * F(t), one pass over rows; sp is scratch of shape (2, L1) for the
    sin theta_P of the previous and the current row."""
    L0, L1 = t.shape[1], t.shape[2]
    eb = eps * beta
    prev, cur = sp[0], sp[1]
    _sin_plaquette_row(t, L0 - 1, 0, prev)
    for i in range(L0):
        _sin_plaquette_row(t, i, i + 1 if i + 1 < L0 else 0, cur)
        p[0, i, 0] += eb * (cur[L1 - 1] - cur[0])
        for j in range(1, L1):
            p[0, i, j] += eb * (cur[j - 1] - cur[j])
        for j in range(L1):
            p[1, i, j] += eb * (cur[j] - prev[j])
        prev, cur = cur, prev


@njit(cache=True, parallel=True)
def force_batch_kernel(ts, beta, out):
    for k in prange(ts.shape[0]):
        out[k] = 0.0
        sp = np.empty((2, ts.shape[3]))
        kick_kernel(ts[k], out[k], 1.0, beta, sp)


@njit(cache=True, parallel=True, fastmath=FMA)
def metropolis_kernel(t, beta, delta, key):
    """One sweep over all links in 4 classes (mu, parity of x0 + x1); links of one class
    share no plaquette, so a class is updated in parallel. 2 uniforms per link, counter
    2 l + j with l the flat link index in (2, L0, L1).

    mu = 0: theta_P(x) = theta + a, theta_P(x - e1) = b - theta
    mu = 1: theta_P(x) = c - theta, theta_P(x - e0) = theta + e
    dS = -beta [cos(new side 1) + cos(new side 2) - cos(old side 1) - cos(old side 2)].
    """
    L0, L1 = t.shape[1], t.shape[2]
    V = L0 * L1
    accepted = 0
    for mu in range(2):
        for parity in range(2):
            for i in prange(L0):
                ip = i + 1 if i + 1 < L0 else 0
                im = i - 1 if i > 0 else L0 - 1
                for j in range((i + parity) % 2, L1, 2):
                    jp = j + 1 if j + 1 < L1 else 0
                    jm = j - 1 if j > 0 else L1 - 1
                    old = t[mu, i, j]
                    link = mu * V + i * L1 + j
                    new = wrap_angle(old + delta * (2.0 * uniform(key, 2 * link) - 1.0))
                    if mu == 0:
                        a = t[1, ip, j] - t[0, i, jp] - t[1, i, j]
                        b = t[0, i, jm] + t[1, ip, jm] - t[1, i, jm]
                        s_old = fcos(old + a) + fcos(b - old)
                        s_new = fcos(new + a) + fcos(b - new)
                    else:
                        c = t[0, i, j] + t[1, ip, j] - t[0, i, jp]
                        e = t[0, im, j] - t[0, im, jp] - t[1, im, j]
                        s_old = fcos(c - old) + fcos(old + e)
                        s_new = fcos(c - new) + fcos(new + e)
                    dS = -beta * (s_new - s_old)
                    if dS <= 0.0 or uniform(key, 2 * link + 1) < np.exp(-dS):
                        t[mu, i, j] = new
                        accepted += 1
    return accepted


@njit(cache=True, inline="always")
def _link_field(t, mu, i, j, ip, im, jp, jm):
    """(h_x, h_y): the two plaquettes holding link theta = t[mu, i, j] contribute
    -beta [cos(theta + m) + cos(p - theta)] = -beta Re[e^{-i theta} h],  h = e^{i p} + e^{-i m},
    to S (up to a constant), with (metropolis_kernel)
        mu = 0: theta_P(x) = theta + m, theta_P(x - e1) = p - theta,
        mu = 1: theta_P(x - e0) = theta + m, theta_P(x) = p - theta.
    arg h is the staple angle, |h| = |sum of the two staples| (in [0, 2])."""
    if mu == 0:
        m = t[1, ip, j] - t[0, i, jp] - t[1, i, j]
        p = t[0, i, jm] + t[1, ip, jm] - t[1, i, jm]
    else:
        m = t[0, im, j] - t[0, im, jp] - t[1, im, j]
        p = t[0, i, j] + t[1, ip, j] - t[0, i, jp]
    return fcos(p) + fcos(m), fsin(p) - fsin(m)


@njit(cache=True, inline="always")
def _heatbath_row(t, beta, key, mu, parity, i):
    """Heat-bath draws of the links of class (mu, parity) in row x0 = i (heatbath_kernel)."""
    L0, L1 = t.shape[1], t.shape[2]
    V = L0 * L1
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    for j in range((i + parity) % 2, L1, 2):
        jp = j + 1 if j + 1 < L1 else 0
        jm = j - 1 if j > 0 else L1 - 1
        hx, hy = _link_field(t, mu, i, j, ip, im, jp, jm)
        d = vonmises_draw(beta * np.sqrt(hx * hx + hy * hy), key, np.int64(mu * V + i * L1 + j))
        t[mu, i, j] = wrap_angle(np.arctan2(hy, hx) + d)


@njit(cache=True, parallel=True)
def heatbath_kernel(t, beta, key):
    """Heat-bath sweep: each link drawn from its conditional given all other links,

        p(theta | rest) ~ exp(beta |h| cos(theta - arg h))      (_link_field),

    i.e. theta = arg h + d, d ~ VM(0, beta |h|) by Best-Fisher (lattice/vonmises.py), stream = flat
    link index mu V + x0 L1 + x1. Order as metropolis_kernel: 4 classes (mu = 0, 1; parity of
    x0 + x1 = 0, 1), links of one class share no plaquette (so none is in another's staple) and a
    class is updated in parallel; the sweep is a function of (t, key) alone. Even L only.
    """
    for mu in range(2):
        for parity in range(2):
            for i in prange(t.shape[1]):
                _heatbath_row(t, beta, key, mu, parity, i)


@njit(cache=True)
def heatbath_kernel_serial(t, beta, key):
    """heatbath_kernel on one thread, without the start-up of its four parallel loops (which dominates
    a sweep of a small lattice); the same arithmetic, so the same result bit for bit."""
    for mu in range(2):
        for parity in range(2):
            for i in range(t.shape[1]):
                _heatbath_row(t, beta, key, mu, parity, i)


@njit(cache=True, inline="always")
def _overrelax_row(t, mu, parity, i):
    """Over-relaxation of the links of class (mu, parity) in row x0 = i (overrelax_kernel)."""
    L0, L1 = t.shape[1], t.shape[2]
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    for j in range((i + parity) % 2, L1, 2):
        jp = j + 1 if j + 1 < L1 else 0
        jm = j - 1 if j > 0 else L1 - 1
        hx, hy = _link_field(t, mu, i, j, ip, im, jp, jm)
        t[mu, i, j] = wrap_angle(2.0 * np.arctan2(hy, hx) - t[mu, i, j])


@njit(cache=True, parallel=True)
def overrelax_kernel(t, reverse):
    """Over-relaxation sweep: theta -> 2 arg h - theta (wrapped), each link reflected about its
    staple angle (_link_field). |h| cos(theta - arg h) is unchanged, so S is preserved (to
    rounding): microcanonical and deterministic, each class's step an involution. Classes in
    heatbath_kernel's order, or (reverse) in the opposite order, which undoes the forward sweep.
    Not ergodic alone; mixed with heat-bath or Metropolis sweeps (samplers/heatbath.py).
    """
    for k in range(4):
        cls = 3 - k if reverse else k
        for i in prange(t.shape[1]):
            _overrelax_row(t, cls // 2, cls % 2, i)


@njit(cache=True)
def overrelax_kernel_serial(t, reverse):
    """overrelax_kernel on one thread (as heatbath_kernel_serial): the same result bit for bit."""
    for k in range(4):
        cls = 3 - k if reverse else k
        for i in range(t.shape[1]):
            _overrelax_row(t, cls // 2, cls % 2, i)


#: heat-bath / over-relaxation sweeps of fewer variables run serially: there the start-up of a parallel
#: loop (~8 us per loop with 2 threads on the 2-core VM of benchmarks/RESULTS.md) outweighs the work
SERIAL_BELOW = 512


def _serial(q: np.ndarray) -> bool:
    """Run a sweep of q with the serial kernel (bit-identical to the parallel one)?"""
    return q.size < SERIAL_BELOW or numba.get_num_threads() == 1


@dataclass(frozen=True)
class U1:
    """2D U(1) gauge theory, Wilson action at coupling beta >= 0."""

    shape: tuple[int, int]
    beta: float

    name = "u1"
    compact = True

    def __post_init__(self):
        shape = geometry.validate_shape(self.shape)
        if len(shape) != 2:
            raise ValueError(f"U(1) gauge theory here is two-dimensional, got shape {shape}")
        if self.beta < 0:
            raise ValueError(f"beta = {self.beta} < 0: the U(1) Wilson action needs beta >= 0")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "_scratch", np.empty((2, shape[1])))

    parameterization = "wilson"

    def params(self) -> dict:
        return {"beta": float(self.beta)}

    @property
    def config_shape(self) -> tuple[int, int, int]:
        return (2,) + self.shape

    @property
    def n_dof(self) -> int:
        return 2 * self.shape[0] * self.shape[1]

    def random_config(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-np.pi, np.pi, self.config_shape)

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
        geometry.require_even(self.shape, "the checkerboard Metropolis link update")

    def metropolis_sweep(self, q: np.ndarray, delta: float, key: np.uint64) -> int:
        return metropolis_kernel(q, self.beta, delta, key)

    def check_wolff(self, metropolis_sweeps: int = 0) -> None:
        raise ValueError("the Wolff cluster update is for spin models (xy, phi4), not u1 gauge theory: "
                         "use heatbath, metropolis or hmc")

    def check_heatbath(self) -> None:
        geometry.require_even(self.shape, "the checkerboard heat-bath / over-relaxation link update")

    def heatbath_sweep(self, q: np.ndarray, key: np.uint64) -> None:
        """One heat-bath sweep over all links of q, in place (heatbath_kernel)."""
        (heatbath_kernel_serial if _serial(q) else heatbath_kernel)(q, self.beta, np.uint64(key))

    def overrelax_sweep(self, q: np.ndarray, reverse: bool = False) -> None:
        """One over-relaxation sweep over all links of q, in place (overrelax_kernel); S unchanged."""
        (overrelax_kernel_serial if _serial(q) else overrelax_kernel)(q, reverse)

    def torch_action(self, x):
        """S of a batch x of shape (N, 2, L0, L1), float64 torch, differentiable."""
        import torch

        t0, t1 = x[:, 0], x[:, 1]
        tp = t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1
        return self.beta * (1.0 - torch.cos(tp)).sum(dim=(1, 2))
