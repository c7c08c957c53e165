"""Observables of 2D U(1) gauge theory (PHYSICS.md, "U(1) gauge theory in 2D").

Batches of link angles have shape (N, 2, L0, L1); theta[:, mu] is the link from x to x + mu,
mu = 0 along axis L0 ("time": the Polyakov loops wind along it), mu = 1 along axis L1. All functions
are vectorized over the batch. Definitions: docs/physics.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .derived import Derived
from .stats import Estimate, gamma_method

TWO_PI = 2.0 * math.pi
Q_TOLERANCE = 1e-6  # |Q - round(Q)| allowed before topological_charge refuses a configuration
BATCH_SITES = 1 << 14  # primaries() reads batches of about this many sites (the loop arrays stay in cache)


def _check(configs) -> np.ndarray:
    configs = np.asarray(configs, dtype=np.float64)
    if configs.ndim != 4 or configs.shape[1] != 2:
        raise ValueError(f"U(1) configurations have shape (N, 2, L0, L1), got {configs.shape}")
    return configs


def plaquette_angles(configs) -> np.ndarray:
    """theta_P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x), not wrapped; (N, L0, L1)."""
    t = _check(configs)
    t0, t1 = t[:, 0], t[:, 1]
    return t0 + np.roll(t1, -1, axis=1) - np.roll(t0, -1, axis=2) - t1


def average_plaquette(configs) -> np.ndarray:
    """(1/V) sum_x cos theta_P(x) per configuration; (N,)."""
    return np.cos(plaquette_angles(configs)).mean(axis=(1, 2))


def wrap_symmetric(x: np.ndarray) -> np.ndarray:
    """x mod 2 pi into (-pi, pi] (the wrap of the topological charge)."""
    return x - TWO_PI * np.ceil((x - math.pi) / TWO_PI)


def topological_charge(configs) -> np.ndarray:
    """Q = (1/2pi) sum_x wrap(theta_P(x)), wrap to (-pi, pi]; (N,) int64.

    Q is an integer on the torus (the unwrapped plaquette angles sum to zero); raises
    ValueError if a configuration's Q is further than 1e-6 from an integer."""
    q = wrap_symmetric(plaquette_angles(configs)).sum(axis=(1, 2)) / TWO_PI
    rounded = np.rint(q)
    bad = ~(np.abs(q - rounded) <= Q_TOLERANCE)  # NaN (a NaN or infinite link) counts as bad
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"topological charge of configuration {k} is not an integer: Q = {q[k]!r} "
                         "(are these U(1) link angles on a periodic lattice?)")
    return rounded.astype(np.int64)


def max_loop_size(shape: tuple[int, ...]) -> int:
    """Largest R (and T) of the Wilson loops measured on an L0 x L1 lattice: min(L0, L1) // 2."""
    return min(shape[-2:]) // 2


def _extend(a: np.ndarray, n0: int, n1: int) -> np.ndarray:
    """a (N, L0, L1) periodically extended to (N, L0 + n0, L1 + n1): shifts become slices."""
    a = np.concatenate([a, a[:, :n0]], axis=1)
    return np.concatenate([a, a[:, :, :n1]], axis=2)


def oriented_wilson_loops(configs, a_max: int, b_max: int) -> np.ndarray:
    """w(a, b) = (1/V) sum_x cos(loop angle of the a x b rectangle with corner x, a links along
    axis 0 and b along axis 1), for a = 1..a_max, b = 1..b_max; (N, a_max, b_max).

    loop angle = H_a(x) + V_b(x + a e0) - H_a(x + b e1) - V_b(x), with H_a (V_b) the sum of a (b)
    consecutive links along axis 0 (1) from x. The straight lines are built as running products
    of the link phases e^{i theta} (a prefix product along each axis, one complex product per
    length), and cos(loop angle) = Re[X conj(Y)], X = e^{i (H_a(x) - V_b(x))},
    Y = e^{i (H_a(x + b e1) - V_b(x + a e0))}. w(1, 1) is the average plaquette."""
    t = _check(configs)
    N, _, L0, L1 = t.shape
    if not (1 <= a_max <= L0 and 1 <= b_max <= L1):
        raise ValueError(f"loop sizes up to {a_max} x {b_max} do not fit the {L0} x {L1} lattice")
    u0 = _extend(np.exp(1j * t[:, 0]), a_max, b_max)
    u1 = _extend(np.exp(-1j * t[:, 1]), a_max, b_max)
    # h[a-1] = e^{i H_a} on (L0, L1 + b_max), v[b-1] = e^{-i V_b} on (L0 + a_max, L1)
    h = [u0[:, :L0]]
    for a in range(2, a_max + 1):
        h.append(h[-1] * u0[:, a - 1:a - 1 + L0])
    v = [u1[:, :, :L1]]
    for b in range(2, b_max + 1):
        v.append(v[-1] * u1[:, :, b - 1:b - 1 + L1])
    out = np.empty((N, a_max, b_max))
    for a in range(1, a_max + 1):
        ha = h[a - 1]
        for b in range(1, b_max + 1):
            vb = v[b - 1]
            X = (ha[:, :, :L1] * vb[:, :L0]).reshape(N, 1, L0 * L1)
            Y = (ha[:, :, b:b + L1] * vb[:, a:a + L0]).reshape(N, L0 * L1, 1)
            out[:, a - 1, b - 1] = (X @ Y.conj()).real[:, 0, 0]
    return out / (L0 * L1)


