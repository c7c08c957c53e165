"""Point-to-point correlators and the orbits of separations (observables/correlators.py)."""
import numpy as np
import pytest

from observables import correlators


def brute_force(c):
    """(1/V) sum_y f(y) f(y + x) for every x by explicit loops over sites."""
    shape = c.shape
    V = c.size
    out = np.zeros(shape)
    for x in np.ndindex(*shape):
        for y in np.ndindex(*shape):
            out[x] += c[y] * c[tuple((a + b) % n for a, b, n in zip(y, x, shape))]
    return out / V


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4), (5,)])
def test_point_correlator_is_the_direct_double_sum(shape):
    c = np.random.default_rng(0).standard_normal((2,) + shape)
    C = correlators.point_correlator(c)
    for n in range(2):
        np.testing.assert_allclose(C[n], brute_force(c[n]), atol=1e-13)


def test_orbits_of_a_square_lattice_are_the_reduced_sorted_separations():
    orb = correlators.orbits((8, 8))
    assert len(orb) == 15 and orb.size.sum() == 64
    assert orb.name(orb.index((7, 1))) == "(1,1)" and orb.index((0, 3)) == orb.index((5, 0))
    assert dict(zip(map(orb.name, range(len(orb))), orb.size))["(1,0)"] == 4  # (+-1, 0), (0, +-1)


def test_orbits_of_a_rectangular_lattice_keep_the_axes_apart():
    orb = correlators.orbits((8, 4))
    assert len(orb) == 5 * 3 and orb.index((1, 0)) != orb.index((0, 1))


@pytest.mark.parametrize("shape", [(6, 6), (6, 4), (4, 4, 2)])
def test_orbit_averages_are_invariant_under_the_lattice_symmetries(shape):
    c = np.random.default_rng(1).standard_normal((3,) + shape)
    orb = correlators.orbits(shape)
    ref = correlators.orbit_average(correlators.point_correlator(c), orb)
    moved = [np.flip(c, axis=mu + 1) for mu in range(len(shape))]
    moved += [np.swapaxes(c, a + 1, b + 1) for a in range(len(shape)) for b in range(a + 1, len(shape))
              if shape[a] == shape[b]]
    for m in moved:
        np.testing.assert_allclose(correlators.orbit_average(correlators.point_correlator(m), orb), ref, atol=1e-13)


def test_orbit_average_is_the_mean_over_the_orbit_members():
    c = np.random.default_rng(2).standard_normal((2, 6, 4))
    orb = correlators.orbits((6, 4))
    C = correlators.point_correlator(c)
    avg = correlators.orbit_average(C, orb)
    for k in range(len(orb)):
        np.testing.assert_allclose(avg[:, k], C[:, orb.label == k].mean(axis=1), atol=1e-14)
