"""Vectorizable sin/cos for Numba kernels, accurate to 4e-16 (absolute) for |x| <= 4 pi.

libm's sin/cos cost about 10 ns per call in this Numba build and stop loops from
vectorizing. Here: Cody-Waite reduction to r in [-pi, pi] (2 pi split in two parts),
reflection sin(r) = sin(sign(r) pi - r) into [-pi/2, pi/2], and the Taylor polynomial of
degree 21, whose truncation error there is below 2e-18. All branch-free, so LLVM
vectorizes loops that call these. cos(x) = sin(pi/2 - |r|). The reduction k * 2pi_hi is
exact only for |k| <= 2, so the error grows to about 1e-14 at |x| ~ 100 (plaquette angles
stay within 4 pi). Errors against numpy are tested in tests/lattice/test_fastmath.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# LLVM fast-math flags for kernels: "contract" lets a*b + c become one FMA (as exact or more),
# "reassoc" lets sums be reordered so reductions vectorize (a different, fixed summation order).
# No flag that assumes away NaN or inf: HMC relies on NaN/inf to reject a diverged trajectory.
FMA = {"contract"}
FMA_SUM = {"contract", "reassoc"}

_INV_2PI = 1.0 / (2.0 * np.pi)
_2PI_HI = 6.283185307179586  # float64(2 pi)
_2PI_LO = 2.4492935982947064e-16  # 2 pi - _2PI_HI
_PI_HI = 3.141592653589793
_PI_LO = 1.2246467991473532e-16
_HALF_PI = 1.5707963267948966
_HALF_PI_LO = 6.123233995736766e-17

# 1/(2k+1)! with alternating signs, k = 0..10
_C1 = 1.0
_C3 = -1.0 / 6.0
_C5 = 1.0 / 120.0
_C7 = -1.0 / 5040.0
_C9 = 1.0 / 362880.0
_C11 = -1.0 / 39916800.0
_C13 = 1.0 / 6227020800.0
_C15 = -1.0 / 1307674368000.0
_C17 = 1.0 / 355687428096000.0
_C19 = -1.0 / 121645100408832000.0
_C21 = 1.0 / 51090942171709440000.0


@njit(cache=True, inline="always")
def _reduce(x: float) -> float:
    """x - 2 pi k in [-pi, pi], and reflected into [-pi/2, pi/2] keeping sin."""
    k = np.rint(x * _INV_2PI)
    r = (x - k * _2PI_HI) - k * _2PI_LO
    s = 1.0 if r >= 0.0 else -1.0
    a = r * s
    a = (_PI_HI - a) + _PI_LO if a > _HALF_PI else a
    return a * s


@njit(cache=True, inline="always")
def _sin_poly(r: float) -> float:
    r2 = r * r
    p = _C21
    p = p * r2 + _C19
    p = p * r2 + _C17
    p = p * r2 + _C15
    p = p * r2 + _C13
    p = p * r2 + _C11
    p = p * r2 + _C9
    p = p * r2 + _C7
    p = p * r2 + _C5
    p = p * r2 + _C3
    p = p * r2 + _C1
    return p * r


@njit(cache=True, inline="always")
def fsin(x: float) -> float:
    """sin(x), branch-free."""
    return _sin_poly(_reduce(x))


@njit(cache=True, inline="always")
def fcos(x: float) -> float:
    """cos(x) = sin(pi/2 - |r|) with r = x reduced to [-pi, pi], branch-free."""
    k = np.rint(x * _INV_2PI)
    r = (x - k * _2PI_HI) - k * _2PI_LO
    return _sin_poly((_HALF_PI - abs(r)) + _HALF_PI_LO)


@njit(cache=True)
def sin_array(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    xf = x.ravel()
    of = out.ravel()
    for i in range(xf.size):
        of[i] = fsin(xf[i])
    return out


@njit(cache=True)
def cos_array(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    xf = x.ravel()
    of = out.ravel()
    for i in range(xf.size):
        of[i] = fcos(xf[i])
    return out


@njit(cache=True, inline="always")
def wrap_angle(x: float) -> float:
    """x mod 2 pi into [-pi, pi)."""
    y = x - _2PI_HI * np.floor((x + _PI_HI) * _INV_2PI)
    # rounding can land exactly on +pi (or a hair outside): fold back
    if y >= _PI_HI:
        y -= _2PI_HI
    elif y < -_PI_HI:
        y += _2PI_HI
    return y
