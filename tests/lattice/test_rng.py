"""Specification of lattice.rng: counter-based SplitMix64 uniforms in (0, 1] and Ziggurat normals.

The statistical tests use fixed keys, so they are deterministic; their tolerances are
checked to reject slightly broken generators as well as to accept the real one.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lattice.rng import new_key, normal, normals, uniform, uniforms

N = 1_000_000
KEYS = [0, 1, 12345, 0xDEADBEEFCAFE, 2**63]


def stream(key: int, n: int = N) -> np.ndarray:
    return uniforms(np.uint64(key), n)


def uniformity_failures(u: np.ndarray) -> list[str]:
    """Names of the checks that u fails: range (0, 1], mean, variance (5 sigma each), KS (p < 1e-4)."""
    n = u.size
    failures = []
    if not (u.min() > 0.0 and u.max() <= 1.0):
        failures.append("range")
    if abs(u.mean() - 0.5) > 5 * np.sqrt(1 / 12 / n):
        failures.append("mean")
    if abs(u.var() - 1 / 12) > 5 * np.sqrt((1 / 80 - 1 / 144) / n):  # Var(s^2) = (mu_4 - sigma^4) / n
        failures.append("variance")
    if stats.kstest(u, "uniform", method="asymp").pvalue < 1e-4:
        failures.append("ks")
    return failures


def correlation_z(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation in units of its standard error 1/sqrt(n) under independence."""
    return float(np.corrcoef(a, b)[0, 1] * np.sqrt(a.size))


def _pcg(n: int = N) -> np.ndarray:
    return 1.0 - np.random.default_rng(2024).random(n)  # in (0, 1]


def _sticky(n: int = N) -> np.ndarray:
    """Repeats the previous number 2% of the time."""
    u = _pcg(n)
    repeat = np.random.default_rng(7).random(n) < 0.02
    idx = np.arange(n)
    idx[repeat] = 0
    idx = np.maximum.accumulate(idx)
    return u[idx]


BROKEN = {
    "8-bit-resolution": lambda: np.floor(_pcg() * 256) / 256 + 1 / 256,
    "power-bias-u^1.01": lambda: _pcg() ** 1.01,
    "range-shrunk-0.5%": lambda: 0.5 + (_pcg() - 0.5) * 0.995,
    "wrong-scale-half-range": lambda: _pcg() / 2,
    "includes-zero": lambda: np.concatenate([[0.0], _pcg()[1:]]),
}


# --------------------------------------------------------------------------- distribution
@pytest.mark.parametrize("key", KEYS)
def test_uniforms_lie_in_zero_exclusive_to_one_inclusive(key):
    u = stream(key)
    assert u.min() > 0.0
    assert u.max() <= 1.0


def test_uniforms_are_whole_multiples_of_2_pow_minus_53():
    # 53 random bits k in [0, 2^53) map to (k + 1) 2^-53
    scaled = stream(3, 10_000) * 2.0**53
    np.testing.assert_array_equal(scaled, np.round(scaled))


@pytest.mark.parametrize("key", KEYS)
def test_one_million_draws_pass_mean_variance_and_ks_checks(key):
    assert uniformity_failures(stream(key)) == []


def test_uniformity_checks_accept_a_good_reference_generator():
    assert uniformity_failures(_pcg()) == []


@pytest.mark.parametrize("make", BROKEN.values(), ids=BROKEN.keys())
def test_uniformity_checks_reject_a_slightly_broken_generator(make):
    assert uniformity_failures(make()) != []


# --------------------------------------------------------------------------- correlations
@pytest.mark.parametrize("key", KEYS)
def test_lag_one_autocorrelation_is_consistent_with_zero(key):
    u = stream(key)
    assert abs(correlation_z(u[:-1], u[1:])) < 4


def test_lag_one_autocorrelation_check_rejects_a_sticky_generator():
    u = _sticky()
    assert abs(correlation_z(u[:-1], u[1:])) >= 4


@pytest.mark.parametrize("key", [0, 12345, 2**63, 0xDEADBEEFCAFE])
@pytest.mark.parametrize("lag", [-1, 0, 1])
def test_streams_of_adjacent_keys_are_uncorrelated(key, lag):
    a, b = stream(key), stream(key + 1)
    if lag > 0:
        a, b = a[:-lag], b[lag:]
    elif lag < 0:
        a, b = a[-lag:], b[:lag]
    assert abs(correlation_z(a, b)) < 4


@pytest.mark.parametrize("key", [0, 12345, 2**63])
def test_streams_of_adjacent_keys_share_no_numbers(key):
    # 53-bit values: a chance coincidence among 10^5 x 10^5 pairs has probability ~1e-6
    assert np.intersect1d(stream(key, 100_000), stream(key + 1, 100_000)).size == 0


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("key", KEYS)
def test_the_same_key_gives_the_same_numbers(key):
    np.testing.assert_array_equal(stream(key, 10_000), stream(key, 10_000))


def test_different_keys_give_different_numbers():
    assert not np.array_equal(stream(1, 100), stream(2, 100))


def test_a_shorter_stream_is_a_prefix_of_a_longer_one():
    np.testing.assert_array_equal(stream(99, 1000)[:10], stream(99, 10))


@pytest.mark.parametrize("n", [0, 1, 17, 999])
def test_uniform_is_the_n_th_element_of_uniforms(n):
    assert uniform(np.uint64(77), n) == stream(77, 1000)[n]


def test_new_key_is_reproducible_from_the_generator_seed():
    k1 = new_key(np.random.default_rng(5))
    k2 = new_key(np.random.default_rng(5))
    assert isinstance(k1, np.uint64)
    assert k1 == k2