def wilson_loops(configs, R_max: int, T_max: int) -> np.ndarray:
    """W(R, T) per configuration for R = 1..R_max, T = 1..T_max, averaged over all positions and
    both orientations (R along axis 0 and T along axis 1, and the transpose):
    W(R, T) = [w(R, T) + w(T, R)] / 2 with w of ``oriented_wilson_loops``; (N, R_max, T_max)."""
    n = max(R_max, T_max)
    w = oriented_wilson_loops(configs, n, n)
    return 0.5 * (w + w.transpose(0, 2, 1))[:, :R_max, :T_max]


# --------------------------------------------------------------------------- Polyakov loops
def polyakov_phases(configs) -> np.ndarray:
    """Phi(x1) = sum_{t=0}^{L0-1} theta_0(t, x1), the angle of the Polyakov loop P(x1) = prod_t U_0(t, x1)
    = e^{i Phi(x1)} that winds once around the time direction (axis 0); not wrapped; (N, L1).
    Gauge invariant (the transformation telescopes around the periodic time axis)."""
    return _check(configs)[:, 0].sum(axis=1)


def polyakov_loops(configs) -> np.ndarray:
    """P(x1) = e^{i Phi(x1)}; (N, L1) complex."""
    return np.exp(1j * polyakov_phases(configs))


def polyakov_correlator(configs, r_max: int) -> np.ndarray:
    """(1/L1) sum_x1 Re[P(x1) P*(x1 + r)] = (1/L1) sum_x1 cos(Phi(x1) - Phi(x1 + r)) per configuration
    for r = 0..r_max (periodic in x1; r = 0 gives exactly 1); (N, r_max + 1). The product is the loop
    around the L0 x r strip of plaquettes between the two lines, so its expectation is that of a Wilson
    loop of area L0 r (docs/physics.md)."""
    phi = polyakov_phases(configs)
    return np.stack([np.cos(phi - np.roll(phi, -r, axis=1)).mean(axis=1) for r in range(r_max + 1)], axis=1)


# --------------------------------------------------------------------------- charge distribution
@dataclass(frozen=True)
class ChargeDistribution:
    """P(Q): q (the charges), estimates[k] the Gamma-method estimate of P(Q = q[k]) (the mean of the
    indicator series 1[Q_i = q], autocorrelations included); symmetric: P(Q) and P(-Q) averaged."""

    q: np.ndarray
    estimates: tuple[Estimate, ...]
    symmetric: bool = False

    @property
    def p(self) -> np.ndarray:
        return np.array([e.value for e in self.estimates])

    @property
    def error(self) -> np.ndarray:
        return np.array([e.error for e in self.estimates])

    @property
    def tau_int(self) -> np.ndarray:
        return np.array([e.tau_int for e in self.estimates])


