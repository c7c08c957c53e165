"""2D XY model (O(2) spins as angles theta_x in [-pi, pi)), PHYSICS.md:

    S[theta] = -beta sum_x sum_mu cos(theta_{x+mu} - theta_x)

HMC force F_x = -dS/dtheta_x = beta sum_{y nn x} sin(theta_y - theta_x)
             = beta (cos theta_x sum_y sin theta_y - sin theta_x sum_y cos theta_y),
so the kernels take one sin and one cos per site instead of one per link.

Wolff single-cluster update (wolff_kernel; U. Wolff, PRL 62 (1989) 361): reflect the spins of a
cluster about the line perpendicular to a random axis r; bonds between neighbours with probability
1 - exp(min(0, -2 beta (s_x . r)(s_y . r))), grown by lattice/cluster.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from . import geometry
from .cluster import AXIS_COUNTER, flat_view, grow_cluster, scratch_of, seed_site
from .fastmath import FMA, FMA_SUM, fcos, fsin, wrap_angle
from .rng import uniform
from .vonmises import draw as vonmises_draw


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


@njit(cache=True, inline="always")
def _heatbath_row(t, c, s, beta, key, parity, i):
    """Heat-bath draws of the sites of colour parity in row i (heatbath_kernel); c, s = cos, sin of t."""
    L0, L1 = t.shape
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    for j in range((i + parity) % 2, L1, 2):
        jp = j + 1 if j + 1 < L1 else 0
        jm = j - 1 if j > 0 else L1 - 1
        hx = c[ip, j] + c[im, j] + c[i, jp] + c[i, jm]
        hy = s[ip, j] + s[im, j] + s[i, jp] + s[i, jm]
        d = vonmises_draw(beta * np.sqrt(hx * hx + hy * hy), key, np.int64(i * L1 + j))
        new = wrap_angle(np.arctan2(hy, hx) + d)
        t[i, j] = new
        c[i, j] = fcos(new)
        s[i, j] = fsin(new)


@njit(cache=True, parallel=True)
def heatbath_kernel(t, beta, key):
    """Checkerboard heat-bath sweep: each site drawn from its conditional given its neighbours,

        p(theta_x | rest) ~ exp(beta |h| cos(theta_x - arg h)),   h = sum_{y nn x} (cos theta_y, sin theta_y),

    (S = -beta Re sum_y e^{i (theta_y - theta_x)} for the terms holding theta_x), i.e.
    theta_x = arg h + d with d ~ VM(0, beta |h|) by Best-Fisher (lattice/vonmises.py), stream = flat
    site index. Even sites, then odd ones; a colour's sites share no neighbour, so each colour is
    updated in parallel and the sweep is a function of (t, key) alone. Even L only.
    """
    cs = np.empty((2,) + t.shape)
    _cos_sin(t, cs)
    for parity in range(2):
        for i in prange(t.shape[0]):
            _heatbath_row(t, cs[0], cs[1], beta, key, parity, i)


@njit(cache=True)
def heatbath_kernel_serial(t, beta, key):
    """heatbath_kernel on one thread, without the start-up of its parallel loops (which dominates a
    sweep of a small lattice); the same arithmetic, so the same result bit for bit."""
    cs = np.empty((2,) + t.shape)
    _cos_sin(t, cs)
    for parity in range(2):
        for i in range(t.shape[0]):
            _heatbath_row(t, cs[0], cs[1], beta, key, parity, i)


@njit(cache=True, inline="always")
def _overrelax_row(t, c, s, parity, i):
    """Over-relaxation of the sites of colour parity in row i (overrelax_kernel)."""
    L0, L1 = t.shape
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    for j in range((i + parity) % 2, L1, 2):
        jp = j + 1 if j + 1 < L1 else 0
        jm = j - 1 if j > 0 else L1 - 1
        hx = c[ip, j] + c[im, j] + c[i, jp] + c[i, jm]
        hy = s[ip, j] + s[im, j] + s[i, jp] + s[i, jm]
        new = wrap_angle(2.0 * np.arctan2(hy, hx) - t[i, j])
        t[i, j] = new
        c[i, j] = fcos(new)
        s[i, j] = fsin(new)


@njit(cache=True, parallel=True)
def overrelax_kernel(t, reverse):
    """Checkerboard over-relaxation sweep: theta_x -> 2 arg h - theta_x (wrapped), the reflection of
    the spin about its local field h (heatbath_kernel). beta |h| cos(theta_x - arg h) is unchanged, so
    S is preserved (to rounding): a microcanonical, deterministic update, each colour's step an
    involution. Even sites then odd ones, or (reverse) odd then even: the reverse sweep undoes the
    forward one. Not ergodic alone; mixed with heat-bath or Metropolis sweeps (samplers/heatbath.py).
    """
    cs = np.empty((2,) + t.shape)
    _cos_sin(t, cs)
    for k in range(2):
        parity = 1 - k if reverse else k
        for i in prange(t.shape[0]):
            _overrelax_row(t, cs[0], cs[1], parity, i)


@njit(cache=True)
def overrelax_kernel_serial(t, reverse):
    """overrelax_kernel on one thread (as heatbath_kernel_serial): the same result bit for bit."""
    cs = np.empty((2,) + t.shape)
    _cos_sin(t, cs)
    for k in range(2):
        parity = 1 - k if reverse else k
        for i in range(t.shape[0]):
            _overrelax_row(t, cs[0], cs[1], parity, i)


@njit(cache=True, fastmath=FMA)
def wolff_kernel(t, nbr, beta, key, sites, mark, proj):
    """One Wolff single-cluster update (U. Wolff, PRL 62 (1989) 361) of the flat field t (V,), in place.

    The reflection axis r = (cos phi, sin phi) has phi = pi u(key, 1) (r and -r give the same move);
    the projections are p_x = s_x . r = cos(theta_x - phi). Since s_x . s_y changes by
    -2 (s_x . r)(s_y . r) when only s_x is reflected, S = -beta sum cos(theta_{x+mu} - theta_x) is the
    embedded Ising action with J = beta, and the cluster grows with
    P_bond = 1 - exp(min(0, -2 beta (s_x . r)(s_y . r))) from the seed u(key, 0) (lattice/cluster.py:
    counters, link by link). Its spins are reflected, s -> s - 2 (s . r) r, i.e.
    theta -> wrap(2 phi + pi - theta). Returns the cluster size; sites[:n] holds the cluster.
    """
    V = t.shape[0]
    seed = seed_site(key, V)
    phi = np.pi * uniform(key, AXIS_COUNTER)
    for x in range(V):
        proj[x] = fcos(t[x] - phi)
    n = grow_cluster(proj, nbr, beta, key, seed, sites, mark)
    c = 2.0 * phi + np.pi
    for i in range(n):
        x = sites[i]
        t[x] = wrap_angle(c - t[x])
        mark[x] = False
    return n


#: heat-bath / over-relaxation sweeps of fewer variables run serially: there the start-up of a parallel
#: loop (~8 us per loop with 2 threads on the 2-core VM of benchmarks/RESULTS.md) outweighs the work
SERIAL_BELOW = 512


def _serial(q: np.ndarray) -> bool:
    """Run a sweep of q with the serial kernel (bit-identical to the parallel one)?"""
    return q.size < SERIAL_BELOW or numba.get_num_threads() == 1


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

    def check_wolff(self, metropolis_sweeps: int = 0) -> None:
        """The Wolff update runs on any XY lattice, alone or mixed with Metropolis sweeps."""
        if metropolis_sweeps:
            self.check_metropolis()

    def wolff_update(self, q: np.ndarray, key: np.uint64) -> int:
        """One Wolff single-cluster update of q in place (wolff_kernel); returns the cluster size."""
        s = scratch_of(self)
        return wolff_kernel(flat_view(q), geometry.neighbours(self.shape), self.beta, np.uint64(key),
                            s.sites, s.mark, s.proj)

    def check_heatbath(self) -> None:
        geometry.require_even(self.shape, "the checkerboard heat-bath / over-relaxation update")

    def heatbath_sweep(self, q: np.ndarray, key: np.uint64) -> None:
        """One checkerboard heat-bath sweep of q in place (heatbath_kernel)."""
        (heatbath_kernel_serial if _serial(q) else heatbath_kernel)(q, self.beta, np.uint64(key))

    def overrelax_sweep(self, q: np.ndarray, reverse: bool = False) -> None:
        """One checkerboard over-relaxation sweep of q in place (overrelax_kernel); S unchanged."""
        (overrelax_kernel_serial if _serial(q) else overrelax_kernel)(q, reverse)

    def torch_action(self, x):
        """S of a batch x of shape (N, L0, L1), float64 torch, differentiable."""
        import torch

        links = sum(torch.cos(torch.roll(x, -1, dims=mu) - x) for mu in (1, 2))
        return -self.beta * links.sum(dim=(1, 2))
