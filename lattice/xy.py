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
from .fastmath import (FMA, FMA_SUM, axpy, axpy_lanes, fcos, fsin, kick_drift_tables, lane_block, lanes_to_rows,
                       per_chain, rows_to_lanes, run_parallel, use_lanes, work_array, wrap_angle)
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


@njit(cache=True, inline="always")
def _metropolis_row(t, c, s, beta, delta, key, parity, i):
    """Metropolis updates of the sites of colour parity in row i (metropolis_kernel); c, s = cos, sin
    of t, kept current. Returns the accepted count."""
    L0, L1 = t.shape
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    accepted = 0
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
            accepted += _metropolis_row(t, c, s, beta, delta, key, parity, i)
    return accepted


@njit(cache=True, fastmath=FMA)
def metropolis_kernel_serial(t, beta, delta, key):
    """metropolis_kernel on one thread (the sites of a colour are independent, so the same result bit
    for bit); for the chain-set kernels, which run the chains in parallel instead."""
    L0, L1 = t.shape
    cs = np.empty((2, L0, L1))
    _cos_sin(t, cs)
    c = cs[0]
    s = cs[1]
    accepted = 0
    for parity in range(2):
        for i in range(L0):
            accepted += _metropolis_row(t, c, s, beta, delta, key, parity, i)
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


# --------------------------------------------------------------------------- chain sets
# Kernels over a leading axis of rows: row k of ts (K, L0, L1) is one configuration (a chain of a
# chain set), done with its own parameters by the single-configuration kernel above (``*_rows``:
# serially, ``*_rows_parallel``: rows in parallel) or, for the kicks of short rows, by a copy of its
# arithmetic that evaluates the same expressions for a block of chains at once (``*_lanes``,
# fastmath.py: chain lanes). Either way row k is bit for bit what the single-configuration kernel gives
# on its own, whatever the thread count or the other rows (tests/samplers/test_chain_kernels.py).
@njit(cache=True)
def _kick_drift(t, p, kicks, drifts, n_kicks, beta):
    """p += kicks[0] F(t); then for j = 1 .. n_kicks - 1: t += drifts[j - 1] p, p += kicks[j] F(t)."""
    cs = np.empty((2,) + t.shape)
    tf = t.reshape(-1)
    pf = p.reshape(-1)
    for j in range(n_kicks):
        if j > 0:
            axpy(tf, pf, drifts[j - 1])
        kick_kernel(t, p, kicks[j], beta, cs)


@njit(cache=True)
def kick_drift_rows(ts, ps, kicks, drifts, n_kicks, beta):
    for k in range(ts.shape[0]):
        _kick_drift(ts[k], ps[k], kicks[k], drifts[k], n_kicks[k], beta)


@njit(cache=True, parallel=True)
def kick_drift_rows_parallel(ts, ps, kicks, drifts, n_kicks, beta):
    for k in prange(ts.shape[0]):
        _kick_drift(ts[k], ps[k], kicks[k], drifts[k], n_kicks[k], beta)


@njit(cache=True, fastmath=FMA)
def _kick_lanes(T, P, eb, CS, m):
    """kick_kernel on the lanes b < m of T, P (L0, L1, B) (fastmath.py: chain lanes): P += eb[b] F(T),
    each cos, sin and update the expression of kick_kernel, so lane b gets kick_kernel's bits.
    CS: scratch (2, L0, L1, B) for cos and sin of T."""
    L0, L1 = T.shape[0], T.shape[1]
    for i in range(L0):
        for j in range(L1):
            for b in range(m):
                CS[0, i, j, b] = fcos(T[i, j, b])
                CS[1, i, j, b] = fsin(T[i, j, b])
    c = CS[0]
    s = CS[1]
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        im = i - 1 if i > 0 else L0 - 1
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            jm = j - 1 if j > 0 else L1 - 1
            for b in range(m):
                sc = c[ip, j, b] + c[im, j, b] + c[i, jp, b] + c[i, jm, b]
                ss = s[ip, j, b] + s[im, j, b] + s[i, jp, b] + s[i, jm, b]
                P[i, j, b] += eb[b] * (c[i, j, b] * ss - s[i, j, b] * sc)