def charge_distribution(Q, q_max: int | None = None, symmetric: bool = False, S: float = 2.0,
                        every: int = 1, min_block: int = 0) -> ChargeDistribution:
    """The distribution of the topological charge over a chain, P(Q) for Q = -q_max..q_max (default
    q_max = max |Q| of the chain), each bin the Gamma-method mean of its indicator series
    1[Q_i = q] (so the error includes the autocorrelation of Q). ``symmetric``: the indicator
    (1[Q_i = q] + 1[Q_i = -q]) / 2, an estimate of the C-symmetric P(Q) = P(-Q) with a smaller error.
    A bin the chain never visits is 0 with error 0 (the Gamma method of a constant series).
    min_block > 0 is passed on to the Gamma method (sticky chains, as in ``analysis.estimate_all``)."""
    Q = np.asarray(Q)
    if Q.ndim != 1 or len(Q) < 2:
        raise ValueError("Q must be a 1-d series of at least 2 charges")
    if not np.array_equal(Q, np.rint(Q)):
        raise ValueError("Q must hold integers")
    Q = Q.astype(np.int64)
    q_max = int(np.abs(Q).max()) if q_max is None else int(q_max)
    qs = np.arange(-q_max, q_max + 1)
    ests = []
    for q in qs:
        ind = (Q == q).astype(np.float64)
        if symmetric:
            ind = 0.5 * (ind + (Q == -q))
        opts = {"min_block": int(min_block)} if min_block else {}
        ests.append(gamma_method(ind, S=S, every=every, name=f"P(Q={q})", **opts))
    return ChargeDistribution(qs, tuple(ests), symmetric)


# --------------------------------------------------------------------------- analysis
def primaries(configs, theory, batch: int | None = None) -> dict[str, np.ndarray]:
    """Per-configuration series, each (N,): "P" (average plaquette), "W(R,T)" for 1 <= R, T <= L/2
    (L = min(L0, L1)), "Q" (int64), "Q^2", the Polyakov loop averaged over x1, "Re(Poly)" and
    "Im(Poly)" (both 0 in expectation), and the Polyakov-loop correlator "PolyCorr(r=0)" ..
    "PolyCorr(r=L1/2)" (``polyakov_correlator``). ``configs`` may be any sliceable array (e.g. an
    h5py dataset); it is read in batches of about BATCH_SITES sites."""
    L0, L1 = theory.shape
    n_max = max_loop_size(theory.shape)
    batch = batch or max(1, BATCH_SITES // (L0 * L1))
    N = len(configs)
    P, Q, W = np.empty(N), np.empty(N, dtype=np.int64), np.empty((N, n_max, n_max))
    poly, pc = np.empty(N, dtype=np.complex128), np.empty((N, L1 // 2 + 1))
    for i in range(0, N, batch):
        c = _check(configs[i:i + batch])
        if c.shape[2:] != (L0, L1):
            raise ValueError(f"configurations of shape {c.shape[1:]} do not match the theory's lattice {theory.shape}")
        P[i:i + batch] = average_plaquette(c)
        Q[i:i + batch] = topological_charge(c)
        W[i:i + batch] = wilson_loops(c, n_max, n_max)
        poly[i:i + batch] = polyakov_loops(c).mean(axis=1)
        pc[i:i + batch] = polyakov_correlator(c, L1 // 2)
    out = {"P": P}
    for R in range(1, n_max + 1):
        for T in range(1, n_max + 1):
            out[f"W({R},{T})"] = W[:, R - 1, T - 1]
    out["Q"] = Q
    out["Q^2"] = (Q * Q).astype(np.float64)
    out["Re(Poly)"], out["Im(Poly)"] = poly.real.copy(), poly.imag.copy()
    out.update({f"PolyCorr(r={r})": pc[:, r] for r in range(L1 // 2 + 1)})
    return out


def creutz_ratio(w_rt, w_r1t1, w_rt1, w_r1t):
    """chi(R, T) = -ln[W(R,T) W(R-1,T-1) / (W(R,T-1) W(R-1,T))]."""
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where noise makes the ratio <= 0
        return -np.log(w_rt * w_r1t1 / (w_rt1 * w_r1t))


def derived(theory) -> list[Derived]:
    """Creutz ratios chi(R, T) for 2 <= R, T <= L/2 and chi_t = <Q^2>/V."""
    n_max = max_loop_size(theory.shape)
    V = theory.shape[0] * theory.shape[1]
    out = [Derived(f"chi({R},{T})", (f"W({R},{T})", f"W({R - 1},{T - 1})", f"W({R},{T - 1})", f"W({R - 1},{T})"),
                   creutz_ratio, "Creutz ratio -ln[W(R,T) W(R-1,T-1) / (W(R,T-1) W(R-1,T))]")
           for R in range(2, n_max + 1) for T in range(2, n_max + 1)]
    out.append(Derived("chi_t", ("Q^2",), lambda q2: q2 / V, "topological susceptibility <Q^2>/V"))
    return out
