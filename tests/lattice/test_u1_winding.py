"""Winding fields of 2D U(1) (lattice/u1_winding.py): the plaquettes they claim (2 pi / A on the region,
unchanged outside, mod 2 pi), charge +-1, and Q -> Q +- 1 when a configuration is smooth on the region.
Plaquettes and Q from observables/u1.py (numpy, PHYSICS.md), independent of the Numba kernel."""
import math

import numpy as np
import pytest

from lattice.u1_winding import add_winding, check_size, region_mask, winding_changes_charge_by_one, winding_field
from observables.u1 import plaquette_angles, topological_charge, wrap_symmetric

TWO_PI = 2 * math.pi

# (shape, size, origin): whole tori (square and not), squares and rectangles, some wrapping around the edges
REGIONS = [((8, 8), None, (0, 0)), ((8, 8), None, (3, 5)), ((6, 10), None, (2, 7)), ((8, 8), (4, 4), (1, 2)),
           ((8, 8), (4, 4), (6, 7)), ((8, 8), (3, 5), (7, 0)), ((8, 8), (8, 3), (2, 6)), ((8, 8), (2, 2), (7, 7)),
           ((6, 10), (6, 4), (0, 8))]


def mod_2pi_distance(a, b):
    return np.abs(wrap_symmetric(np.asarray(a) - np.asarray(b)))


def charge(theta):
    return int(topological_charge(theta[None])[0])


def smooth_config(shape, rng, amplitude=0.05):
    """Small link fluctuations, then a random gauge transformation (plaquettes stay within ~4 amplitude of 0)."""
    theta = amplitude * rng.standard_normal((2, *shape))
    alpha = rng.uniform(-np.pi, np.pi, shape)
    for mu in range(2):
        theta[mu] += alpha - np.roll(alpha, -1, axis=mu)
    return wrap_symmetric(theta)


def test_whole_torus_field_is_the_documented_example():
    L0, L1 = 8, 8
    V = L0 * L1
    x0, x1 = np.meshgrid(np.arange(L0), np.arange(L1), indexing="ij")
    example = np.zeros((2, L0, L1))
    example[0] = -TWO_PI * x1 / V
    example[1, :, L1 - 1] = TWO_PI * np.arange(L0) / L0
    np.testing.assert_allclose(winding_field((L0, L1)), example, atol=1e-15)
    assert mod_2pi_distance(plaquette_angles(example[None])[0], TWO_PI / V).max() < 1e-12
    assert charge(example) == 1


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("shape,size,origin", REGIONS)
def test_field_changes_exactly_the_region_plaquettes_by_2pi_over_area(shape, size, origin, sign):
    omega = winding_field(shape, size, origin, sign)
    w0, w1 = shape if size is None else size
    inside = region_mask(shape, (w0, w1), origin)
    assert inside.sum() == w0 * w1
    p = plaquette_angles(omega[None])[0]
    assert mod_2pi_distance(p[inside], sign * TWO_PI / (w0 * w1)).max() < 1e-12
    assert np.all(mod_2pi_distance(p[~inside], 0.0) < 1e-12)
    assert charge(omega) == sign


@pytest.mark.parametrize("shape,size,origin", REGIONS)
def test_adding_the_field_changes_only_the_region_plaquettes_of_any_configuration(shape, size, origin):
    rng = np.random.default_rng(3)
    theta = rng.uniform(-np.pi, np.pi, (2, *shape))
    moved = theta.copy()
    w0, w1 = shape if size is None else size
    add_winding(moved, w0, w1, origin[0], origin[1], 1.0, True)
    assert np.all((-np.pi <= moved) & (moved < np.pi))
    dp = plaquette_angles(moved[None])[0] - plaquette_angles(theta[None])[0]
    inside = region_mask(shape, (w0, w1), origin)
    assert mod_2pi_distance(dp[inside], TWO_PI / (w0 * w1)).max() < 1e-12
    assert np.all(mod_2pi_distance(dp[~inside], 0.0) < 1e-12)
    changed = mod_2pi_distance(moved, theta) > 1e-14
    assert changed.sum() <= w0 * w1 + w0  # only the links of the rectangle


def test_the_opposite_sign_undoes_the_move():
    rng = np.random.default_rng(4)
    theta = rng.uniform(-np.pi, np.pi, (2, 8, 8))
    moved = theta.copy()
    add_winding(moved, 5, 5, 6, 3, 1.0, True)
    add_winding(moved, 5, 5, 6, 3, -1.0, True)
    assert mod_2pi_distance(moved, theta).max() < 1e-14


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("shape,size,origin", REGIONS)
def test_on_a_smooth_configuration_the_charge_changes_by_the_sign(shape, size, origin, sign):
    # smooth: every wrapped plaquette of the region within pi - 2 pi / A of 0; here also on top of a Q = 2
    # background, whose plaquettes 4 pi / V are small too
    rng = np.random.default_rng(5)
    w = shape if size is None else size
    for background in (0, 2):
        theta = wrap_symmetric(smooth_config(shape, rng) + background * winding_field(shape))
        assert winding_changes_charge_by_one(theta, w, origin)
        q0 = charge(theta)
        assert q0 == background
        add_winding(theta, w[0], w[1], origin[0], origin[1], float(sign), True)
        assert charge(theta) == q0 + sign


def test_a_plaquette_pushed_across_the_branch_cut_takes_the_unit_back():
    # one plaquette of the region at pi - pi / A: + 2 pi / A carries it past pi, so it wraps by -2 pi and
    # Q does not change (the smoothness condition of the docstring fails, as it should)
    shape, w = (8, 8), (4, 4)
    theta = np.zeros((2, *shape))
    theta[0, 2, 3] = math.pi - math.pi / 16  # plaquette (2, 3) (and -it at (2, 2)), inside the square at (1, 2)
    q0 = charge(theta)
    assert not winding_changes_charge_by_one(theta, w, (1, 2))
    add_winding(theta, 4, 4, 1, 2, 1.0, True)
    assert charge(theta) == q0


@pytest.mark.parametrize("size", [(1, 4), (4, 1), (9, 4), (4, 0)])
def test_region_sizes_outside_2_to_L_are_refused_in_one_line(size):
    with pytest.raises(ValueError) as e:
        check_size((8, 8), *size)
    assert "\n" not in str(e.value)
