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
from .fastmath import (FMA, FMA_SUM, axpy, axpy_lanes, fcos, fsin, kick_drift_tables, lane_block, lanes_to_rows,
                       per_chain, rows_to_lanes, run_parallel, use_lanes, work_array, wrap_angle)
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


@njit(cache=True, inline="always")
def _metropolis_row(t, beta, delta, key, mu, parity, i):
    """Metropolis updates of the links of class (mu, parity) in row x0 = i (metropolis_kernel);
    returns the accepted count."""
    L0, L1 = t.shape[1], t.shape[2]
    V = L0 * L1
    ip = i + 1 if i + 1 < L0 else 0
    im = i - 1 if i > 0 else L0 - 1
    accepted = 0
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


@njit(cache=True, parallel=True, fastmath=FMA)
def metropolis_kernel(t, beta, delta, key):
    """One sweep over all links in 4 classes (mu, parity of x0 + x1); links of one class
    share no plaquette, so a class is updated in parallel. 2 uniforms per link, counter
    2 l + j with l the flat link index in (2, L0, L1).

    mu = 0: theta_P(x) = theta + a, theta_P(x - e1) = b - theta
    mu = 1: theta_P(x) = c - theta, theta_P(x - e0) = theta + e
    dS = -beta [cos(new side 1) + cos(new side 2) - cos(old side 1) - cos(old side 2)].
    """
    accepted = 0
    for mu in range(2):
        for parity in range(2):
            for i in prange(t.shape[1]):
                accepted += _metropolis_row(t, beta, delta, key, mu, parity, i)
    return accepted


@njit(cache=True, fastmath=FMA)
def metropolis_kernel_serial(t, beta, delta, key):
    """metropolis_kernel on one thread (the links of a class are independent, so the same result bit
    for bit); for the chain-set kernels, which run the chains in parallel instead."""
    accepted = 0
    for mu in range(2):
        for parity in range(2):
            for i in range(t.shape[1]):
                accepted += _metropolis_row(t, beta, delta, key, mu, parity, i)
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


# --------------------------------------------------------------------------- chain sets
# Kernels over a leading axis of rows: row k of ts (K, 2, L0, L1) is one configuration (a chain of a
# chain set), done with its own parameters by the single-configuration kernel above (``*_rows``:
# serially, ``*_rows_parallel``: rows in parallel) or, for the kicks of short rows, by a copy of its
# arithmetic that evaluates the same expressions for a block of chains at once (``*_lanes``,
# fastmath.py: chain lanes). Either way row k is bit for bit what the single-configuration kernel gives
# on its own, whatever the thread count or the other rows (tests/samplers/test_chain_kernels.py).
@njit(cache=True)
def _kick_drift(t, p, kicks, drifts, n_kicks, beta):
    """p += kicks[0] F(t); then for j = 1 .. n_kicks - 1: t += drifts[j - 1] p, p += kicks[j] F(t)."""
    sp = np.empty((2, t.shape[2]))
    tf = t.reshape(-1)
    pf = p.reshape(-1)
    for j in range(n_kicks):
        if j > 0:
            axpy(tf, pf, drifts[j - 1])
        kick_kernel(t, p, kicks[j], beta, sp)


@njit(cache=True)
def kick_drift_rows(ts, ps, kicks, drifts, n_kicks, beta):
    for k in range(ts.shape[0]):
        _kick_drift(ts[k], ps[k], kicks[k], drifts[k], n_kicks[k], beta)


@njit(cache=True, parallel=True)
def kick_drift_rows_parallel(ts, ps, kicks, drifts, n_kicks, beta):
    for k in prange(ts.shape[0]):
        _kick_drift(ts[k], ps[k], kicks[k], drifts[k], n_kicks[k], beta)


@njit(cache=True, fastmath=FMA)
def _kick_lanes(T, P, eb, S, m):
    """kick_kernel on the lanes b < m of T, P (2, L0, L1, B) (fastmath.py: chain lanes): P += eb[b] F(T),
    each sin theta_P and each update the expression of kick_kernel, so lane b gets kick_kernel's bits.
    S: scratch (L0, L1, B) for sin theta_P."""
    L0, L1 = T.shape[1], T.shape[2]
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            for b in range(m):
                S[i, j, b] = fsin(T[0, i, j, b] + T[1, ip, j, b] - T[0, i, jp, b] - T[1, i, j, b])
    for i in range(L0):
        im = i - 1 if i > 0 else L0 - 1
        for j in range(L1):
            jm = j - 1 if j > 0 else L1 - 1
            for b in range(m):
                P[0, i, j, b] += eb[b] * (S[i, jm, b] - S[i, j, b])
            for b in range(m):
                P[1, i, j, b] += eb[b] * (S[i, j, b] - S[im, j, b])


@njit(cache=True)
def _kick_drift_lanes(ts, ps, chains, kicks, drifts, n_kicks, beta, work):
    """_kick_drift of the chains ``chains`` (sorted by decreasing n_kicks, so the chains still running
    at kick j are the first m) in lanes layout; ts, ps (K, 2, L0, L1), changed in place; work: scratch of
    >= 5 L0 L1 B numbers (LANE_WORK)."""
    B = chains.size
    L0, L1 = ts.shape[2], ts.shape[3]
    n = 2 * L0 * L1 * B
    T = work[:n].reshape((2, L0, L1, B))
    P = work[n:2 * n].reshape((2, L0, L1, B))
    S = work[2 * n:2 * n + L0 * L1 * B].reshape((L0, L1, B))
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
        _kick_lanes(T, P, c, S, m)
    lanes_to_rows(t2, chains, ts.reshape(ts.shape[0], -1))
    lanes_to_rows(p2, chains, ps.reshape(ps.shape[0], -1))


#: numbers of scratch per link and chain of _kick_drift_lanes (T, P: 2 L0 L1 each, S: L0 L1)
LANE_WORK = 2.5


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


#: serial cost per link of each kernel (ns, the 2-core VM), for fastmath.run_parallel
COST_NS = {"action": 2, "kick": 3, "kick lanes": 0.5, "metropolis": 40, "heatbath": 150, "overrelax": 50}


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
        object.__setattr__(self, "_work", {})  # chain-set scratch kept between calls (fastmath.work_array)
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

    def ordered_config(self, rng: np.random.Generator) -> np.ndarray:
        """The ordered start: the cold configuration (all angles 0); draws nothing from ``rng``."""
        return np.zeros(self.config_shape)

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
        geometry.require_even(self.shape, "the checkerboard Metropolis link update")

    def metropolis_sweep(self, q: np.ndarray, delta: float, key: np.uint64) -> int:
        return (metropolis_kernel_serial if _serial(q) else metropolis_kernel)(q, self.beta, delta, key)

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

    # -- chain sets: row k of qs (K, 2, L0, L1) is a configuration; each method is, bit for bit, the
    #    single-configuration method on every row with that row's parameters (rows serially or in
    #    parallel by the work, fastmath.run_parallel: the result is the same)
    def _chains(self, qs: np.ndarray) -> np.ndarray:
        if not (isinstance(qs, np.ndarray) and qs.dtype == np.float64 and qs.flags.c_contiguous
                and qs.shape[1:] == self.config_shape):
            raise ValueError(f"u1 chain kernels need a C-contiguous float64 array of shape (K, *{self.config_shape}), "
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
        """S of a batch x of shape (N, 2, L0, L1), float64 torch, differentiable."""
        import torch

        t0, t1 = x[:, 0], x[:, 1]
        tp = t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1
        return self.beta * (1.0 - torch.cos(tp)).sum(dim=(1, 2))
