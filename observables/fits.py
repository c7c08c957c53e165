"""Fits of Monte Carlo correlators (docs/physics.md, "Pole mass"): numpy only.

``cosh_fit``   weighted (or correlated) least squares of A cosh(m (t - L0/2)) to a periodic
               zero-momentum correlator G(t): a plain function of numbers.
``pole_mass``  the fit with Gamma-method errors: G(t) and its errors from the chain, the weights
               frozen at those errors, and the fitted m (and A, m L0) propagated as derived
               quantities ``Derived`` (a fit with fixed weights is a smooth function of the means
               of the primaries, so ``stats.gamma_method_derived`` applies; the fluctuation of the
               weights themselves is a higher-order effect).

The model is exact for a single state on the periodic time axis: the free lattice field has
G(t) = cosh(m (t - L0/2)) / (2 A sinh m sinh(m L0 / 2)) for t = 0..L0 with cosh m = (B - A (d - 1)) / A
(``S = sum_x [-A sum_mu phi phi_{x+mu} + B phi^2]``; flow parameterization: cosh m = 1 + m^2/2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .derived import Derived
from .stats import Estimate, _derivative_steps, _gradient, _primaries, format_value_error, gamma_method_derived

MAX_ITER = 200
GRID = 400  # start values: chi^2 on a log grid of m, then Gauss-Newton / Levenberg-Marquardt


@dataclass(frozen=True)
class CoshFit:
    """Result of ``cosh_fit``: G(t) = A cosh(m (t - L0/2)) on the points t.

    chi2 = r^T r with the whitened residuals r (sigma or cov); dof = len(t) - 2; converged: the
    Gauss-Newton steps fell below 1e-13 relative (else the last iterate)."""

    A: float
    m: float
    chi2: float
    dof: int
    converged: bool

    @property
    def chi2_dof(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else math.nan


def cosh_model(t, A: float, m: float, L0: int) -> np.ndarray:
    """A cosh(m (t - L0/2))."""
    return A * np.cosh(m * (np.asarray(t, dtype=np.float64) - L0 / 2))


def _whitener(n: int, sigma=None, cov=None) -> np.ndarray:
    """K with chi^2 = |K (y - model)|^2: K = diag(1/sigma), or K = inverse Cholesky factor of cov, or 1."""
    if cov is not None:
        if sigma is not None:
            raise ValueError("give sigma or cov, not both")
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (n, n):
            raise ValueError(f"cov must be ({n}, {n}), got {cov.shape}")
        return np.linalg.inv(np.linalg.cholesky(cov))
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=np.float64)
        if sigma.shape != (n,) or not np.all(sigma > 0):
            raise ValueError("sigma must be positive, one per point")
        return np.diag(1.0 / sigma)
    return np.eye(n)


def cosh_fit(t, y, L0: int, sigma=None, cov=None, whitener: np.ndarray | None = None) -> CoshFit:
    """Least-squares fit of G(t) = A cosh(m (t - L0/2)) to the points (t, y) -> CoshFit (m >= 0).

    chi^2 = |K (y - model)|^2 with K = diag(1/sigma) (uncorrelated), the inverse Cholesky factor of
    cov (correlated), a given ``whitener`` K, or K = 1 (plain least squares). Start values: the
    minimum of chi^2(m) on a log grid of m in [1e-4, min(10, 600/L0)], A eliminated (for fixed m the
    model is linear in A: A(m) = (b.z)/(b.b) with b = K cosh(m (t - L0/2)), z = K y);
    then Levenberg-Marquardt steps in (A, m) until the relative step is below 1e-13, so that the result
    is a smooth function of y (as Gamma-method error propagation by central differences needs)."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.shape != y.shape or t.ndim != 1 or len(t) < 2:
        raise ValueError("t and y must be 1-d of equal length >= 2")
    K = whitener if whitener is not None else _whitener(len(t), sigma, cov)
    if not np.all(np.isfinite(y)):
        return CoshFit(math.nan, math.nan, math.nan, len(t) - 2, False)
    tau = t - L0 / 2
    z = K @ y
    m_max = min(10.0, 600.0 / max(L0, 1))
    grid = np.geomspace(1e-4, m_max, GRID)
    b = np.cosh(np.outer(grid, tau)) @ K.T  # (GRID, n): K cosh(m tau) for every m of the grid
    amp = (b @ z) / np.einsum("gi,gi->g", b, b)
    chi = np.sum((z[None, :] - amp[:, None] * b) ** 2, axis=1)
    k = int(np.argmin(chi))
    m, A = float(grid[k]), float(amp[k])
    lam, converged = 1e-3, False
    chi2 = float(np.sum((z - K @ cosh_model(t, A, m, L0)) ** 2))
    for _ in range(MAX_ITER):
        c, s = np.cosh(m * tau), np.sinh(m * tau)
        r = z - K @ (A * c)
        J = K @ np.stack([c, A * tau * s], axis=1)
        JTJ, g = J.T @ J, J.T @ r
        if not np.all(np.isfinite(JTJ)) or np.linalg.det(JTJ) <= 0:
            break  # degenerate (A = 0, or m -> 0 with a flat model): no Gauss-Newton direction
        while True:
            step = np.linalg.solve(JTJ + lam * np.diag(np.diag(JTJ)), g)
            A_new, m_new = A + step[0], m + step[1]
            r_new = z - K @ cosh_model(t, A_new, m_new, L0)
            chi2_new = float(r_new @ r_new)
            if chi2_new <= chi2 or lam > 1e12:
                break
            lam *= 10
        small = abs(step[0]) <= 1e-13 * max(abs(A_new), 1e-300) and abs(step[1]) <= 1e-13 * max(abs(m_new), 1e-12)
        if chi2_new <= chi2:
            A, m, chi2 = A_new, m_new, chi2_new
            lam = max(lam / 10, 1e-12)
        if small:
            converged = True
            break
    return CoshFit(float(A), float(abs(m)), float(chi2), len(t) - 2, converged)


