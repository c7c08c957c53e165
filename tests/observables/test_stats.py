"""Tests of observables.stats: Gamma method (Wolff, CPC 156 (2004) 143), jackknife, reweighting.

Synthetic data: stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) eps_t with unit variance,
exact rho(t) = rho^t and tau_int = 1/2 + rho/(1 - rho).  pyerrors is a test-only reference.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pyerrors as pe
import pytest
from scipy.signal import lfilter

from observables.derived import Derived
from observables.stats import (
    Estimate,
    ShortChainWarning,
    autocorrelation,
    gamma_method,
    gamma_method_derived,
    jackknife,
    stationarity,
    weighted_mean,
)


def ar1(rho: float, n: int, seed: int, chains: int | None = None) -> np.ndarray:
    """Stationary AR(1) chain(s) with unit variance: shape (n,) or (chains, n)."""
    rng = np.random.default_rng(seed)
    shape = (n,) if chains is None else (chains, n)
    eps = rng.standard_normal(shape)
    start = rng.standard_normal(shape[:-1] + (1,))  # x_{-1} ~ N(0, 1): stationary from t = 0
    return lfilter([math.sqrt(1 - rho**2)], [1.0, -rho], eps, axis=-1, zi=rho * start)[0]


def exact_tau_int(rho: float) -> float:
    return 0.5 + rho / (1 - rho)


def pyerrors_obs(x: np.ndarray) -> pe.Obs:
    obs = pe.Obs([x], ["ens"])
    obs.gamma_method(S=2.0)
    return obs


# --------------------------------------------------------------------------- tau_int and error
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_tau_int_of_ar1_matches_exact(rho):
    est = gamma_method(ar1(rho, 100_000, seed=11))
    assert abs(est.tau_int - exact_tau_int(rho)) < 4 * est.tau_int_error + 1e-3


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_error_of_ar1_mean_matches_exact(rho):
    n = 100_000
    est = gamma_method(ar1(rho, n, seed=12))
    exact = math.sqrt(2 * exact_tau_int(rho) / n)  # sigma^2 = 1
    assert abs(est.error - exact) < 4 * est.error_error


def test_autocorrelation_fft_equals_direct_sum():
    x = np.random.default_rng(3).standard_normal(301)
    d = x - x.mean()
    direct = np.array([d[: len(d) - t] @ d[t:] / (len(d) - t) for t in range(151)])
    np.testing.assert_allclose(autocorrelation(x), direct / direct[0], rtol=1e-10, atol=1e-12)


def test_autocorrelation_of_ar1_decays_like_rho_to_the_t():
    rho = autocorrelation(ar1(0.7, 200_000, seed=4), max_lag=5)
    np.testing.assert_allclose(rho, 0.7 ** np.arange(6), atol=0.02)


def test_constant_series_has_zero_error_and_tau_one_half():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = gamma_method(np.full(1000, 2.5))
        rho = autocorrelation(np.full(1000, 2.5))
    assert (est.value, est.error, est.tau_int, est.tau_int_error) == (2.5, 0.0, 0.5, 0.0)
    assert np.all(np.isfinite(rho)) and rho[0] == 1.0 and not np.any(rho[1:])


def test_gamma_method_is_fast_for_a_million_points():
    import time

    x = ar1(0.5, 1_000_000, seed=5)
    start = time.perf_counter()
    gamma_method(x)
    assert time.perf_counter() - start < 5.0


# --------------------------------------------------------------------------- against pyerrors
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_primary_agrees_with_pyerrors(rho):
    """Same Gamma(t), window range, windowing condition and bias-corrected error as pyerrors 2.x.

    pyerrors reports tau_int(W)(1 + (2W+1)/N)/(1 + 1/N) (ours lacks the 1/(1 + 1/N)) and evaluates the
    Madras-Sokal error with the uncorrected tau_int(W): differences of O(1/N) and O(W/N).
    """
    x = ar1(rho, 20_000, seed=21)
    est, obs = gamma_method(x), pyerrors_obs(x)
    assert est.value == pytest.approx(obs.value, rel=1e-10)
    assert est.window == obs.e_windowsize["ens"]
    assert est.error == pytest.approx(obs.dvalue, rel=1e-6)
    assert est.tau_int == pytest.approx(obs.e_tauint["ens"], rel=1e-3)
    assert est.tau_int_error == pytest.approx(obs.e_dtauint["ens"], rel=0.03)


def test_derived_ratio_agrees_with_pyerrors():
    a = 3.0 + ar1(0.7, 20_000, seed=31)
    b = 2.0 + 0.5 * ar1(0.8, 20_000, seed=32) + 0.3 * a
    est = gamma_method_derived(Derived("r", ("a", "b"), lambda a, b: a / b), {"a": a, "b": b})
    ratio = pe.Obs([a], ["ens"]) / pe.Obs([b], ["ens"])
    ratio.gamma_method(S=2.0)
    assert est.value == pytest.approx(ratio.value, rel=1e-10)
    assert est.error == pytest.approx(ratio.dvalue, rel=1e-4)
    assert est.tau_int == pytest.approx(ratio.e_tauint["ens"], rel=1e-3)


def test_derived_susceptibility_agrees_with_pyerrors():
    """chi = V (<M^2> - <M>^2) from the primaries M and M^2."""
    m = 0.4 + ar1(0.9, 20_000, seed=33)
    volume = 64.0
    chi = Derived("chi", ("M", "M2"), lambda m, m2: volume * (m2 - m**2))
    est = gamma_method_derived(chi, {"M": m, "M2": m**2})
    om, om2 = pe.Obs([m], ["ens"]), pe.Obs([m**2], ["ens"])
    ref = volume * (om2 - om**2)
    ref.gamma_method(S=2.0)
    assert est.name == "chi"
    assert est.value == pytest.approx(ref.value, rel=1e-10)
    assert est.error == pytest.approx(ref.dvalue, rel=1e-4)


# --------------------------------------------------------------------------- coverage
@pytest.mark.parametrize("n_sigma, expected", [(1, 0.683), (2, 0.954)])
def test_interval_covers_true_mean_at_nominal_rate(n_sigma, expected):
    chains = ar1(0.8, 2000, seed=41, chains=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        estimates = [gamma_method(c) for c in chains]
    covered = np.mean([abs(e.value) < n_sigma * e.error for e in estimates])
    band = 4 * math.sqrt(expected * (1 - expected) / len(chains))
    assert abs(covered - expected) < band


# --------------------------------------------------------------------------- flags and units
def test_short_chain_warns():
    with pytest.warns(ShortChainWarning):
        est = gamma_method(ar1(0.9, 200, seed=51))
    assert est.short


def test_long_chain_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = gamma_method(ar1(0.5, 10_000, seed=52))
    assert not est.short


def test_every_scales_tau_int_updates():
    x = ar1(0.5, 10_000, seed=53)
    one, ten = gamma_method(x), gamma_method(x, every=10)
    assert ten.tau_int == one.tau_int and ten.error == one.error
    assert ten.tau_int_updates == pytest.approx(10 * one.tau_int)


def test_n_eff_is_n_over_two_tau_int():
    est = gamma_method(ar1(0.5, 10_000, seed=54))
    assert est.n_eff == pytest.approx(est.n / (2 * est.tau_int))


@pytest.mark.parametrize(
    "value, error, expected",
    [
        (0.123456, 0.001234, "0.1235 ± 0.0012 [tau_int = 4.52(31), N_eff = 1105]"),
        (56789.0, 1234.0, "56800 ± 1200 [tau_int = 4.52(31), N_eff = 1105]"),
        (1.23456, 0.0996, "1.23 ± 0.10 [tau_int = 4.52(31), N_eff = 1105]"),
    ],
)
def test_str_is_one_line_with_two_significant_digits(value, error, expected):
    est = Estimate(value=value, error=error, tau_int=4.523, tau_int_error=0.312, window=20, n=10_000)
    assert str(est) == expected


def test_as_dict_is_json_serialisable():
    import json

    est = gamma_method(ar1(0.5, 5000, seed=55), every=4)
    d = json.loads(json.dumps(est.as_dict()))
    assert d["tau_int_updates"] == pytest.approx(4 * d["tau_int"])
    assert d["n"] == 5000 and d["error"] == est.error


# --------------------------------------------------------------------------- stationarity
def test_stationarity_passes_a_stationary_chain():
    z, flagged = stationarity(ar1(0.8, 20_000, seed=61))
    assert not flagged and abs(z) < 3


def test_stationarity_flags_a_drift():
    n = 20_000
    x = ar1(0.8, n, seed=62) + np.linspace(0.0, 1.0, n)
    z, flagged = stationarity(x)
    assert flagged and z < -3


# --------------------------------------------------------------------------- reweighting
def test_weighted_mean_with_equal_weights_is_plain_mean():
    x = np.random.default_rng(71).standard_normal(1000)
    value, error, ess = weighted_mean(x, np.full(1000, 7.0))
    assert value == pytest.approx(x.mean(), rel=1e-12)
    assert error == pytest.approx(x.std(ddof=1) / math.sqrt(1000), rel=1e-12)
    assert ess == pytest.approx(1.0)


def test_weighted_mean_reweights_gaussian_to_shifted_gaussian():
    """Samples from N(0, 1) with w = N(x; 0.3, 1)/N(x; 0, 1), log w = 0.3 x - 0.045 (+ huge offset)."""
    x = np.random.default_rng(72).standard_normal(20_000)
    value, error, ess = weighted_mean(x, 0.3 * x - 0.045 + 1000.0)
    assert abs(value - 0.3) < 4 * error
    assert ess == pytest.approx(math.exp(-0.3**2), rel=0.05)  # ESS/N = 1/E[w^2] = exp(-mu^2)


# --------------------------------------------------------------------------- jackknife
def test_jackknife_of_linear_function_is_mean_with_gamma_error():
    x = ar1(0.8, 50_000, seed=81)
    value, error = jackknife(lambda m: m, [x])
    est = gamma_method(x)
    assert value == pytest.approx(x.mean(), rel=1e-12, abs=1e-15)
    assert error == pytest.approx(est.error, rel=0.2)


def test_jackknife_of_derived_agrees_with_gamma_propagation():
    a = 3.0 + ar1(0.7, 50_000, seed=82)
    b = 2.0 + 0.5 * ar1(0.8, 50_000, seed=83) + 0.3 * a
    ratio = Derived("r", ("a", "b"), lambda a, b: a / b)
    value, error = jackknife(ratio, {"b": b, "a": a})  # Derived.inputs fix the argument order
    est = gamma_method_derived(ratio, {"a": a, "b": b})
    assert value == pytest.approx(est.value, rel=1e-12)
    assert error == pytest.approx(est.error, rel=0.2)
