"""Unit-charge (anti-)instanton fields of 2D U(1) gauge theory, for winding moves (samplers/winding.py).

A winding field omega is a link field (2, L0, L1) whose plaquette angles (PHYSICS.md)

    omega_P(x) = omega_0(x) + omega_1(x + e0) - omega_0(x + e1) - omega_1(x)

are s 2 pi / A (mod 2 pi) on the w0 x w1 plaquettes of a rectangle R (lower-left corner a, area A = w0 w1)
and 0 (mod 2 pi) everywhere else, s = +-1: a uniform field strength of total flux s 2 pi (an instanton
for s = +1, an anti-instanton for s = -1, cf. D. Albandea, P. Hernandez, A. Ramos, F. Romero-Lopez,
"Topological sampling through windings", EPJC 81 (2021) 873, arXiv:2106.14234). With local coordinates
(u, v) = (x0 - a0, x1 - a1) mod (L0, L1), the field is

    omega_0(u, v)      = -s 2 pi v / A     for 0 <= u < w0, 0 <= v < w1
    omega_1(u, w1 - 1) =  s 2 pi u / w0    for 0 <= u < w0
    every other link     0.

Derivation (s = +1): inside R below its top row, omega_0(u, v) - omega_0(u, v + 1) = 2 pi / A. In the top row
v = w1 - 1, omega_0(u, w1 - 1) - omega_0(u, w1) = -2 pi (w1 - 1) / A (omega_0(u, w1) = 0: outside R, or
v = 0 when w1 = L1), and the omega_1 difference adds 2 pi / w0 = 2 pi w1 / A for u < w0 - 1, and
-2 pi (w0 - 1) / w0 = 2 pi / w0 - 2 pi for u = w0 - 1 (omega_1(w0, .) = 0): 2 pi / A in both cases,
mod 2 pi. Outside R: the nonzero omega_0(u, v) have 1 <= v <= w1 - 1, so both plaquettes holding them,
(u, v) and (u, v - 1), lie in R; the nonzero omega_1(u, w1 - 1) have 1 <= u <= w0 - 1, so both holding
them, (u, w1 - 1) and (u - 1, w1 - 1), do too. Hence no plaquette outside R changes. With R the whole
torus (w0, w1) = (L0, L1), a = 0 this is theta_0(x) = -2 pi x1 / V, theta_1(x0, L1 - 1) = 2 pi x0 / L0.

Topological charge: the field's own plaquettes wrap to s 2 pi / A (A >= 2), so its Q = s. Adding it to
a configuration theta (theta -> theta + omega, i.e. U -> U e^{i omega}) changes Q = (1/2pi) sum wrap(theta_P)
by exactly s when no plaquette of R crosses the branch cut, i.e. when every wrapped plaquette angle in
R lies in (-pi, pi - 2 pi / A] (s = +1) or (-pi + 2 pi / A, pi] (s = -1); a sufficient condition for
both signs is |wrap(theta_P)| < pi - 2 pi / A on R (``winding_changes_charge_by_one``). Otherwise each
plaquette that crosses takes one unit back, and Q changes by s - s n (n plaquettes crossing).

Conventions: links theta[mu, x0, x1], mu = 0 along axis L0; positions mod (L0, L1).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fastmath import wrap_angle

TWO_PI = 2.0 * math.pi


def check_size(shape: tuple[int, int], w0: int, w1: int) -> None:
    """Refuse (one line) a rectangle that is not 2 <= w0 <= L0, 2 <= w1 <= L1 (a 1 x 1 'rectangle' would
    change its one plaquette by 2 pi, i.e. not at all)."""
    L0, L1 = shape
    for w, L, axis in ((w0, L0, 0), (w1, L1, 1)):
        if not (isinstance(w, (int, np.integer)) and 2 <= w <= L):
            raise ValueError(f"winding region extent along axis {axis} must be an integer in [2, {L}], got {w}")


def winding_field(shape: tuple[int, int], size: tuple[int, int] | None = None, origin: tuple[int, int] = (0, 0),
                  sign: int = 1) -> np.ndarray:
    """The winding field omega (2, L0, L1) of the module docstring: plaquettes sign 2 pi / (w0 w1) (mod 2 pi)
    on the w0 x w1 rectangle with lower-left corner ``origin`` (``size`` None: the whole torus), 0 elsewhere."""
    L0, L1 = shape
    w0, w1 = (L0, L1) if size is None else size
    check_size(shape, w0, w1)
    if sign not in (1, -1):
        raise ValueError(f"winding sign must be +1 or -1, got {sign}")
    omega = np.zeros((2, L0, L1))
    add_winding(omega, w0, w1, origin[0] % L0, origin[1] % L1, float(sign), False)
    return omega


@njit(cache=True)
def add_winding(t: np.ndarray, w0: int, w1: int, a0: int, a1: int, sign: float, wrap: bool = True) -> None:
    """theta += sign omega in place (omega: the winding field on the w0 x w1 rectangle at (a0, a1),
    0 <= a0 < L0, 0 <= a1 < L1); with ``wrap`` the links it changes are wrapped back to [-pi, pi).
    Touches only the w0 w1 + w0 links of the rectangle."""
    L0, L1 = t.shape[1], t.shape[2]
    flux = sign * TWO_PI
    area = w0 * w1
    for u in range(w0):
        i = a0 + u
        if i >= L0:
            i -= L0
        for v in range(1, w1):
            j = a1 + v
            if j >= L1:
                j -= L1
            x = t[0, i, j] - flux * v / area
            t[0, i, j] = wrap_angle(x) if wrap else x
        if u > 0:
            j = a1 + w1 - 1
            if j >= L1:
                j -= L1
            x = t[1, i, j] + flux * u / w0
            t[1, i, j] = wrap_angle(x) if wrap else x


@njit(cache=True)
def add_winding_rows(ts: np.ndarray, w0: np.ndarray, w1: np.ndarray, a0: np.ndarray, a1: np.ndarray,
                     sign: np.ndarray) -> None:
    """``add_winding`` (wrapped) on each configuration ts[k] with the k-th rectangle and sign, in one call."""
    for k in range(ts.shape[0]):
        add_winding(ts[k], w0[k], w1[k], a0[k], a1[k], sign[k], True)


def region_mask(shape: tuple[int, int], size: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
    """Boolean (L0, L1): the plaquettes (by lower-left corner) of the w0 x w1 rectangle at ``origin``."""
    L0, L1 = shape
    mask = np.zeros(shape, dtype=bool)
    rows = (origin[0] + np.arange(size[0])) % L0
    cols = (origin[1] + np.arange(size[1])) % L1
    mask[np.ix_(rows, cols)] = True
    return mask


def winding_changes_charge_by_one(theta: np.ndarray, size: tuple[int, int], origin: tuple[int, int]) -> bool:
    """The sufficient condition of the module docstring for theta + (+-omega) to have charge Q(theta) +- 1:
    every wrapped plaquette angle of the rectangle has |wrap(theta_P)| < pi - 2 pi / (w0 w1)."""
    from .u1 import plaquette_angles

    p = plaquette_angles(np.ascontiguousarray(theta, dtype=np.float64))
    wrapped = p - TWO_PI * np.ceil((p - math.pi) / TWO_PI)
    inside = wrapped[region_mask(theta.shape[1:], size, origin)]
    return bool(np.all(np.abs(inside) < math.pi - TWO_PI / (size[0] * size[1])))
