"""Observables of the 2D XY model (PHYSICS.md, "XY model").

Batches of angles have shape (N, L0, L1); axis L0 is "time" for the time-slice correlator.
All functions are vectorized over the batch. Link terms use cos(theta_y - theta_x) =
c_y c_x + s_y s_x and sin(theta_y - theta_x) = s_y c_x - c_y s_x with c, s = cos, sin theta
(two trigonometric evaluations per site).
"""
from __future__ import annotations

import math

import numpy as np

from .derived import Derived
from .phi4 import second_moment_length

TWO_PI = 2.0 * math.pi
BATCH_SITES = 1 << 20  # primaries() reads batches of about this many sites


def _check(configs) -> np.ndarray:
    configs = np.asarray(configs, dtype=np.float64)
    if configs.ndim != 3:
        raise ValueError(f"XY configurations have shape (N, L0, L1), got {configs.shape}")
    return configs


def _links(c: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of d_mu theta from c = cos theta, s = sin theta (N, L0, L1)."""
    cp = np.stack([np.roll(c, -1, axis=1), np.roll(c, -1, axis=2)], axis=1)
    sp = np.stack([np.roll(s, -1, axis=1), np.roll(s, -1, axis=2)], axis=1)
    c, s = c[:, None], s[:, None]
    return cp * c + sp * s, sp * c - cp * s


def link_cos_sin(configs) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of d_mu theta_x = theta_{x+mu} - theta_x; each (N, 2, L0, L1), index 1 = mu."""
    t = _check(configs)
    return _links(np.cos(t), np.sin(t))


def energy_density(configs) -> np.ndarray:
    """e = -(1/V) sum_{x, mu} cos(theta_{x+mu} - theta_x) per configuration; (N,)."""
    cos, _ = link_cos_sin(configs)
    return -cos.sum(axis=1).mean(axis=(1, 2))


def magnetization(configs) -> np.ndarray:
    """m = (1/V) sum_x (cos theta_x, sin theta_x) per configuration; (N, 2)."""
    t = _check(configs)
    return np.stack([np.cos(t).mean(axis=(1, 2)), np.sin(t).mean(axis=(1, 2))], axis=1)


def helicity_terms(configs) -> tuple[np.ndarray, np.ndarray]:
    """The two per-configuration terms of the helicity modulus, averaged over mu; each (N,):
    (1/V) sum_x cos(d_mu theta_x) and (1/V) (sum_x sin(d_mu theta_x))^2.
    Upsilon = <first> - beta <second>."""
    cos, sin = link_cos_sin(configs)
    V = cos.shape[2] * cos.shape[3]
    return cos.mean(axis=(1, 2, 3)), (sin.sum(axis=(2, 3)) ** 2).mean(axis=1) / V


def helicity_modulus(configs, beta: float) -> np.ndarray:
    """Per-configuration Upsilon = (1/V) sum_x cos(d_mu theta) - (beta/V) (sum_x sin(d_mu theta))^2,
    averaged over mu; its mean is the helicity modulus of PHYSICS.md (linear in the two means). (N,)"""
    c, s2 = helicity_terms(configs)
    return c - beta * s2


def wrap(x: np.ndarray) -> np.ndarray:
    """x mod 2 pi into [-pi, pi)."""
    return x - TWO_PI * np.floor((x + math.pi) / TWO_PI)


def vorticity(configs) -> np.ndarray:
    """w_x = (1/2pi) [A_0(x) + A_1(x + e0) - A_0(x + e1) - A_1(x)], A_mu(x) = wrap(theta_{x+mu} - theta_x)
    to [-pi, pi): the winding of the plaquette with lower-left corner x, counterclockwise in the
    (axis 0, axis 1) plane (the orientation of the U(1) plaquette). Integer in {-1, 0, 1}
    (-2 only if all four differences are exactly -pi); (N, L0, L1) int64."""
    t = _check(configs)
    a0 = wrap(np.roll(t, -1, axis=1) - t)
    a1 = wrap(np.roll(t, -1, axis=2) - t)
    w = (a0 + np.roll(a1, -1, axis=1) - np.roll(a0, -1, axis=2) - a1) / TWO_PI
    return np.rint(w).astype(np.int64)


def vortex_density(configs) -> np.ndarray:
    """(1/V) sum_x |w_x| per configuration; (N,)."""
    return np.abs(vorticity(configs)).mean(axis=(1, 2))


def _slice_means(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """mbar(t) = mean over the time slice x0 = t of (cos theta, sin theta); (N, 2, L0)."""
    return np.stack([c.mean(axis=2), s.mean(axis=2)], axis=1)


def _slice_products(mb: np.ndarray) -> np.ndarray:
    L0 = mb.shape[2]
    return np.stack([(mb * np.roll(mb, -k, axis=2)).sum(axis=1).mean(axis=1) for k in range(L0 // 2 + 1)], axis=1)


def _momentum_sq(mb: np.ndarray, n: int) -> np.ndarray:
    L0 = mb.shape[2]
    phase = np.exp(2j * math.pi * n * np.arange(L0) / L0)
    return (np.abs(mb @ phase / L0) ** 2).sum(axis=1)


def slice_products(configs) -> np.ndarray:
    """C(t) = (1/L0) sum_t0 mbar(t0) . mbar(t0 + t) for t = 0..L0//2, mbar(t) = mean over the time
    slice x0 = t of (cos theta, sin theta); (N, L0//2 + 1). G(t) = V_t <C(t)>, V_t = L1 (``derived``)."""
    t = _check(configs)
    return _slice_products(_slice_means(np.cos(t), np.sin(t)))


def momentum_magnetization_sq(configs, n: int = 1) -> np.ndarray:
    """|m(p)|^2 = |(1/V) sum_x (cos theta_x, sin theta_x) e^{i p x0}|^2 at p = 2 pi n / L0; (N,).
    G(p) = V <|m(p)|^2> is the Fourier transform of G(t)."""
    t = _check(configs)
    return _momentum_sq(_slice_means(np.cos(t), np.sin(t)), n)


# --------------------------------------------------------------------------- analysis
def primaries(configs, theory, batch: int | None = None) -> dict[str, np.ndarray]:
    """Per-configuration series, each (N,): "e", "e^2" (for the specific heat), "|m|", "|m|^2", "|m|^4",
    "Upsilon" (per-configuration helicity combination), its two terms "Upsilon_cos" and "Upsilon_sin2",
    "rho_v", "C(t=0)" .. "C(t=L0/2)" and "|m(p_min)|^2". ``configs`` may be any sliceable array (e.g. an h5py dataset)."""
    L0, L1 = theory.shape
    batch = batch or max(1, BATCH_SITES // (L0 * L1))
    N = len(configs)
    cols = {k: np.empty(N) for k in ("e", "|m|^2", "Upsilon_cos", "Upsilon_sin2", "rho_v", "|m(p_min)|^2")}
    C = np.empty((N, L0 // 2 + 1))
    for i in range(0, N, batch):
        c = _check(configs[i:i + batch])
        if c.shape[1:] != (L0, L1):
            raise ValueError(f"configurations of shape {c.shape[1:]} do not match the theory's lattice {theory.shape}")
        sl = slice(i, i + batch)
        cos, sin = np.cos(c), np.sin(c)
        lc, ls = _links(cos, sin)
        V = L0 * L1
        cols["e"][sl] = -lc.sum(axis=1).mean(axis=(1, 2))
        cols["Upsilon_cos"][sl] = lc.mean(axis=(1, 2, 3))
        cols["Upsilon_sin2"][sl] = (ls.sum(axis=(2, 3)) ** 2).mean(axis=1) / V
        mb = _slice_means(cos, sin)
        cols["|m|^2"][sl] = (mb.mean(axis=2) ** 2).sum(axis=1)
        cols["|m(p_min)|^2"][sl] = _momentum_sq(mb, 1)
        C[sl] = _slice_products(mb)
        cols["rho_v"][sl] = vortex_density(c)
    m2 = cols["|m|^2"]
    out = {"e": cols["e"], "e^2": cols["e"] ** 2, "|m|": np.sqrt(m2), "|m|^2": m2, "|m|^4": m2 * m2,
           "Upsilon": cols["Upsilon_cos"] - theory.beta * cols["Upsilon_sin2"],
           "Upsilon_cos": cols["Upsilon_cos"], "Upsilon_sin2": cols["Upsilon_sin2"], "rho_v": cols["rho_v"]}
    out.update({f"C(t={t})": C[:, t] for t in range(L0 // 2 + 1)})
    out["|m(p_min)|^2"] = cols["|m(p_min)|^2"]
    return out


def _effective_mass(c_minus, c, c_plus):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arccosh((c_minus + c_plus) / (2 * c))


def derived(theory) -> list[Derived]:
    """chi = V<|m|^2>, U_L, beta*Upsilon, the specific heat C_v = beta^2 V (<e^2> - <e>^2), G(t)
    (t = 0..L0/2), m_eff(t) (t = 1..L0/2 - 1) and xi_2.

    <m> = 0 by the O(2) symmetry on a finite lattice, so G(t) and xi_2 need no subtraction."""
    L0, L1 = theory.shape
    V = L0 * L1
    beta = theory.beta
    p = 2 * math.pi / L0
    out = [
        Derived("chi", ("|m|^2",), lambda m2: V * m2, "V <|m|^2>"),
        Derived("U_L", ("|m|^2", "|m|^4"), lambda m2, m4: 1 - m4 / (2 * m2 * m2), "1 - <|m|^4> / (2 <|m|^2>^2)"),
        Derived("beta*Upsilon", ("Upsilon",), lambda u: beta * u, "beta times the helicity modulus (2/pi at BKT)"),
        Derived("C_v", ("e", "e^2"), lambda e, e2: beta * beta * V * (e2 - e * e),
                "specific heat per site beta^2 V (<e^2> - <e>^2) = -beta^2 d<e>/dbeta"),
    ]
    for t in range(L0 // 2 + 1):
        out.append(Derived(f"G(t={t})", (f"C(t={t})",), lambda c: L1 * c, "V_t <mbar(t0) . mbar(t0+t)>"))
    for t in range(1, L0 // 2):
        out.append(Derived(f"m_eff(t={t})", (f"C(t={t - 1})", f"C(t={t})", f"C(t={t + 1})"), _effective_mass,
                           "arccosh((G(t-1) + G(t+1)) / (2 G(t)))"))
    out.append(Derived("xi_2", ("|m|^2", "|m(p_min)|^2"),
                       lambda m2, mp: second_moment_length(m2, mp, p),
                       "sqrt(G(0)/G(p_min) - 1) / (2 sin(p_min/2)), G(p) = V <|m(p)|^2>"))
    return out
