"""Diagnostics of importance weights w = p / q of a learned proposal (PHYSICS.md, Statistics).

log_w = log_p - log_q with log_p = -S unnormalized, so w is known up to a constant factor,
which all quantities here are independent of.
"""
from __future__ import annotations

import numpy as np
from numba import njit


def ess_fraction(log_w) -> float:
    """ESS / N = (sum w)^2 / (N sum w^2), computed stably from log w (1 for a perfect model)."""
    lw = np.asarray(log_w, dtype=np.float64)
    lw = lw[np.isfinite(lw)] if np.isfinite(lw).any() else lw
    if lw.size == 0:
        return 0.0
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / (len(np.asarray(log_w)) * (w * w).sum()))


def imh_acceptance(log_w, rng: np.random.Generator | None = None) -> float:
    """Acceptance rate of an independence Metropolis-Hastings chain that proposes the samples in
    order: accept x' with min(1, w(x') / w(x)). The expected acceptance min(1, w'/w) is averaged
    (no random draw needed); the chain moves with a draw from ``rng`` (default seed 0)."""
    lw = np.ascontiguousarray(log_w, dtype=np.float64)
    if lw.size < 2:
        return float("nan")
    rng = np.random.default_rng(0) if rng is None else rng
    return _imh_acceptance(lw, rng.random(lw.size))


@njit(cache=True)
def _imh_acceptance(lw, u):
    current = lw[0]
    total = 0.0
    for i in range(1, lw.size):
        a = 1.0 if lw[i] >= current else np.exp(lw[i] - current)
        total += a
        if u[i] < a:
            current = lw[i]
    return total / (lw.size - 1)
