"""Cosh fits of a periodic correlator (observables/fits.py): exact on the free field's lattice
propagator, and honest Gamma-method errors on synthetic autocorrelated chains."""
import math

import numpy as np
import pytest

from observables import fits
from observables.derived import Derived
from tests.exact import free_field_slice_correlator

Z_MAX = 4.0


def exact_free_mass(shape, A, B):
    """cosh m = (B - A (d - 1)) / A: the pole of the zero-spatial-momentum lattice propagator."""
    return math.acosh((B - A * (len(shape) - 1)) / A)


@pytest.mark.parametrize("shape, A, B", [
    ((8, 8), 2.0, 4.0 + 0.5),          # flow form, m^2 = 0.5: cosh m = 1 + m^2/2 = 1.25, m = ln 2
    ((16, 8), 2.0, 4.0 + 0.04),        # light: m L0 = 3.2
    ((12, 4, 4), 2.0, 6.0 + 1.0),      # d = 3
    ((10, 10), 2 * 0.21, 1 - 2 * 0.022),  # hopping form (kappa = 0.21, lambda = 0.022) as a free field
])
def test_fit_to_the_exact_free_propagator_returns_its_pole_mass(shape, A, B):
    L0 = shape[0]
    t = np.arange(1, L0 // 2 + 1)
    G = np.array([free_field_slice_correlator(shape, A, B, k) for k in t])
    fit = fits.cosh_fit(t, G, L0)
    assert fit.converged
    assert fit.m == pytest.approx(exact_free_mass(shape, A, B), rel=1e-10)
    assert fit.chi2 < 1e-20 * np.sum(G**2)


def test_flow_form_free_mass_is_arccosh_of_one_plus_half_m2():
    assert exact_free_mass((8, 8), 2.0, 4.5) == pytest.approx(math.acosh(1 + 0.5 / 2)) == pytest.approx(math.log(2))


def test_correlated_fit_to_exact_data_is_exact_for_any_covariance():
    L0 = 8
    t = np.arange(1, 5)
    G = np.array([free_field_slice_correlator((8, 8), 2.0, 4.5, k) for k in t])
    X = np.random.default_rng(0).standard_normal((4, 4))
    fit = fits.cosh_fit(t, G, L0, cov=X @ X.T + 0.1 * np.eye(4))
    assert fit.m == pytest.approx(math.log(2), rel=1e-10)


def test_uncorrelated_chi2_counts_the_residuals_in_units_of_sigma():
    L0, t = 8, np.arange(1, 5)
    y = fits.cosh_model(t, 2.0, 0.7, L0)
    sigma = np.full(4, 0.01)
    y_bad = y + np.array([0.02, -0.02, 0.02, -0.02])  # not a cosh: the fit cannot absorb it all
    fit = fits.cosh_fit(t, y_bad, L0, sigma=sigma)
    assert fit.dof == 2 and 0 < fit.chi2 <= 16.0  # at most the residuals of the true curve, (2 sigma)^2 x 4


# --------------------------------------------------------------------------- synthetic chains
L0, TIMES, A_TRUE, M_TRUE = 8, (1, 2, 3, 4), 1.0, 0.5


def synthetic_chain(seed, n=1000, a=0.7, noise=0.05):
    """Series "g1".."g4" = A cosh(m (t - 4)) + noise, the noise AR(1) in Monte Carlo time with
    coefficient a (tau_int = (1 + a) / (2 (1 - a)) = 2.83) and a component common to all t (so the
    points are correlated, as those of a real correlator)."""
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, len(TIMES) + 1))
    x = np.empty_like(eps)
    x[0] = eps[0]
    for i in range(1, n):
        x[i] = a * x[i - 1] + math.sqrt(1 - a * a) * eps[i]
    common, own = x[:, :1], x[:, 1:]
    G = fits.cosh_model(np.array(TIMES), A_TRUE, M_TRUE, L0)
    series = G * (1 + noise * (0.7 * common + 0.7 * own))
    return {f"g{t}": series[:, k] for k, t in enumerate(TIMES)}


RECORDS = [Derived(f"G({t})", (f"g{t}",), lambda g: g) for t in TIMES]


def test_pole_mass_of_a_synthetic_chain_agrees_with_the_true_mass():
    res = fits.pole_mass(synthetic_chain(1, n=4000), RECORDS, TIMES, L0)
    z = (res.m.value - M_TRUE) / res.m.error
    assert abs(z) < Z_MAX, f"m = {res.m.value:.5f} +- {res.m.error:.5f}, z = {z:.2f}"
    assert res.mL.value == pytest.approx(L0 * res.m.value) and res.mL.error == pytest.approx(L0 * res.m.error)


@pytest.mark.parametrize("correlated", [False, True])
def test_pole_mass_error_matches_the_spread_over_independent_chains(correlated):
    # the error includes the autocorrelation: the naive error would be sqrt(2 tau_int) = 2.4 x smaller
    ms, errs = [], []
    for seed in range(150):
        res = fits.pole_mass(synthetic_chain(100 + seed), RECORDS, TIMES, L0, correlated=correlated)
        ms.append(res.m.value)
        errs.append(res.m.error)
    spread, mean_err = np.std(ms, ddof=1), np.mean(errs)
    assert 0.8 < spread / mean_err < 1.25, f"spread {spread:.5f} vs mean error {mean_err:.5f}"
    assert abs(np.mean(ms) - M_TRUE) < Z_MAX * spread / math.sqrt(len(ms))


def test_pole_mass_reports_chi2_per_dof_of_order_one_on_a_true_cosh():
    chi2 = [fits.pole_mass(synthetic_chain(300 + s, n=2000), RECORDS, TIMES, L0).fit.chi2_dof for s in range(40)]
    # the common noise component correlates the points, so the uncorrelated chi^2/dof is not chi^2-distributed,
    # but it stays of order one for a model that is right
    assert 0.1 < np.mean(chi2) < 3.0


def test_pole_mass_derived_records_reproduce_the_fit():
    series = synthetic_chain(2)
    res = fits.pole_mass(series, RECORDS, TIMES, L0)
    names = [d.name for d in res.derived]
    assert names == ["m_p", "m_p*L0"]
    means = [series[k].mean() for k in res.derived[0].inputs]
    assert res.derived[0].f(*means) == pytest.approx(res.m.value, rel=1e-12)
    assert "chi^2/dof" in res.summary() and "t = 1..4" in res.summary()
