"""Observables of real scalar phi^4 theory (PHYSICS.md, "phi^4").

Batches have shape (N, L0, L1, ...); axis L0 is "time" for the time-slice correlator and the
pole-mass fit, and the field is in the parameterization the ensemble was made in (the theory object
says which). All functions are vectorized over the batch. Definitions: docs/physics.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import correlators, fits
from .derived import Derived

BATCH_SITES = 1 << 22  # primaries() reads batches of about this many sites
MAX_MOMENT = 6  # raw moments <M^k>, k = 1..6, for the cumulants kappa_2..kappa_6


def _axes(configs: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, configs.ndim))


def magnetization(configs) -> np.ndarray:
    """M = (1/V) sum_x phi_x per configuration; (N,)."""
    configs = np.asarray(configs)
    return configs.mean(axis=_axes(configs))


def abs_field(configs) -> np.ndarray:
    """|phi| = (1/V) sum_x |phi_x| per configuration (the per-site mean of |phi|); (N,)."""
    configs = np.asarray(configs)
    return np.abs(configs).mean(axis=_axes(configs))


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
def point_products(configs, orb: correlators.Orbits | None = None) -> np.ndarray:
    """C(x) = (1/V) sum_y phi_y phi_{y+x}, averaged over each orbit of separations x under the
    lattice symmetry (``correlators``), per configuration; (N, n_orbits), orbits of ``orb``
    (default: of the configurations' lattice)."""
    configs = np.asarray(configs, dtype=np.float64)
    orb = orb or correlators.orbits(configs.shape[1:])
    return correlators.orbit_average(correlators.point_correlator(configs), orb)


def primaries(configs, theory, batch: int | None = None) -> dict[str, np.ndarray]:
    """Per-configuration series, each (N,): "M", "|M|", "|phi|" (the per-site mean of |phi_x|),
    "M^2" .. "M^6", "S/V", "C(t=0)" .. "C(t=L0/2)" (t0-averaged slice products, ``slice_products``),
    "|M(p_min)|^2" (p_min = 2 pi / L0) and the point products "C(x0,x1,...)", one per independent
    separation (``point_products``; e.g. "C(0,0)", "C(1,0)" .. "C(4,4)" on 8 x 8).
    ``configs`` may be any sliceable array (e.g. an h5py dataset)."""
    V = theory.n_dof
    L0 = theory.shape[0]
    orb = correlators.orbits(tuple(theory.shape))
    batch = batch or max(1, BATCH_SITES // V)
    N = len(configs)
    M, S, C, Mp, Aphi = np.empty(N), np.empty(N), np.empty((N, L0 // 2 + 1)), np.empty(N), np.empty(N)
    Cx = np.empty((N, len(orb)))
    for i in range(0, N, batch):
        c = np.ascontiguousarray(configs[i:i + batch], dtype=np.float64)
        if c.shape[1:] != tuple(theory.shape):
            raise ValueError(f"configurations of shape {c.shape[1:]} do not match the theory's lattice {theory.shape}")
        M[i:i + batch] = magnetization(c)
        Aphi[i:i + batch] = abs_field(c)
        S[i:i + batch] = action_density(c, theory)
        C[i:i + batch] = slice_products(c)
        Mp[i:i + batch] = momentum_magnetization_sq(c)
        Cx[i:i + batch] = point_products(c, orb)
    out = {"M": M, "|M|": np.abs(M), "|phi|": Aphi}
    out.update({f"M^{k}": M**k for k in range(2, MAX_MOMENT + 1)})
    out["S/V"] = S
    out.update({f"C(t={t})": C[:, t] for t in range(L0 // 2 + 1)})
    out["|M(p_min)|^2"] = Mp
    out.update({f"C{orb.name(k)}": Cx[:, k] for k in range(len(orb))})
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


def ising_energy_weights(shape: tuple[int, ...]) -> dict[str, float]:
    """E = (1/d) sum_mu G_c(e_mu) as {point-product name: weight}: the d unit separations, merged
    where axes of equal length share an orbit (weights sum to 1)."""
    orb = correlators.orbits(tuple(shape))
    d = len(shape)
    w: dict[str, float] = {}
    for mu in range(d):
        e = tuple(int(nu == mu) for nu in range(d))
        key = f"C{orb.name(orb.index(e))}"
        w[key] = w.get(key, 0.0) + 1.0 / d
    return w


def derived(theory) -> list[Derived]:
    """chi_2, V<M^2>, chi_|M|, U_L, kappa_2..kappa_6 (as V^(n-1) kappa_n), G(t) (t = 0..L0/2),
    m_eff(t) (t = 1..L0/2 - 1), xi_2, the connected point-to-point correlator G_c(x) for every
    independent separation x ("G_c(1,0)", ...) and the Ising energy E_Ising = (1/d) sum_mu G_c(e_mu).

    sum_x G_c(x) = sum over orbits of (orbit size) G_c = chi_2 (identically, configuration by
    configuration: sum_x C(x) = V M^2). The pole mass is a fit with data-dependent weights:
    ``data_derived``."""
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
    orb = correlators.orbits(tuple(theory.shape))
    for k in range(len(orb)):
        name = orb.name(k)
        out.append(Derived(f"G_c{name}", (f"C{name}", "M"), lambda c, m: c - m * m,
                           f"<phi(0) phi(x)> - <M>^2 averaged over translations and the {orb.size[k]} "
                           f"separations of the orbit of x = {name}"))
    weights = ising_energy_weights(theory.shape)
    keys = tuple(weights)
    w = np.array([weights[k] for k in keys])
    out.append(Derived("E_Ising", (*keys, "M"), lambda *a: float(w @ np.array(a[:-1])) - a[-1] ** 2,
                       "Ising energy (1/d) sum_mu G_c(e_mu) (Albergo, Kanwar, Shanahan 2019)"))
    return out


# --------------------------------------------------------------------------- pole mass
def correlator_records(theory) -> dict[int, Derived]:
    """{t: the Derived record of G(t)} for t = 0..L0/2."""
    return {int(d.name[4:-1]): d for d in derived(theory) if d.name.startswith("G(t=")}


def pole_mass(series, theory, t_min: int = 1, t_max: int | None = None, correlated: bool = False,
              S: float = 2.0, every: int = 1, min_block: int = 0) -> fits.PoleMass:
    """Pole mass m_p from a fit A cosh(m_p (t - L0/2)) to G(t), t = t_min..t_max (default 1..L0/2),
    uncorrelated (weights 1/sigma_t^2) or ``correlated``; Gamma-method errors (``fits.pole_mass``).
    Needs at least 3 times (t_max - t_min >= 2)."""
    L0 = theory.shape[0]
    t_max = L0 // 2 if t_max is None else int(t_max)
    if not 0 <= t_min < t_max <= L0 // 2:
        raise ValueError(f"fit range t = {t_min}..{t_max} must lie in 0..L0/2 = {L0 // 2}")
    recs = correlator_records(theory)
    times = list(range(int(t_min), t_max + 1))
    return fits.pole_mass(series, [recs[t] for t in times], times, L0, correlated=correlated, S=S,
                          every=every, name="m_p", min_block=min_block)


def data_derived(series, theory, S: float = 2.0, every: int = 1, min_block: int = 0) -> list[Derived]:
    """Derived quantities whose definition depends on the data: "m_p" and "m_p*L0", the uncorrelated
    cosh fit over t = 1..L0/2 with its weights frozen at the chain's errors of G(t). Empty where the
    fit is impossible (L0/2 < 3, or a G(t) without fluctuations)."""
    L0 = theory.shape[0]
    if L0 // 2 < 3:
        return []
    try:
        return list(pole_mass(series, theory, S=S, every=every, min_block=min_block).derived)
    except (ValueError, np.linalg.LinAlgError):
        return []


# --------------------------------------------------------------------------- tunnelling
@dataclass(frozen=True)
class SignHistory:
    """How often M changed sign over the chain: n measurements, minority_fraction = fraction of
    configurations whose sign of M differs from the majority sign (M = 0 counts as neither),
    changes = number of sign changes between consecutive nonzero measurements, majority = +1 / -1."""

    n: int
    minority_fraction: float
    changes: int
    majority: int


def sign_history(M) -> SignHistory:
    """``SignHistory`` of a magnetization series (N,)."""
    s = np.sign(np.asarray(M, dtype=np.float64))
    n_pos, n_neg = int((s > 0).sum()), int((s < 0).sum())
    majority = 1 if n_pos >= n_neg else -1
    nz = s[s != 0]
    changes = int(np.count_nonzero(nz[1:] != nz[:-1]))
    return SignHistory(len(s), min(n_pos, n_neg) / len(s) if len(s) else 0.0, changes, majority)


RARE_SIGN_CHANGES = 10  # fewer sign changes than this: tunnelling is undersampled


def sign_note(M, V: int) -> str | None:
    """A note for ``measure`` when M (hardly) changes sign over the chain, else None.

    Never: chi_2 = V(<M^2> - <M>^2) subtracts the chain's <M>, the susceptibility of one vacuum,
    while the phi -> -phi symmetric ensemble has <M> = 0 and V<M^2>. Rarely (< 10 changes): <M>,
    chi_2 and their errors are unreliable."""
    M = np.asarray(M, dtype=np.float64)
    h = sign_history(M)
    vm2, vm_sq = V * float(np.mean(M * M)), V * float(np.mean(M)) ** 2
    if h.changes == 0:
        sign = ">" if h.majority > 0 else "<"
        return (f"M never changes sign over the chain ({h.n} configurations, all M {sign} 0): the chain stays in one "
                f"vacuum, so chi_2 = V(<M^2> - <M>^2) subtracts the chain's <M> (the one-vacuum susceptibility); "
                f"V<M^2> = {vm2:.6g} differs from it by V<M>^2 = {vm_sq:.6g} (the symmetric ensemble has <M> = 0; "
                f"chi_|M| is the usual broken-phase estimate)")
    if h.changes < RARE_SIGN_CHANGES:
        return (f"M changes sign only {h.changes} times over the chain ({100 * h.minority_fraction:.1f}% of the "
                f"configurations have the minority sign): tunnelling between the vacua is undersampled, so <M>, chi_2 "
                f"and their errors are unreliable; V<M^2> = {vm2:.6g}, V<M>^2 = {vm_sq:.6g}")
    return None


def notes(series, theory, S: float = 2.0, every: int = 1, min_block: int = 0) -> list[str]:
    """The lines ``measure`` prints under the table: the sign of M (``sign_note``) and the
    pole-mass fit with its chi^2/dof (``pole_mass``; omitted where L0/2 < 3 or G(t) is flat)."""
    out = []
    note = sign_note(series["M"], theory.n_dof)
    if note:
        out.append(note)
    if theory.shape[0] // 2 >= 3:
        try:
            out.append(pole_mass(series, theory, S=S, every=every, min_block=min_block).summary())
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as e:
            out.append(f"pole mass: no fit ({e})")
    return out


def domain_warning(config: np.ndarray, n_blocks: int = 4) -> str | None:
    """A warning when one phi^4 configuration holds ordered domains of both signs (e.g. a hot
    start in the broken phase that froze into domains), else None.

    The lattice is cut into n_blocks^d blocks; the configuration is "in domains" when the blocks
    are locally ordered (mean |block mean| > 0.5 <|phi|>, <|phi|> = per-site mean of |phi| > 1) but
    the sign of the block means differs from the majority in at least 10% of them."""
    config = np.asarray(config, dtype=np.float64)
    abs_phi = float(np.abs(config).mean())
    if abs_phi <= 1.0 or any(n % n_blocks for n in config.shape):
        return None
    shape = [s for n in config.shape for s in (n_blocks, n // n_blocks)]
    means = config.reshape(shape).mean(axis=tuple(range(1, 2 * config.ndim, 2))).ravel()
    minority = min(np.mean(means > 0), np.mean(means < 0))
    if np.abs(means).mean() > 0.5 * abs_phi and minority >= 0.1:
        return (f"the last configuration holds ordered domains of both signs (M = {config.mean():.3g} against "
                f"per-site <|phi|> = {abs_phi:.3g}; {minority:.0%} of {means.size} blocks have the minority sign): "
                "the chain is far from equilibrium and may stay there for very long (a hot start in the broken "
                "phase); start with --init ordered, or run much longer and check the history of M")
    return None