# ----------------------------------------------------------------------------------------------
# the fit with Gamma-method errors
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoleMass:
    """``pole_mass``: m (the pole mass m_p), m*L0 and A with Gamma-method errors, chi^2 of the fit.

    derived: the Derived records (names ``name``, ``name*L0``, ``name:A``) with the weights frozen,
    for ``estimate_all``-style use; t: the fitted times; correlated: whether cov was used."""

    m: Estimate
    mL: Estimate
    A: Estimate
    fit: CoshFit
    t: tuple[int, ...]
    L0: int
    correlated: bool
    derived: tuple[Derived, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line: fit kind, range, m_p, m_p L0, chi^2/dof."""
        m, e = format_value_error(self.m.value, self.m.error)
        ml, el = format_value_error(self.mL.value, self.mL.error)
        kind = "correlated" if self.correlated else "uncorrelated"
        return (f"pole mass: {kind} fit A cosh(m (t - L0/2)) to G(t), t = {self.t[0]}..{self.t[-1]}: "
                f"{self.m.name} = {m} ± {e}, {self.mL.name} = {ml} ± {el}, "
                f"chi^2/dof = {self.fit.chi2_dof:.3g} (dof {self.fit.dof})")


def _fluctuations(d: Derived, series: Mapping[str, np.ndarray]) -> np.ndarray:
    """Linearised per-measurement fluctuations of a derived quantity, sum_a f_a (a_i - abar_a)
    (the series ``stats.gamma_method_derived`` analyses)."""
    arrays = _primaries(series, d.inputs)
    means = np.array([a.mean() for a in arrays])
    grad = _gradient(d.f, means, _derivative_steps(arrays, 1e-2))
    return sum(g * (a - m) for g, a, m in zip(grad, arrays, means))


def pole_mass(series: Mapping[str, np.ndarray], correlator: Sequence[Derived], times: Sequence[int], L0: int,
              correlated: bool = False, S: float = 2.0, every: int = 1, name: str = "m_p",
              min_block: int = 0) -> PoleMass:
    """Cosh fit to a correlator G(t) given as derived quantities, with Gamma-method errors.

    correlator[k] is the Derived record of G(times[k]) (e.g. phi4's "G(t=k)"), a function of means of
    the primaries in ``series``. Steps:
    1. G(t) and its error sigma_t by ``gamma_method_derived`` (autocorrelations included);
    2. the weights: K = diag(1/sigma_t), or with ``correlated`` the inverse Cholesky factor of
       cov = D rho D, D = diag(sigma_t), rho the equal-time correlation matrix of the linearised
       fluctuations of the G(t) (positive semi-definite by construction);
    3. m, m L0 and A as derived quantities F(means) = cosh_fit(t, G(t; means), K) with K frozen,
       errors by ``gamma_method_derived``; chi^2 at the central values.
    min_block > 0 is passed on to the Gamma method (sticky chains, as in ``analysis.estimate_all``).
    """
    opts = {"S": S, "every": every, **({"min_block": int(min_block)} if min_block else {})}
    if len(correlator) != len(times) or len(times) < 3:
        raise ValueError("need one Derived per time and at least 3 times (2 parameters, dof >= 1)")
    ests = [gamma_method_derived(d, series, **opts) for d in correlator]
    sigma = np.array([e.error for e in ests])
    if not np.all(sigma > 0):
        raise ValueError("a correlator point has zero error; cannot weight the fit")
    if correlated:
        delta = np.stack([_fluctuations(d, series) for d in correlator])
        rho = np.corrcoef(delta)
        K = _whitener(len(times), cov=rho * np.outer(sigma, sigma))
    else:
        K = _whitener(len(times), sigma=sigma)
    inputs = tuple(dict.fromkeys(k for d in correlator for k in d.inputs))
    slots = [[inputs.index(k) for k in d.inputs] for d in correlator]
    t = np.asarray(times, dtype=np.float64)

    def fit_of(*means) -> CoshFit:
        y = np.array([d.f(*(means[i] for i in s)) for d, s in zip(correlator, slots)], dtype=np.float64)
        return cosh_fit(t, y, L0, whitener=K)

    records = (Derived(name, inputs, lambda *a: fit_of(*a).m, f"pole mass, cosh fit t = {times[0]}..{times[-1]}"),
               Derived(f"{name}*L0", inputs, lambda *a: fit_of(*a).m * L0, "pole mass times the time extent L0"),
               Derived(f"{name}:A", inputs, lambda *a: fit_of(*a).A, "amplitude A of the cosh fit"))
    m, mL, A = (gamma_method_derived(d, series, **opts) for d in records)
    central = fit_of(*[np.mean(series[k]) for k in inputs])
    return PoleMass(m, mL, A, central, tuple(int(x) for x in times), L0, correlated, records[:2])