@njit(cache=True)
def _kick_drift_lanes(ts, ps, chains, kicks, drifts, n_kicks, beta, work):
    """_kick_drift of the chains ``chains`` (sorted by decreasing n_kicks, so the chains still running
    at kick j are the first m) in lanes layout; ts, ps (K, L0, L1), changed in place; work: scratch of
    >= 4 L0 L1 B numbers (LANE_WORK)."""
    B = chains.size
    L0, L1 = ts.shape[1], ts.shape[2]
    n = L0 * L1 * B
    T = work[:n].reshape((L0, L1, B))
    P = work[n:2 * n].reshape((L0, L1, B))
    CS = work[2 * n:4 * n].reshape((2, L0, L1, B))
    c = np.empty(B)
    t2, p2 = T.reshape(-1, B), P.reshape(-1, B)
    rows_to_lanes(ts.reshape(ts.shape[0], -1), chains, t2)
    rows_to_lanes(ps.reshape(ps.shape[0], -1), chains, p2)
    m = B
    for j in range(n_kicks[chains[0]] if B else 0):
        while m > 0 and n_kicks[chains[m - 1]] <= j:
            m -= 1
        if j > 0:
            for b in range(m):
                c[b] = drifts[chains[b], j - 1]
            axpy_lanes(t2, p2, c, m)
        for b in range(m):
            c[b] = kicks[chains[b], j] * beta  # kick_kernel's eb = eps * beta
        _kick_lanes(T, P, c, CS, m)
    lanes_to_rows(t2, chains, ts.reshape(ts.shape[0], -1))
    lanes_to_rows(p2, chains, ps.reshape(ps.shape[0], -1))


#: numbers of scratch per site and chain of _kick_drift_lanes (T, P: L0 L1 each, CS: 2 L0 L1)
LANE_WORK = 4


@njit(cache=True)
def kick_drift_lanes(ts, ps, order, block, kicks, drifts, n_kicks, beta, work):
    """The blocks of ``block`` chains of ``order`` one after the other (work: (1, W) scratch)."""
    for start in range(0, order.size, block):
        _kick_drift_lanes(ts, ps, order[start:start + block], kicks, drifts, n_kicks, beta, work[0])


