"""Exact von Mises draws for Numba kernels (heat bath of XY spins and U(1) links).

The von Mises distribution VM(mu, kappa) on the circle has the density

    p(theta) = exp(kappa cos(theta - mu)) / (2 pi I_0(kappa)),    kappa >= 0.

``draw(kappa, key, stream)`` returns d ~ VM(0, kappa) in [-pi, pi] by the rejection algorithm of
D. J. Best and N. I. Fisher, "Efficient simulation of the von Mises distribution",
Appl. Statist. 28 (1979) 152: with

    tau = 1 + sqrt(1 + 4 kappa^2),  rho = (tau - sqrt(2 tau)) / (2 kappa),  r = (1 + rho^2) / (2 rho),

repeat: z = cos(pi u1), f = (1 + r z) / (r + z), c = kappa (r - f); accept if c (2 - c) > u2 or
ln(c / u2) + 1 - c >= 0; then d = sign(u3 - 1/2) arccos(f). It is exact (a wrapped-Cauchy envelope,
the accepted f has exactly the von Mises law; no approximation but float64 rounding) and accepts
a round with probability >= 0.65 for every kappa. The quantities that cancel catastrophically in
the textbook form (at large kappa r -> 1 and f -> 1) are rewritten as sums of positive terms:

    1 - rho = (sqrt(2 tau) - 1 - 1/(2 kappa + sqrt(1 + 4 kappa^2))) / (2 kappa)   (kappa >= 1),
    r - 1 = (1 - rho)^2 / (2 rho),  1 - z = 2 sin^2(pi u1 / 2),  1 + z = 2 cos^2(pi u1 / 2),
    r + z = (r - 1) + (1 + z),  c = kappa (r - 1)(r + 1) / (r + z),  1 - f = (r - 1)(1 - z) / (r + z),
    |d| = 2 arcsin(sqrt((1 - f) / 2)),

so large kappa (r -> 1) keeps full relative precision in d ~ 1/sqrt(kappa), and small kappa
(rho = kappa/2 + ..., computed as in samplers/autoregressive/conditionals.py) does not divide zero by
zero. For kappa < KAPPA_UNIFORM (1e-100, where exp(kappa cos) differs from 1 by less than the 2^-53
resolution of the uniforms) d = pi (2 u - 1), uniform in (-pi, pi]; kappa = 0 is exactly uniform.

Random numbers (lattice/rng.py): a sweep has one 64-bit key, and each site or link of the sweep
is one *stream* s (its flat index). Stream s consumes the uniforms u(key, s * STRIDE + k),
k = 0, 1, 2, ... (3 per round): disjoint counter ranges for different sites, so a sweep's
result does not depend on the order or the threads that visit its sites. STRIDE = 2^32 leaves room for
2^32 / 3 ~ 1.4e9 rounds; needing more has probability < 0.35^(1.4e9), i.e. never, but the loop
is unbounded all the same: a stream that used up its range continues on its own fallback key
mix64(mix64(key ^ FALLBACK) + s * GAMMA) with counters 0, 1, ... (a SplitMix64 sequence of an
unrelated key: it meets another stream's counters only with probability ~ 2^-64 per uniform, so
the draw stays exact; tests/lattice/test_vonmises.py exercises it with a range of one round).
Streams need s < 2^31 (lattices of fewer than 2^31 sites or links).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fastmath import fcos, fsin
from .rng import GAMMA, mix64, uniform

STRIDE = 1 << 32  # uniforms reserved per stream (site or link) in one sweep
ROUND = 3  # uniforms per rejection round: u1 (angle), u2 (accept), u3 (sign)
KAPPA_UNIFORM = 1e-100  # below: exactly uniform to float64 resolution
FALLBACK = np.uint64(0xD1B54A32D192ED03)  # mixed into the key of a stream's fallback sequence
_UNBOUNDED = np.int64(1) << np.int64(62)
_HALF_PI = 0.5 * math.pi


@njit(cache=True)
def best_fisher_params(kappa: float) -> tuple[float, float]:
    """(r - 1, rho) of Best-Fisher for kappa > 0, without cancellation (module docstring)."""
    s = math.sqrt(1.0 + 4.0 * kappa * kappa)
    tau = 1.0 + s
    sq = math.sqrt(2.0 * tau)
    # rho = (tau - sqrt(2 tau)) / (2 kappa) with tau - sqrt(2 tau) = tau (tau - 2) / (tau + sqrt(2 tau))
    # and tau - 2 = s - 1 = 4 kappa^2 / (s + 1)
    rho = tau * (4.0 * kappa * kappa / (s + 1.0)) / (tau + sq) / (2.0 * kappa)
    if kappa >= 1.0:
        one_minus_rho = (sq - 1.0 - 1.0 / (2.0 * kappa + s)) / (2.0 * kappa)
    else:
        one_minus_rho = 1.0 - rho
    return one_minus_rho * one_minus_rho / (2.0 * rho), rho


@njit(cache=True)
def _draw(kappa: float, key: np.uint64, stream: np.int64, stride: np.int64) -> float:
    """d ~ VM(0, kappa) from the uniforms of ``stream`` (``stride`` per stream; STRIDE in use,
    smaller only in tests of the fallback)."""
    n = stream * stride
    end = n + stride
    k = key
    if not kappa >= KAPPA_UNIFORM:  # kappa = 0: uniform (NaN kappa: NaN)
        return math.pi * (2.0 * uniform(k, n) - 1.0) if kappa == kappa else kappa
    rm1, _ = best_fisher_params(kappa)  # r - 1
    rp1 = rm1 + 2.0  # r + 1
    while True:
        if n + ROUND > end:  # this stream's range is used up (never at STRIDE): its own fallback key
            k = mix64(mix64(key ^ FALLBACK) + np.uint64(stream) * GAMMA)
            n = np.int64(0)
            end = _UNBOUNDED
        u1 = uniform(k, n)
        u2 = uniform(k, n + 1)
        u3 = uniform(k, n + 2)
        n += ROUND
        h = _HALF_PI * u1
        sh = fsin(h)  # branch-free polynomials (lattice/fastmath.py), accurate to 4e-16 here
        ch = fcos(h)
        one_minus_z = 2.0 * sh * sh
        r_plus_z = rm1 + 2.0 * ch * ch
        c = kappa * rm1 * rp1 / r_plus_z
        if c * (2.0 - c) > u2 or math.log(c / u2) + 1.0 - c >= 0.0:
            half = 0.5 * rm1 * one_minus_z / r_plus_z  # (1 - f) / 2, in [0, 1]
            d = 2.0 * math.asin(math.sqrt(min(half, 1.0)))
            return d if u3 > 0.5 else -d


@njit(cache=True)
def draw(kappa: float, key: np.uint64, stream: np.int64) -> float:
    """d ~ VM(0, kappa) in [-pi, pi], exact, from stream ``stream`` of the sweep key ``key``."""
    return _draw(kappa, key, stream, STRIDE)


@njit(cache=True)
def draws(kappa: np.ndarray, key: np.uint64, stride: np.int64 = STRIDE) -> np.ndarray:
    """out[i] ~ VM(0, kappa[i]) from stream i (for tests and diagnostics)."""
    out = np.empty(kappa.size)
    for i in range(kappa.size):
        out[i] = _draw(kappa[i], key, np.int64(i), stride)
    return out


def vonmises(kappa, key: int, stride: int = STRIDE) -> np.ndarray:
    """Draws d_i ~ VM(0, kappa_i), one per element of ``kappa`` (array or scalar broadcast by the
    caller), stream i of ``key``; shape of ``kappa``."""
    k = np.ascontiguousarray(kappa, dtype=np.float64)
    return draws(k.reshape(-1), np.uint64(key), np.int64(stride)).reshape(k.shape)
