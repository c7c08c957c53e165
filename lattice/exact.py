"""Exact results of the theories (docs/physics.md), to check any sampler against: character
expansions of 2D U(1) on a torus (plaquette, Wilson loops, Polyakov-loop correlators via the loop
area, the distribution of the geometric charge Q and chi_t), the closed O(2) ring, and the free
scalar field (<phi^2>, G(t), chi_2, xi_2). Numpy only; derived independently of the samplers and
observables (tests/lattice/test_exact.py checks the Bessel functions and quadratures against scipy).

    from lattice.exact import u1_plaquette_torus, u1_topological_susceptibility_torus
    u1_plaquette_torus(beta=2.0, volume=64)          # <cos theta_P> on 8 x 8
"""
from __future__ import annotations

import numpy as np

def ive(n, beta: float) -> np.ndarray:
    """exp(-beta) I_n(beta), modified Bessel functions of integer order n (array), beta >= 0, by
    Miller's backward recurrence I_{k-1} = I_{k+1} + (2k / beta) I_k (stable downwards), started far
    above n and beta and normalized by the generating-function identity I_0 + 2 sum_{k>0} I_k = e^beta."""
    m = np.abs(np.asarray(n)).astype(np.int64)
    if beta == 0:
        return (m == 0).astype(np.float64)
    top = int(m.max(initial=0) + 2 * beta + 60)
    vals = np.zeros(top + 2)
    vals[top] = 1e-300
    for k in range(top, 0, -1):
        vals[k - 1] = vals[k + 1] + (2.0 * k / beta) * vals[k]
        if vals[k - 1] > 1e250:  # rescale; the values far above stay negligible
            vals[k - 1:] *= 1e-250
    vals /= vals[0] + 2.0 * vals[1:].sum()
    return vals[m]


