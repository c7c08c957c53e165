"""lattice/vonmises.py: exact Best-Fisher von Mises draws from disjoint counter streams."""
import math

import numpy as np
import pytest
from scipy.special import ive

from lattice.rng import uniforms
from lattice.vonmises import draw, vonmises

N = 20_000
P_MIN = 1e-3  # KS p-value below which a (fixed-seed) sample is declared not from the density


def vm_cdf(kappa: float):
    """CDF of VM(0, kappa) on [-pi, pi] by the trapezoidal rule on a fine grid (normalized by
    its own integral, so independent of the sampler's formulas and of Bessel functions)."""
    x = np.linspace(-np.pi, np.pi, 400_001)
    dens = np.exp(kappa * (np.cos(x) - 1.0))
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(x))])
    cum /= cum[-1]
    return lambda t: np.interp(t, x, cum)


def kolmogorov_p(d: float, n: int) -> float:
    """P(sqrt(n) D_n > sqrt(n) d) from the Kolmogorov distribution:
    Q(l) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 l^2), with Stephens' finite-n correction of l."""
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    if lam < 0.2:
        return 1.0
    return min(1.0, 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101)))


def ks_p_value(sample: np.ndarray, cdf) -> float:
    """One-sample Kolmogorov-Smirnov test of ``sample`` against ``cdf``."""
    x = np.sort(sample)
    f = cdf(x)
    n = len(x)
    d = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))
    return kolmogorov_p(d, n)


@pytest.mark.parametrize("kappa", [0.0, 1e-4, 0.3, 1.0, 4.0, 20.0, 80.0, 500.0])
def test_draws_follow_the_von_mises_density(kappa):
    d = vonmises(np.full(N, kappa), key=1234 + int(kappa * 10))
    assert np.all(np.abs(d) <= np.pi)
    assert ks_p_value(d, vm_cdf(kappa)) > P_MIN


@pytest.mark.parametrize("kappa", [1.0, 4.0, 80.0])
def test_ks_check_detects_a_wrong_concentration(kappa):
    d = vonmises(np.full(N, kappa), key=99)
    assert ks_p_value(d, vm_cdf(1.15 * kappa)) < 1e-6


@pytest.mark.parametrize("kappa", [1e-6, 1e-3, 0.7, 3.0, 60.0, 1e4])
def test_mean_cosine_is_the_bessel_ratio(kappa):
    c = np.cos(vonmises(np.full(N, kappa), key=7))
    z = (c.mean() - ive(1, kappa) / ive(0, kappa)) / (c.std() / math.sqrt(N))
    assert abs(z) < 4.0


def test_large_concentration_has_variance_one_over_kappa():
    # d ~ N(0, 1/kappa) (1 + O(1/kappa)): checks the cancellation-free tail of the rewritten formulas
    kappa = 1e6
    d = vonmises(np.full(N, kappa), key=3)
    var = np.mean(d**2) * kappa
    assert abs(var - (1 + 1 / (2 * kappa))) < 4 * math.sqrt(2 / N)


def test_a_draw_depends_only_on_key_stream_and_kappa():
    kappa = np.array([0.5, 2.0, 30.0, 1e-5])
    other = kappa.copy()
    other[1] = 7.0
    a, b = vonmises(kappa, 5), vonmises(other, 5)
    assert a[1] != b[1]
    np.testing.assert_array_equal(a[[0, 2, 3]], b[[0, 2, 3]])
    assert draw(kappa[2], np.uint64(5), np.int64(2)) == a[2]  # the scalar kernel gives the same stream
    assert np.all(vonmises(kappa, 6) != a)  # another key, other draws


def textbook_best_fisher_first_round(kappa: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best & Fisher (1979) as printed, one round from uniforms u (n, 3): (accepted, draw)."""
    tau = 1.0 + math.sqrt(1.0 + 4.0 * kappa**2)
    rho = (tau - math.sqrt(2.0 * tau)) / (2.0 * kappa)
    r = (1.0 + rho**2) / (2.0 * rho)
    z = np.cos(np.pi * u[:, 0])
    f = (1.0 + r * z) / (r + z)
    c = kappa * (r - f)
    accepted = (c * (2.0 - c) > u[:, 1]) | (np.log(c / u[:, 1]) + 1.0 - c >= 0.0)
    return accepted, np.where(u[:, 2] > 0.5, 1.0, -1.0) * np.arccos(np.clip(f, -1.0, 1.0))


def test_first_round_is_the_textbook_algorithm_and_the_fallback_stays_exact():
    # stride 3 = one round per stream range: stream i's first round uses u(key, 3 i + 0, 1, 2), and every
    # rejected first round continues on the stream's fallback key
    kappa = 1.5
    short = vonmises(np.full(N, kappa), 11, stride=3)
    accepted, d = textbook_best_fisher_first_round(kappa, uniforms(np.uint64(11), 3 * N).reshape(N, 3))
    np.testing.assert_allclose(short[accepted], d[accepted], rtol=0, atol=1e-9)
    assert 0.05 < 1.0 - accepted.mean() < 0.35  # Best-Fisher accepts a round with probability >= 0.65
    assert ks_p_value(short, vm_cdf(kappa)) > P_MIN  # so the fallback draws are von Mises too
