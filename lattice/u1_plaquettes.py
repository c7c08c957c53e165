"""2D U(1) links from independent plaquettes: an exact proposal for the Wilson action (docs/plaquette_sampler.md).

On the L0 x L1 torus (V = L0 L1 sites, 2V links, conventions of PHYSICS.md) the V plaquette angles
obey one constraint, sum_x theta_P(x) = 0 mod 2 pi, so all but the last, P_last = (L0 - 1, L1 - 1),
are free. Draw

    phi(x), x != P_last:  independent von Mises, density exp(beta cos phi) / (2 pi I_0(beta))
    h0, h1:               uniform on the circle (the two holonomies)
    alpha(x), all x:      uniform on the circle (a gauge transformation)

and build the links on the maximal tree {theta_1(x0, x1), x1 < L1 - 1} u {theta_0(x0, 0), x0 < L0 - 1}
(``links_from_plaquettes``, O(V)):

    theta_1(x0, x1) = 0 for x1 < L1 - 1;   theta_0(x0, 0) = 0 for x0 < L0 - 1;   theta_0(L0 - 1, 0) = h0;
    theta_0(x0, x1 + 1) = theta_0(x0, x1) - phi(x0, x1)                  for x1 = 0 .. L1 - 2, all x0;
    theta_1(0, L1 - 1) = h1;
    theta_1(x0 + 1, L1 - 1) = theta_1(x0, L1 - 1) + phi(x0, L1 - 1) - theta_0(x0, L1 - 1) + theta_0(x0, 0)
                                                                         for x0 = 0 .. L0 - 2;
    then theta_mu(x) += alpha(x) - alpha(x + e_mu), wrapped to [-pi, pi).

Every plaquette but P_last then equals its phi (mod 2 pi): for x1 < L1 - 1 both theta_1 of the
plaquette vanish and theta_P = theta_0(x) - theta_0(x + e1) = phi(x); for x1 = L1 - 1, x0 < L0 - 1 the
last recursion is theta_P(x) = phi(x) solved for theta_1(x + e0). theta_P(P_last) = -sum of the others
(mod 2 pi), and the gauge transformation changes no plaquette.

The exact density. The map F: (phi_{x != P_last}, h0, h1, alpha) in T^{2V+1} -> theta in T^{2V} is
linear with integer coefficients, a homomorphism of tori. It is surjective: gauge-transform any theta
to zero on the tree (a spanning tree of V - 1 links); its other V + 1 links are then fixed by the
V - 1 plaquettes and the two holonomies h0 = theta_0(L0 - 1, 0), h1 = theta_1(0, L1 - 1) through the
(triangular, unimodular) recursion above. Its kernel is the constant alpha. A continuous surjective
homomorphism of compact groups pushes Haar measure to Haar measure (the image measure is
translation invariant). So, for a test function g, with f(phi) = exp(beta cos phi) / I_0(beta) the
density of phi w.r.t. d phi / 2 pi and theta_P(F(u))(x) = phi_x (mod 2 pi) for x != P_last,

    E_q[g] = int g(F(u)) prod_x f(phi_x(u)) du = int g(F(u)) prod_x f(theta_P(F(u))(x)) du
           = int g(theta) prod_{x != P_last} f(theta_P(x)) d theta / (2 pi)^{2V},

i.e. w.r.t. Lebesgue measure on [-pi, pi)^{2V}                                                (``log_q``)

    log q(theta) = -2V log(2 pi) + sum_{x != P_last} [beta cos theta_P(x) - log I_0(beta)].

The importance weight is then w = p / q with p ~ exp(-S) = exp(-beta V + beta sum_x cos theta_P(x)):

    w(theta) ~ exp(beta cos theta_P(P_last))                                              (``log_weight``)

alone, so an independence Metropolis-Hastings chain (samplers/plaquette_mh.py) accepts theta' with
min(1, exp(beta [cos theta_P'(P_last) - cos theta_P(P_last)])).

ESS of the proposal (``expected_ess_fraction``). Under q, theta_P(P_last) = -sum of V - 1 independent
von Mises angles, whose density is (1/2 pi) sum_n r_n^(V-1) e^{i n phi}, r_n = I_n(beta) / I_0(beta)
(the characteristic function of one is r_n). With (1/2 pi) int e^{i n phi} e^{b cos phi} d phi = I_n(b):

    E_q[w] = sum_n r_n^(V-1) I_n(beta),   E_q[w^2] = sum_n r_n^(V-1) I_n(2 beta),   ESS/N = E_q[w]^2 / E_q[w^2]

-> I_0(beta)^2 / I_0(2 beta) for V -> infinity (only n = 0 survives; ``expected_ess_fraction_infinite``),
~ 1 / sqrt(pi beta) at large beta (I_0(b) ~ e^b / sqrt(2 pi b)). V = 2: E_q[w] = I_0(2 beta) / I_0(beta)
(Neumann's sum_n I_n^2 = I_0(2 beta)).

Random numbers (``propose``): everything from one 64-bit key (lattice/rng.py), stream s = flat site index
x0 L1 + x1: phi(x) is the Best-Fisher draw of stream s (lattice/vonmises.py) for s < V - 1; h0, h1 the
uniforms (counters (V - 1) STRIDE and (V - 1) STRIDE + 1, the unused stream of P_last); alpha(x) the
uniform of counter (V + s) STRIDE. Angles from uniforms u in (0, 1] are pi (2u - 1). Needs 2V < 2^31.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .exact import ive
from .fastmath import wrap_angle
from .rng import uniform
from .u1 import plaquette_angles
from .vonmises import STRIDE
from .vonmises import draw as vonmises_draw

LOG_2PI = math.log(2.0 * math.pi)


@njit(cache=True)
def _build(phi, h0, h1, alpha, out):
    """links_from_plaquettes into out (2, L0, L1)."""
    L0, L1 = phi.shape
    t0 = out[0]
    t1 = out[1]
    for i in range(L0):
        t0[i, 0] = 0.0
        for j in range(L1 - 1):
            t1[i, j] = 0.0
    t0[L0 - 1, 0] = h0
    for i in range(L0):
        for j in range(L1 - 1):
            t0[i, j + 1] = t0[i, j] - phi[i, j]
    t1[0, L1 - 1] = h1
    for i in range(L0 - 1):
        t1[i + 1, L1 - 1] = t1[i, L1 - 1] + phi[i, L1 - 1] - t0[i, L1 - 1] + t0[i, 0]
    for i in range(L0):
        ip = i + 1 if i + 1 < L0 else 0
        for j in range(L1):
            jp = j + 1 if j + 1 < L1 else 0
            t0[i, j] = wrap_angle(t0[i, j] + alpha[i, j] - alpha[ip, j])
            t1[i, j] = wrap_angle(t1[i, j] + alpha[i, j] - alpha[i, jp])


@njit(cache=True)
def links_from_plaquettes(phi: np.ndarray, h0: float, h1: float, alpha: np.ndarray) -> np.ndarray:
    """Links (2, L0, L1) in [-pi, pi) whose plaquettes are phi(x) (mod 2 pi) for x != P_last, with holonomies
    h0, h1 and gauge transformation alpha (module docstring). phi, alpha: (L0, L1); phi[L0-1, L1-1] is not used."""
    out = np.empty((2, phi.shape[0], phi.shape[1]))
    _build(phi, h0, h1, alpha, out)
    return out


@njit(cache=True, parallel=True)
def links_from_plaquettes_batch(phis: np.ndarray, h: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Row k: links_from_plaquettes(phis[k], h[k, 0], h[k, 1], alphas[k]); phis, alphas (N, L0, L1), h (N, 2)."""
    n, L0, L1 = phis.shape
    out = np.empty((n, 2, L0, L1))
    for k in prange(n):
        _build(phis[k], h[k, 0], h[k, 1], alphas[k], out[k])
    return out


