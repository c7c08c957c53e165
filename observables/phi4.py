"""Observables of real scalar phi^4 theory (PHYSICS.md, "phi^4").

Batches have shape (N, L0, L1, ...); axis L0 is "time" for the time-slice correlator, and
the field is in the parameterization the ensemble was made in (the theory object says which).
All functions are vectorized over the batch.
"""
from __future__ import annotations

import math

import numpy as np

from .derived import Derived

BATCH_SITES = 1 << 22  # primaries() reads batches of about this many sites
MAX_MOMENT = 6  # raw moments <M^k>, k = 1..6, for the cumulants kappa_2..kappa_6


def _axes(configs: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, configs.ndim))


def magnetization(configs) -> np.ndarray:
    """M = (1/V) sum_x phi_x per configuration; (N,)."""
    configs = np.asarray(configs)
    return configs.mean(axis=_axes(configs))


def slice_means(configs) -> np.ndarray:
    """Mbar(t) = mean of phi over the time slice x0 = t; (N, L0)."""
    configs = np.asarray(configs)
    return configs.mean(axis=tuple(range(2, configs.ndim))) if configs.ndim > 2 else configs


def slice_products(configs) -> np.ndarray:
    """C(t) = (1/L0) sum_t0 Mbar(t0) Mbar(t0 + t) (periodic in t0) for t = 0..L0//2; (N, L0//2 + 1).

    The zero-momentum two-point function is G(t) = V_t (<C(t)> - <M>^2), V_t = V / L0 (``derived``);
    C(L0 - t) = C(t), so t <= L0/2 holds all of it."""
    mb = slice_means(configs)
    L0 = mb.shape[1]
    return np.stack([(mb * np.roll(mb, -t, axis=1)).mean(axis=1) for t in range(L0 // 2 + 1)], axis=1)


def momentum_magnetization_sq(configs, n: int = 1) -> np.ndarray:
    """|M(p)|^2 = |(1/V) sum_x phi_x e^{i p x0}|^2 at p = 2 pi n / L0; (N,).

    Fourier transform of the time-slice correlator: G(p) = V_t sum_t G(t) cos(p t) = V <|M(p)|^2>
    for p != 0 (and G(0) = V (<M^2> - <M>^2) = chi_2)."""
    mb = slice_means(configs)
    L0 = mb.shape[1]
    phase = np.exp(2j * math.pi * n * np.arange(L0) / L0)
    return np.abs(mb @ phase / L0) ** 2


def action_density(configs, theory) -> np.ndarray:
    """S[phi] / V per configuration, from the theory's action (its parameterization); (N,)."""
    configs = np.ascontiguousarray(configs, dtype=np.float64)
    return theory.action_batch(configs) / math.prod(configs.shape[1:])


def cumulants(moments) -> list:
    """Cumulants kappa_1..kappa_n from raw moments m_1..m_n (numbers or arrays), by the recursion
    kappa_n = m_n - sum_{k=1}^{n-1} binom(n-1, k-1) kappa_k m_{n-k}."""
    kappa = []
    for n in range(1, len(moments) + 1):
        kappa.append(moments[n - 1] - sum(math.comb(n - 1, k - 1) * kappa[k - 1] * moments[n - k - 1]
                                           for k in range(1, n)))
    return kappa


# --------------------------------------------------------------------------- analysis
def primaries(configs, theory, batch: int | None = None) -> dict[str, np.ndarray]:
    """Per-configuration series, each (N,): "M", "|M|", "M^2" .. "M^6", "S/V", "C(t=0)" ..
    "C(t=L0/2)" (t0-averaged slice products, ``slice_products``) and "|M(p_min)|^2"
    (p_min = 2 pi / L0). ``configs`` may be any sliceable array (e.g. an h5py dataset)."""
    V = theory.n_dof
    L0 = theory.shape[0]
    batch = batch or max(1, BATCH_SITES // V)
    N = len(configs)
    M, S, C, Mp = np.empty(N), np.empty(N), np.empty((N, L0 // 2 + 1)), np.empty(N)
    for i in range(0, N, batch):
        c = np.ascontiguousarray(configs[i:i + batch], dtype=np.float64)
        if c.shape[1:] != tuple(theory.shape):
            raise ValueError(f"configurations of shape {c.shape[1:]} do not match the theory's lattice {theory.shape}")
        M[i:i + batch] = magnetization(c)
        S[i:i + batch] = action_density(c, theory)
        C[i:i + batch] = slice_products(c)
        Mp[i:i + batch] = momentum_magnetization_sq(c)
    out = {"M": M, "|M|": np.abs(M)}
    out.update({f"M^{k}": M**k for k in range(2, MAX_MOMENT + 1)})
    out["S/V"] = S
    out.update({f"C(t={t})": C[:, t] for t in range(L0 // 2 + 1)})
    out["|M(p_min)|^2"] = Mp
    return out


def _effective_mass(c_minus, c, c_plus, m):
    """arccosh((G(t-1) + G(t+1)) / (2 G(t))), G(t) proportional to C(t) - <M>^2; NaN where the
    argument is below 1 (noise)."""
    m2 = m * m
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arccosh((c_minus + c_plus - 2 * m2) / (2 * (c - m2)))


def second_moment_length(g0, gp, p: float):
    """xi_2 = sqrt(G(0)/G(p) - 1) / (2 sin(p/2)) from G(p) at p = 0 and p = p_min; NaN where
    G(0) < G(p) (noise)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt(g0 / gp - 1) / (2 * math.sin(p / 2))


def derived(theory) -> list[Derived]:
    """chi_2, V<M^2>, chi_|M|, U_L, kappa_2..kappa_6 (as V^(n-1) kappa_n), G(t) (t = 0..L0/2),
    m_eff(t) (t = 1..L0/2 - 1) and xi_2."""
    V = theory.n_dof
    L0 = theory.shape[0]
    Vt = V / L0
    p = 2 * math.pi / L0
    moments = tuple(f"M^{k}" if k > 1 else "M" for k in range(1, MAX_MOMENT + 1))
    out = [
        Derived("chi_2", ("M", "M^2"), lambda m, m2: V * (m2 - m * m), "V (<M^2> - <M>^2)"),
        Derived("V<M^2>", ("M^2",), lambda m2: V * m2, "V <M^2>"),
        Derived("chi_|M|", ("|M|", "M^2"), lambda a, m2: V * (m2 - a * a), "V (<M^2> - <|M|>^2)"),
        Derived("U_L", ("M^2", "M^4"), lambda m2, m4: 1 - m4 / (3 * m2 * m2), "Binder 1 - <M^4> / (3 <M^2>^2)"),
    ]
    for n in range(2, MAX_MOMENT + 1):
        out.append(Derived(f"kappa_{n}", moments[:n],
                           lambda *m, n=n: V ** (n - 1) * cumulants(m)[n - 1],
                           f"V^{n - 1} kappa_{n}(M), cumulant from the raw moments <M^k>"))
    for t in range(L0 // 2 + 1):
        out.append(Derived(f"G(t={t})", (f"C(t={t})", "M"), lambda c, m: Vt * (c - m * m),
                           "V_t (<Mbar(t0) Mbar(t0+t)> - <M>^2), averaged over t0"))
    for t in range(1, L0 // 2):
        out.append(Derived(f"m_eff(t={t})", (f"C(t={t - 1})", f"C(t={t})", f"C(t={t + 1})", "M"),
                           _effective_mass, "arccosh((G(t-1) + G(t+1)) / (2 G(t)))"))
    out.append(Derived(
        "xi_2", ("M", "M^2", "|M(p_min)|^2"),
        lambda m, m2, mp: second_moment_length(m2 - m * m, mp, p),
        "second-moment correlation length sqrt(G(0)/G(p_min) - 1) / (2 sin(p_min/2)), "
        "G(p) = V_t sum_t G(t) cos(p t): G(0) = V(<M^2> - <M>^2), G(p_min) = V <|M(p_min)|^2>"))
    return out