# --------------------------------------------------------------------------- normals
P_ABS_GT = {3.0: 2 * stats.norm.sf(3.0), 4.0: 2 * stats.norm.sf(4.0)}  # 2.70e-3, 6.33e-5
NORMAL_KEYS = [0, 12345, 0xDEADBEEFCAFE, 2**63 + 7]


def gaussian(key: int, n: int = N) -> np.ndarray:
    return normals(np.uint64(key), np.empty(n))


def normality_failures(x: np.ndarray) -> list[str]:
    """Names of the checks that x fails as N(0, 1) draws: mean, variance, 4th moment and the tail
    frequencies P(|x| > 3), P(|x| > 4) within 4 sigma of the exact values, and KS (p < 1e-4).

    Standard errors: mean 1/sqrt(n), variance sqrt(2/n), <x^4> sqrt((105 - 9)/n) (E x^8 = 105),
    a frequency sqrt(p (1 - p)/n).
    """
    n = x.size
    failures = []
    if abs(x.mean()) > 4 / np.sqrt(n):
        failures.append("mean")
    if abs(np.mean(x * x) - 1) > 4 * np.sqrt(2 / n):
        failures.append("variance")
    if abs(np.mean(x**4) - 3) > 4 * np.sqrt(96 / n):
        failures.append("4th-moment")
    for c, p in P_ABS_GT.items():
        if abs(np.mean(np.abs(x) > c) - p) > 4 * np.sqrt(p * (1 - p) / n):
            failures.append(f"tail>{c:g}")
    if stats.kstest(x, "norm", method="asymp").pvalue < 1e-4:
        failures.append("ks")
    return failures


def _numpy_normals(n: int = N) -> np.ndarray:
    return np.random.default_rng(2024).standard_normal(n)


def _compress_beyond_3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) > 3.0, np.sign(x) * (3.0 + 0.7 * (np.abs(x) - 3.0)), x)


BROKEN_NORMALS = {
    "scale-0.5%-too-large": lambda: 1.005 * _numpy_normals(),
    "no-tail-beyond-3.65": lambda: np.clip(_numpy_normals(), -3.6541528853610088, 3.6541528853610088),
    "tail-too-light": lambda: _compress_beyond_3(_numpy_normals()),
    "shifted-by-0.005": lambda: _numpy_normals() + 0.005,
    "student-t-50": lambda: np.random.default_rng(2024).standard_t(50, N),
}


@pytest.mark.parametrize("key", NORMAL_KEYS)
def test_one_million_normals_pass_moment_tail_and_ks_checks(key):
    assert normality_failures(gaussian(key)) == []


def test_four_million_normals_pass_the_checks():
    # finer: the Ziggurat's base strip and tail (|x| > r = 3.654) hold 1/256 of the draws
    assert normality_failures(gaussian(99, 4 * N)) == []


def test_far_tail_frequencies_on_twenty_million_normals():
    # The tail beyond r = 3.654 comes from Marsaglia's method; P(|x| > 4.5) = 6.8e-6 tells a tail
    # drawn as r + Exp(r) without the rejection step (+70 %, 8 sigma here) from the exact one.
    n_keys, n = 10, 2 * N
    out = np.empty(n)
    counts = {c: 0 for c in (3.6541528853610088, 4.0, 4.5)}
    for key in range(n_keys):
        x = np.abs(normals(np.uint64(1000 + key), out))
        for c in counts:
            counts[c] += int(np.count_nonzero(x > c))
    total = n_keys * n
    for c, k in counts.items():
        p = 2 * stats.norm.sf(c)
        assert abs(k / total - p) < 4 * np.sqrt(p * (1 - p) / total), c


def test_normality_checks_accept_numpy_normals():
    assert normality_failures(_numpy_normals()) == []


@pytest.mark.parametrize("make", BROKEN_NORMALS.values(), ids=BROKEN_NORMALS.keys())
def test_normality_checks_reject_a_slightly_broken_generator(make):
    assert normality_failures(make()) != []


@pytest.mark.parametrize("key", NORMAL_KEYS)
def test_normals_lag_one_autocorrelation_is_consistent_with_zero(key):
    x = gaussian(key)
    assert abs(correlation_z(x[:-1], x[1:])) < 4
    assert abs(correlation_z(x[:-1] ** 2, x[1:] ** 2) / np.sqrt(2)) < 4  # Var(x^2) = 2


def test_normals_of_adjacent_keys_are_uncorrelated():
    assert abs(correlation_z(gaussian(5), gaussian(6))) < 4


def test_normals_are_reproducible_and_depend_on_the_key():
    np.testing.assert_array_equal(gaussian(3, 10_000), gaussian(3, 10_000))
    assert not np.array_equal(gaussian(3, 100), gaussian(4, 100))


def test_normals_are_a_function_of_the_flat_index_whatever_the_shape():
    flat = gaussian(17, 3 * 4 * 50)
    out = normals(np.uint64(17), np.empty((3, 4, 50)))
    np.testing.assert_array_equal(out.reshape(-1), flat)
    np.testing.assert_array_equal(gaussian(17, 10), flat[:10])
    assert [normal(np.uint64(17), m) for m in (0, 1, 599)] == [flat[0], flat[1], flat[599]]


def test_normals_fill_in_place_and_return_the_array():
    out = np.full((8, 8), np.nan)
    assert normals(np.uint64(1), out) is out
    assert np.isfinite(out).all()


def test_normals_refuse_arrays_they_cannot_fill_in_place():
    with pytest.raises(ValueError):
        normals(np.uint64(1), np.empty((8, 8))[:, ::2])
    with pytest.raises(ValueError):
        normals(np.uint64(1), np.empty(8, dtype=np.float32))