@njit(cache=True)
def _draw_inputs(key, beta, phi, alpha):
    """phi, alpha (L0, L1) and (h0, h1) of the proposal of ``key`` (module docstring: random numbers)."""
    L0, L1 = phi.shape
    V = L0 * L1
    for s in range(V - 1):
        phi[s // L1, s % L1] = vonmises_draw(beta, key, np.int64(s))
    phi[L0 - 1, L1 - 1] = 0.0
    base = np.int64(V - 1) * STRIDE
    h0 = math.pi * (2.0 * uniform(key, base) - 1.0)
    h1 = math.pi * (2.0 * uniform(key, base + 1) - 1.0)
    for s in range(V):
        alpha[s // L1, s % L1] = math.pi * (2.0 * uniform(key, np.int64(V + s) * STRIDE) - 1.0)
    return h0, h1


@njit(cache=True)
def _propose(key, beta, out, phi, alpha):
    h0, h1 = _draw_inputs(key, beta, phi, alpha)
    _build(phi, h0, h1, alpha, out)


@njit(cache=True)
def cos_last_plaquette(t: np.ndarray) -> float:
    """cos theta_P(P_last), P_last = (L0 - 1, L1 - 1), of links t (2, L0, L1)."""
    L0, L1 = t.shape[1], t.shape[2]
    i, j = L0 - 1, L1 - 1
    return math.cos(t[0, i, j] + t[1, 0, j] - t[0, i, 0] - t[1, i, j])


@njit(cache=True)
def propose_kernel(key: np.uint64, beta: float, shape0: int, shape1: int) -> np.ndarray:
    """The proposal of ``key`` (module docstring), links (2, L0, L1)."""
    out = np.empty((2, shape0, shape1))
    _propose(key, beta, out, np.empty((shape0, shape1)), np.empty((shape0, shape1)))
    return out


@njit(cache=True, parallel=True)
def propose_batch_kernel(keys: np.ndarray, beta: float, shape0: int, shape1: int) -> np.ndarray:
    """Row k: propose_kernel(keys[k], ...), (N, 2, L0, L1)."""
    out = np.empty((keys.size, 2, shape0, shape1))
    for k in prange(keys.size):
        _propose(keys[k], beta, out[k], np.empty((shape0, shape1)), np.empty((shape0, shape1)))
    return out


@njit(cache=True)
def imh_kernel(q: np.ndarray, beta: float, key: np.uint64, u: float, scratch: np.ndarray) -> tuple[bool, float]:
    """One independence Metropolis-Hastings step from the proposal of ``key`` with accept uniform u in [0, 1):
    accept when u < exp(beta [cos theta_P'(P_last) - cos theta_P(P_last)]), then q = theta' (in place).
    scratch: (4, L0, L1), rows 0-1 the proposal, 2 phi, 3 alpha. Returns (accepted, cos theta_P'(P_last))."""
    prop = scratch[:2]
    _propose(key, beta, prop, scratch[2], scratch[3])
    c_new = cos_last_plaquette(prop)
    log_ratio = beta * (c_new - cos_last_plaquette(q))
    accepted = log_ratio >= 0.0 or u < math.exp(log_ratio)
    if accepted:
        q[:] = prop
    return accepted, c_new


@njit(cache=True)
def _log_q(t, beta, log_i0):
    ang = plaquette_angles(t)
    L0, L1 = ang.shape
    total = 0.0
    for i in range(L0):
        for j in range(L1):
            if i != L0 - 1 or j != L1 - 1:
                total += beta * math.cos(ang[i, j])
    return total - (L0 * L1 - 1) * log_i0 - 2 * L0 * L1 * LOG_2PI


@njit(cache=True, parallel=True)
def _log_q_rows(ts, beta, log_i0):
    out = np.empty(ts.shape[0])
    for k in prange(ts.shape[0]):
        out[k] = _log_q(ts[k], beta, log_i0)
    return out


def log_i0(beta: float) -> float:
    """log I_0(beta), from the scaled Bessel function of lattice.exact: log ive(0, beta) + beta."""
    return float(np.log(ive(0, float(beta)))) + float(beta)


def _links(theta) -> np.ndarray:
    t = np.ascontiguousarray(theta, dtype=np.float64)
    if t.ndim < 3 or t.shape[-3] != 2:
        raise ValueError(f"U(1) links have shape (2, L0, L1) or (N, 2, L0, L1), got {t.shape}")
    return t


def log_q(theta: np.ndarray, beta: float) -> float | np.ndarray:
    """Exact log density of the proposal w.r.t. Lebesgue measure on [-pi, pi)^{2V} (module docstring):
    -2V log(2 pi) + sum_{x != P_last} [beta cos theta_P(x) - log I_0(beta)]. theta: (2, L0, L1) -> float,
    or a batch (N, 2, L0, L1) -> (N,)."""
    t = _links(theta)
    li0 = log_i0(beta)
    if t.ndim == 3:
        return float(_log_q(t, float(beta), li0))
    return _log_q_rows(t.reshape(-1, *t.shape[-3:]), float(beta), li0).reshape(t.shape[:-3])


def log_weight(theta: np.ndarray, beta: float) -> float | np.ndarray:
    """log w = log p - log q up to a constant: beta cos theta_P(P_last) (one configuration or a batch)."""
    t = _links(theta)
    i, j = t.shape[-2] - 1, t.shape[-1] - 1
    return beta * np.cos(t[..., 0, i, j] + t[..., 1, 0, j] - t[..., 0, i, 0] - t[..., 1, i, j])


def propose(key: int, shape: tuple[int, int], beta: float) -> np.ndarray:
    """The proposal of the 64-bit ``key`` on an L0 x L1 lattice: links (2, L0, L1) in [-pi, pi)."""
    L0, L1 = _shape(shape)
    return propose_kernel(np.uint64(key), float(beta), L0, L1)


def propose_batch(keys: np.ndarray, shape: tuple[int, int], beta: float) -> np.ndarray:
    """propose(keys[k], ...) for every k: (N, 2, L0, L1)."""
    L0, L1 = _shape(shape)
    return propose_batch_kernel(np.ascontiguousarray(keys, dtype=np.uint64).reshape(-1), float(beta), L0, L1)


def _shape(shape) -> tuple[int, int]:
    L0, L1 = (int(n) for n in shape)
    if L0 < 2 or L1 < 2 or 2 * L0 * L1 >= 2**31:
        raise ValueError(f"the plaquette proposal needs a 2D lattice with 2 <= L and 2V < 2^31, got {shape}")
    return L0, L1


def expected_ess_fraction(beta: float, volume: int, n_max: int | None = None) -> float:
    """ESS/N of the proposal's weights on a torus of V = ``volume`` plaquettes (module docstring):
    [sum_n r_n^(V-1) I_n(beta)]^2 / sum_n r_n^(V-1) I_n(2 beta), r_n = I_n(beta) / I_0(beta); by
    scaled Bessel functions (lattice.exact.ive; the factors e^beta cancel)."""
    if volume < 2:
        raise ValueError(f"volume must be >= 2, got {volume}")
    beta = float(beta)
    n_max = int(n_max if n_max is not None else 2 * beta + 60)
    n = np.arange(-n_max, n_max + 1)
    i1 = ive(n, beta)
    rv = (i1 / i1[n_max]) ** (volume - 1)  # r_n^(V-1)
    ew = (rv * i1).sum()  # E_q[w] e^{-beta}
    ew2 = (rv * ive(n, 2.0 * beta)).sum()  # E_q[w^2] e^{-2 beta}
    return float(ew * ew / ew2)


def expected_ess_fraction_infinite(beta: float) -> float:
    """V -> infinity limit of ``expected_ess_fraction``: I_0(beta)^2 / I_0(2 beta) (~ 1/sqrt(pi beta) at large beta)."""
    return float(ive(0, float(beta)) ** 2 / ive(0, 2.0 * float(beta)))


__all__ = ["links_from_plaquettes", "links_from_plaquettes_batch", "propose", "propose_batch", "log_q",
           "log_weight", "cos_last_plaquette", "imh_kernel", "log_i0", "expected_ess_fraction",
           "expected_ess_fraction_infinite"]
