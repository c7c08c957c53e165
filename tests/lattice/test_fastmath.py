"""Specification of lattice.fastmath: branch-free sin/cos/exp and angle wrapping for Numba kernels."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.fastmath import cos_array, exp_array, sin_array, wrap_angle

PROPERTY = settings(max_examples=200, deadline=None)


def sample(bound: float, n: int = 500_000) -> np.ndarray:
    """Points of [-bound, bound]: random with full 53-bit mantissas, a grid and its ulp neighbours,
    and the multiples of pi/4 with their neighbours.

    (Sums like ``-bound + 2 bound u`` or ``np.linspace`` put x on the grid of the largest operand,
    leaving the low mantissa bits of small x even, and so miss rounding errors that depend on them.)
    """
    random = bound * np.random.default_rng(0).uniform(-1.0, 1.0, 4 * n)
    grid = np.linspace(-bound, bound, n)
    k = np.arange(-math.floor(4 * bound / np.pi), math.floor(4 * bound / np.pi) + 1) * (np.pi / 4)
    x = np.concatenate([random, grid, np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf),
                        k, np.nextafter(k, np.inf), np.nextafter(k, -np.inf)])
    return x[np.abs(x) <= bound]


@pytest.mark.parametrize(
    "fast, exact",
    [(sin_array, np.sin), (cos_array, np.cos)],
    ids=["sin", "cos"],
)
def test_within_5e_16_of_numpy_for_abs_x_up_to_4_pi(fast, exact):
    x = sample(4 * np.pi)
    assert np.max(np.abs(fast(x) - exact(x))) <= 5e-16


@pytest.mark.parametrize("fast, exact", [(sin_array, np.sin), (cos_array, np.cos)], ids=["sin", "cos"])
def test_within_1e_13_of_numpy_for_abs_x_up_to_100(fast, exact):
    x = sample(100.0)
    assert np.max(np.abs(fast(x) - exact(x))) <= 1e-13


@pytest.mark.parametrize("fast, exact", [(sin_array, np.sin), (cos_array, np.cos)], ids=["sin", "cos"])
def test_array_functions_act_elementwise_and_keep_the_shape(fast, exact):
    x = np.random.default_rng(1).uniform(-4, 4, (3, 4, 5))
    y = fast(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, exact(x), rtol=0, atol=2e-15)


angles = st.floats(-1e4, 1e4, allow_nan=False)
edge_cases = [np.pi, -np.pi, np.nextafter(np.pi, 0), np.nextafter(np.pi, 4), np.nextafter(-np.pi, 0),
              np.nextafter(-np.pi, -4), 2 * np.pi, -2 * np.pi, 3 * np.pi, -3 * np.pi, 0.0, -0.0, 1e4, -1e4]


def check_wrapped(x: float) -> None:
    y = wrap_angle(x)
    assert -np.pi <= y < np.pi
    turns = (x - y) / (2 * np.pi)
    assert abs(turns - round(turns)) <= 1e-12 * max(1.0, abs(x))


@PROPERTY
@given(angles)
def test_wrap_angle_lands_in_minus_pi_to_pi_and_shifts_by_whole_turns(x):
    check_wrapped(x)


@pytest.mark.parametrize("x", edge_cases)
def test_wrap_angle_lands_in_minus_pi_to_pi_and_shifts_by_whole_turns_at_edges(x):
    check_wrapped(x)


@PROPERTY
@given(st.floats(-np.pi, np.pi, exclude_max=True))
def test_wrap_angle_leaves_angles_in_minus_pi_to_pi_unchanged(x):
    assert wrap_angle(x) == x


def test_wrap_angle_maps_pi_to_minus_pi():
    assert wrap_angle(np.pi) == -np.pi


# --------------------------------------------------------------------------- exp
def ulps(y: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|y - exact| in units of the spacing of floats at exact (the subnormal spacing below 2^-1022)."""
    return np.abs(y - exact) / np.spacing(np.maximum(np.abs(exact), 5e-324))


def exp_sample(lo: float, hi: float, n: int = 1_000_000) -> np.ndarray:
    """Random points of [lo, hi] with full mantissas (also small |x|), a grid and its ulp neighbours."""
    rng = np.random.default_rng(3)
    random = rng.uniform(lo, hi, n)
    small = rng.choice([-1.0, 1.0], n // 10) * 10.0 ** rng.uniform(-20, 0, n // 10)
    grid = np.linspace(lo, hi, n // 10)
    x = np.concatenate([random, small, grid, np.nextafter(grid, np.inf), np.nextafter(grid, -np.inf)])
    return x[(x >= lo) & (x <= hi)]


@pytest.mark.parametrize("lo, hi", [(-745.0, 0.0), (-1.0, 1.0), (-745.2, -708.0), (0.0, 709.7)],
                         ids=["metropolis-range", "near-zero", "subnormal-results", "positive"])
def test_exp_within_1_ulp_of_numpy(lo, hi):
    x = exp_sample(lo, hi)
    assert ulps(exp_array(x), np.exp(x)).max() <= 1.0


def test_exp_is_mostly_correctly_rounded():
    x = exp_sample(-745.0, 0.0)
    assert np.mean(exp_array(x) != np.exp(x)) < 0.15


def test_exp_special_values_match_numpy():
    x = np.array([0.0, -0.0, -745.13, -745.14, -746.0, -1e300, -np.inf, 709.78, 709.79, 1e300, np.inf, np.nan,
                  -708.39, -708.4, 1e-300, -1e-300])
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(exp_array(x), np.exp(x))


def test_exp_array_keeps_the_shape():
    x = np.linspace(-5, 1, 60).reshape(3, 4, 5)
    y = exp_array(x)
    assert y.shape == x.shape
    assert ulps(y, np.exp(x)).max() <= 1.0