def simpson(y: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Composite Simpson rule on an odd number of equally spaced points x."""
    if len(x) % 2 == 0:
        raise ValueError("simpson needs an odd number of points")
    h = (x[-1] - x[0]) / (len(x) - 1)
    y = np.moveaxis(np.asarray(y), axis, -1)
    return h / 3 * (y[..., 0] + y[..., -1] + 4 * y[..., 1:-1:2].sum(axis=-1) + 2 * y[..., 2:-1:2].sum(axis=-1))


def u1_plaquette_torus(beta: float, volume: int, n_max: int = 40) -> float:
    """<cos theta_P> on an L0 x L1 torus: sum_n I_n' I_n^(V-1) / sum_n I_n^V (character expansion)."""
    n = np.arange(-n_max, n_max + 1)
    i_n = ive(n, beta)  # the common factor exp(-beta) cancels in the ratio
    di_n = 0.5 * (ive(n - 1, beta) + ive(n + 1, beta))
    return float((di_n * i_n ** (volume - 1)).sum() / (i_n**volume).sum())


def ring_link_cos(coupling: float, n_links: int, n_max: int = 40) -> float:
    """<cos(theta_{i+1} - theta_i)> of a closed ring of O(2) rotors with weight exp(K sum cos):
    Z = (2 pi)^N sum_n I_n(K)^N, the same character expansion as U(1) on a torus."""
    return u1_plaquette_torus(coupling, n_links, n_max)


def free_field_phi2(shape: tuple[int, ...], A: float, B: float) -> float:
    """<phi_x^2> for S = sum_x [-A sum_mu phi_x phi_{x+mu} + B phi_x^2]:
    (1/V) sum_p 1 / (2 (B - A sum_mu cos p_mu)), p_mu = 2 pi n / L_mu."""
    grids = np.meshgrid(*[2 * np.pi * np.arange(n) / n for n in shape], indexing="ij")
    kernel = B - A * sum(np.cos(p) for p in grids)
    return float(np.mean(1.0 / (2.0 * kernel)))


def u1_wilson_loop_torus(beta: float, volume: int, area: int, n_max: int = 40) -> float:
    """<W> of a loop enclosing ``area`` plaquettes on a torus of V plaquettes (character expansion):
    sum_n I_n^(V-A) I_{n+1}^A / sum_n I_n^V."""
    n = np.arange(-n_max, n_max + 1)
    i_n = ive(n, beta)
    return float((i_n ** (volume - area) * ive(n + 1, beta) ** area).sum() / (i_n**volume).sum())


def _u1_plaquette_characteristic(theta: np.ndarray, beta: float, k_max: int = 60) -> np.ndarray:
    """g(theta) = <exp(i theta phi / 2 pi)> for one plaquette angle phi in (-pi, pi] with weight
    exp(beta cos phi): expanding exp(beta cos phi) = sum_k I_k(beta) e^{i k phi} and integrating,
    g = sum_k (I_k / I_0) sinc(theta / 2 pi - k), sinc(x) = sin(pi x) / (pi x)."""
    k = np.arange(-k_max, k_max + 1)
    r = ive(k, beta) / ive(0, beta)
    return np.sinc(theta[:, None] / (2 * np.pi) - k[None, :]) @ r


def u1_charge_weights(beta: float, volume: int, q_max: int = 12, theta_max: float = 40 * np.pi,
                      n_theta: int = 20_001) -> np.ndarray:
    """Unnormalized weights f(Q), Q = -q_max..q_max, of the geometric topological charge on a torus.

    The V wrapped plaquette angles phi_P are independent with weight exp(beta cos phi) up to the one
    constraint that sum_P phi_P is a multiple of 2 pi (the holonomies decouple), and Q is that
    multiple. So f(Q) is the probability density of X = sum_P phi_P / 2 pi at X = Q:
    f(Q) = (1/2pi) int dtheta e^{-i theta Q} g(theta)^V = (1/pi) int_0^inf cos(theta Q) g(theta)^V,
    by Simpson's rule on [0, theta_max] (g^V decays like |theta|^-V beyond its Gaussian peak).
    By Poisson summation sum_Q f(Q) = sum_n (I_n / I_0)^V (the character-expansion Z)."""
    theta = np.linspace(0.0, theta_max, n_theta)
    gv = _u1_plaquette_characteristic(theta, beta) ** volume
    q = np.arange(-q_max, q_max + 1)
    return simpson(np.cos(np.outer(q, theta)) * gv, x=theta, axis=1) / np.pi


def u1_charge_distribution(beta: float, volume: int, q_max: int = 12) -> np.ndarray:
    """P(Q) for Q = -q_max..q_max (normalized u1_charge_weights)."""
    f = u1_charge_weights(beta, volume, q_max)
    return f / f.sum()


def u1_topological_susceptibility_torus(beta: float, volume: int, q_max: int = 12) -> float:
    """chi_t = <Q^2> / V on the torus from the exact distribution of Q."""
    q = np.arange(-q_max, q_max + 1)
    return float((q**2 * u1_charge_distribution(beta, volume, q_max)).sum() / volume)


def u1_topological_susceptibility_infinite(beta: float) -> float:
    """V -> infinity: the plaquettes decouple and chi_t = <phi^2> / (2 pi)^2 with phi in (-pi, pi]
    weighted by exp(beta cos phi)."""
    phi = np.linspace(-np.pi, np.pi, 200_001)
    w = np.exp(beta * (np.cos(phi) - 1))
    return float(simpson(phi**2 * w, phi) / simpson(w, phi) / (4 * np.pi**2))


def free_field_slice_correlator(shape: tuple[int, ...], A: float, B: float, t: int) -> float:
    """G(t) = V_t <Mbar(t0) Mbar(t0 + t)> of the free field S = sum_x [-A sum_mu phi phi_{+mu} + B phi^2]
    (Mbar = time-slice mean, time = axis 0): the propagator 1/(2 (B - A sum_mu cos p_mu)) at zero
    spatial momentum, G(t) = (1/L0) sum_{p0} cos(p0 t) / (2 (B - A (d - 1) - A cos p0))."""
    L0, d = shape[0], len(shape)
    p0 = 2 * np.pi * np.arange(L0) / L0
    return float(np.mean(np.cos(p0 * t) / (2.0 * (B - A * (d - 1) - A * np.cos(p0)))))


def free_field_chi2(shape: tuple[int, ...], A: float, B: float) -> float:
    """chi_2 = V <M^2> = sum_t G(t) = 1 / (2 (B - A d)) (the propagator at p = 0)."""
    return 1.0 / (2.0 * (B - A * len(shape)))


def free_field_xi2(shape: tuple[int, ...], A: float, B: float) -> float:
    """Second-moment correlation length of the free field: G(0)/G(p) - 1 = 2 A sin^2(p/2) / (B - A d),
    so xi_2 = sqrt(A / (2 (B - A d))) for every L (= 1/m in the flow parameterization)."""
    return float(np.sqrt(A / (2.0 * (B - A * len(shape)))))


__all__ = ["ive", "simpson", "u1_plaquette_torus", "ring_link_cos", "u1_wilson_loop_torus", "u1_charge_weights",
           "u1_charge_distribution", "u1_topological_susceptibility_torus", "u1_topological_susceptibility_infinite",
           "free_field_phi2", "free_field_slice_correlator", "free_field_chi2", "free_field_xi2"]