@njit(cache=True, parallel=True)
def kick_drift_lanes_parallel(ts, ps, order, block, kicks, drifts, n_kicks, beta, work):
    """The blocks in parallel (work: (number of blocks, W) scratch)."""
    for k in prange((order.size + block - 1) // block):
        start = k * block
        _kick_drift_lanes(ts, ps, order[start:min(start + block, order.size)], kicks, drifts, n_kicks, beta,
                          work[k])


@njit(cache=True)
def action_rows(ts, beta):
    """action_batch_kernel on one thread."""
    out = np.empty(ts.shape[0])
    for k in range(ts.shape[0]):
        out[k] = action_kernel(ts[k], beta)
    return out


@njit(cache=True)
def metropolis_rows(ts, beta, deltas, keys, accepted):
    for k in range(ts.shape[0]):
        accepted[k] = metropolis_kernel_serial(ts[k], beta, deltas[k], keys[k])


@njit(cache=True, parallel=True)
def metropolis_rows_parallel(ts, beta, deltas, keys, accepted):
    for k in prange(ts.shape[0]):
        accepted[k] = metropolis_kernel_serial(ts[k], beta, deltas[k], keys[k])


@njit(cache=True)
def heatbath_rows(ts, beta, keys):
    for k in range(ts.shape[0]):
        heatbath_kernel_serial(ts[k], beta, keys[k])


@njit(cache=True, parallel=True)
def heatbath_rows_parallel(ts, beta, keys):
    for k in prange(ts.shape[0]):
        heatbath_kernel_serial(ts[k], beta, keys[k])


@njit(cache=True)
def overrelax_rows(ts, n_sweeps, reverse):
    for k in range(ts.shape[0]):
        for _ in range(n_sweeps):
            overrelax_kernel_serial(ts[k], reverse)


@njit(cache=True, parallel=True)
def overrelax_rows_parallel(ts, n_sweeps, reverse):
    for k in prange(ts.shape[0]):
        for _ in range(n_sweeps):
            overrelax_kernel_serial(ts[k], reverse)


#: serial cost per site of each kernel (ns, the 2-core VM), for fastmath.run_parallel
COST_NS = {"action": 3, "kick": 3, "kick lanes": 0.7, "metropolis": 40, "heatbath": 140, "overrelax": 40}


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
        object.__setattr__(self, "_work", {})  # chain-set scratch kept between calls (fastmath.work_array)
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

    def ordered_config(self, rng: np.random.Generator) -> np.ndarray:
        """The ordered start: the cold configuration (all angles 0); draws nothing from ``rng``."""
        return np.zeros(self.shape)

    def action(self, q: np.ndarray) -> float:
        return action_kernel(q, self.beta)

    def action_batch(self, qs: np.ndarray) -> np.ndarray:
        """S of each configuration of qs, bit for bit ``action`` of each (in parallel for a large batch)."""
        return (action_batch_kernel if self._parallel("action", qs) else action_rows)(qs, self.beta)

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
        return (metropolis_kernel_serial if _serial(q) else metropolis_kernel)(q, self.beta, delta, key)

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

    # -- chain sets: row k of qs (K, L0, L1) is a configuration; each method is, bit for bit, the
    #    single-configuration method on every row with that row's parameters (rows serially or in
    #    parallel by the work, fastmath.run_parallel: the result is the same)
    def _chains(self, qs: np.ndarray) -> np.ndarray:
        if not (isinstance(qs, np.ndarray) and qs.dtype == np.float64 and qs.flags.c_contiguous
                and qs.shape[1:] == self.config_shape):
            raise ValueError(f"xy chain kernels need a C-contiguous float64 array of shape (K, *{self.config_shape}), "
                             f"got {getattr(qs, 'shape', type(qs))}")
        return qs

    def _parallel(self, kernel: str, qs: np.ndarray, repeats: int = 1) -> bool:
        return run_parallel(COST_NS[kernel] * qs.size * repeats)

    def kick_drift_chains(self, qs: np.ndarray, ps: np.ndarray, kicks: np.ndarray, drifts: np.ndarray,
                          n_kicks: np.ndarray) -> None:
        """Row k: p += kicks[k, 0] F(q), then for j = 1 .. n_kicks[k] - 1: q += drifts[k, j - 1] p and
        p += kicks[k, j] F(q) (the kicks of ``kick``, the drift without FMA), in place."""
        qs, ps = self._chains(qs), self._chains(ps)
        kicks, drifts, n_kicks = kick_drift_tables(len(qs), kicks, drifts, n_kicks)
        if ps.shape != qs.shape:
            raise ValueError(f"kick_drift_chains: momenta {ps.shape} for configurations {qs.shape}")
        if use_lanes(self.shape[1]):  # short rows: the chains in lanes (several times faster)
            order = np.argsort(-n_kicks, kind="stable")
            block = lane_block(self.n_dof)
            parallel = len(qs) > block and self._parallel("kick lanes", qs, n_kicks.max(initial=0))
            n_work = -(-len(qs) // block) if parallel else 1
            work = work_array(self._work, (n_work, int(LANE_WORK * self.n_dof) * block))
            (kick_drift_lanes_parallel if parallel else kick_drift_lanes)(qs, ps, order, block, kicks, drifts,
                                                                          n_kicks, self.beta, work)
            return
        parallel = self._parallel("kick", qs, n_kicks.max(initial=0))
        (kick_drift_rows_parallel if parallel else kick_drift_rows)(qs, ps, kicks, drifts, n_kicks, self.beta)

    def metropolis_sweep_chains(self, qs: np.ndarray, deltas: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``metropolis_sweep(qs[k], deltas[k], keys[k])`` for every row; (K,) accepted counts."""
        accepted = np.empty(len(qs), dtype=np.int64)
        kernel = metropolis_rows_parallel if self._parallel("metropolis", qs) else metropolis_rows
        kernel(self._chains(qs), self.beta, per_chain(deltas, len(qs), np.float64),
               per_chain(keys, len(qs), np.uint64), accepted)
        return accepted

    def heatbath_sweep_chains(self, qs: np.ndarray, keys: np.ndarray) -> None:
        """``heatbath_sweep(qs[k], keys[k])`` for every row, in place."""
        kernel = heatbath_rows_parallel if self._parallel("heatbath", qs) else heatbath_rows
        kernel(self._chains(qs), self.beta, per_chain(keys, len(qs), np.uint64))

    def overrelax_sweep_chains(self, qs: np.ndarray, n_sweeps: int = 1, reverse: bool = False) -> None:
        """``n_sweeps`` times ``overrelax_sweep(qs[k], reverse)`` for every row, in place."""
        kernel = overrelax_rows_parallel if self._parallel("overrelax", qs, n_sweeps) else overrelax_rows
        kernel(self._chains(qs), int(n_sweeps), bool(reverse))

    def torch_action(self, x):
        """S of a batch x of shape (N, L0, L1), float64 torch, differentiable."""
        import torch

        links = sum(torch.cos(torch.roll(x, -1, dims=mu) - x) for mu in (1, 2))
        return -self.beta * links.sum(dim=(1, 2))
