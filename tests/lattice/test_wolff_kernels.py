"""Specification of the Wolff / Brower-Tamayo single-cluster kernels (lattice/cluster.py, xy.py, phi4.py).

The cluster of a (configuration, key) is the component of the seed u(key, 0) in the graph of open
links, link (x, mu) open iff u(key, 2 + d x + mu) < 1 - exp(min(0, -2 J p_x p_y)); written here from
that definition in plain Python and compared site by site with the kernels.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lattice import U1, XY, Phi4
from lattice.cluster import scratch_of
from lattice.fastmath import wrap_angle
from lattice.rng import uniform

KEYS = [np.uint64(k * 0x9E3779B97F4A7C15 % 2**64) for k in range(1, 13)]


def reference_cluster(proj: np.ndarray, coupling: float, key: np.uint64) -> set[int]:
    """The seed's component in the bond graph of the documented counters (plain Python)."""
    shape = proj.shape
    d, V = len(shape), proj.size
    flat = proj.reshape(-1)
    idx = np.arange(V).reshape(shape)
    adjacency: dict[int, set[int]] = {x: set() for x in range(V)}
    for mu in range(d):
        forward = np.roll(idx, -1, axis=mu).reshape(-1)
        for x in range(V):
            y = int(forward[x])
            j = coupling * flat[x] * flat[y]
            if j > 0 and uniform(key, 2 + d * x + mu) < 1.0 - math.exp(-2.0 * j):
                adjacency[x].add(y)
                adjacency[y].add(x)
    seed = min(int(uniform(key, 0) * V), V - 1)
    cluster, todo = {seed}, [seed]
    while todo:
        for y in adjacency[todo.pop()] - cluster:
            cluster.add(y)
            todo.append(y)
    return cluster


def kernel_cluster(theory, n: int) -> set[int]:
    sites = scratch_of(theory).sites[:n]
    assert len(set(sites.tolist())) == n, "a site entered the cluster twice"
    assert not scratch_of(theory).mark.any(), "the mark array must be cleared after the flip"
    return set(sites.tolist())


XY_CASES = [((2, 2), 1.2), ((4, 4), 0.9), ((3, 5), 1.5), ((6, 4), -0.7)]


@pytest.mark.parametrize("shape,beta", XY_CASES)
def test_xy_cluster_is_the_seed_component_and_is_reflected_about_the_axis(shape, beta):
    theory = XY(shape, beta)
    rng = np.random.default_rng(1)
    sizes = []
    for key in KEYS:
        t = rng.uniform(-np.pi, np.pi, shape)
        phi = np.pi * uniform(key, 1)
        expected = reference_cluster(np.cos(t - phi), beta, key)
        new = t.copy()
        n = theory.wolff_update(new, key)
        assert kernel_cluster(theory, n) == expected
        flat, old = new.reshape(-1), t.reshape(-1)
        for x in range(t.size):
            want = wrap_angle(2 * phi + np.pi - old[x]) if x in expected else old[x]
            assert flat[x] == pytest.approx(want, abs=1e-12)
        assert np.all((-np.pi <= new) & (new < np.pi))
        sizes.append(n)
    assert max(sizes) > 1, "no cluster grew beyond its seed: the comparison would be vacuous"


@pytest.mark.parametrize("shape,params", [((4, 4), {"m2": -4.0, "g": 8.0}), ((2, 6), {"kappa": 0.3, "lam": 0.02}),
                                          ((3, 4, 4), {"kappa": 0.2, "lam": 0.1})])
def test_phi4_cluster_is_the_seed_component_of_the_embedded_ising_signs(shape, params):
    theory = Phi4(shape, **params)
    A = theory.coefficients[0]
    rng = np.random.default_rng(2)
    sizes = []
    for key in KEYS:
        x = rng.standard_normal(shape) + 0.5
        expected = reference_cluster(x, A, key)
        new = x.copy()
        n = theory.wolff_update(new, key)
        assert kernel_cluster(theory, n) == expected
        flips = np.zeros(x.size, dtype=bool)
        flips[list(expected)] = True
        np.testing.assert_array_equal(new.reshape(-1), np.where(flips, -x.reshape(-1), x.reshape(-1)))
        sizes.append(n)
    assert max(sizes) > 1, "no cluster grew beyond its seed: the comparison would be vacuous"


def test_xy_flip_changes_the_action_by_the_boundary_term_of_the_bond_probabilities():
    # dS = 2 beta sum_{x in C, y not in C} (s_x . r)(s_y . r): the reflection must be about the same axis
    # whose projections set the bond probabilities, or detailed balance fails
    theory = XY((6, 6), 0.8)
    rng = np.random.default_rng(3)
    for key in KEYS:
        t = rng.uniform(-np.pi, np.pi, (6, 6))
        p = np.cos(t - np.pi * uniform(key, 1)).reshape(-1)
        new = t.copy()
        cluster = kernel_cluster(theory, theory.wolff_update(new, key))
        idx = np.arange(36).reshape(6, 6)
        boundary = sum(p[x] * p[y] for mu in (0, 1)
                       for x, y in zip(idx.reshape(-1), np.roll(idx, -1, axis=mu).reshape(-1))
                       if (x in cluster) != (y in cluster))
        assert theory.action(new) - theory.action(t) == pytest.approx(2 * 0.8 * boundary, abs=1e-10)


def test_aligned_spins_at_strong_coupling_flip_as_one_cluster_and_keep_the_action():
    theory = XY((4, 4), 1e4)
    for key in KEYS:
        if abs(math.cos(np.pi * uniform(key, 1))) < 0.1:  # axis nearly perpendicular: bonds not certain
            continue
        t = np.full((4, 4), 0.3)
        s0 = theory.action(t)
        assert theory.wolff_update(t, key) == 16
        assert theory.action(t) == pytest.approx(s0, rel=1e-12)
    phi = Phi4((4, 4), kappa=20.0, lam=0.5)
    x = np.full((4, 4), 1.0)
    s0 = phi.action(x)
    assert phi.wolff_update(x, KEYS[0]) == 16
    np.testing.assert_array_equal(x, -1.0)
    assert phi.action(x) == s0


def test_no_bonds_without_coupling_or_against_the_sign_structure():
    t = np.random.default_rng(4).uniform(-np.pi, np.pi, (4, 4))
    assert all(XY((4, 4), 0.0).wolff_update(t.copy(), key) == 1 for key in KEYS)
    staggered = np.where(np.indices((4, 4)).sum(axis=0) % 2, -1.0, 1.0)  # every link anti-aligned
    assert all(Phi4((4, 4), kappa=0.3, lam=0.1).wolff_update(staggered.copy(), key) == 1 for key in KEYS)


def test_update_is_a_function_of_configuration_and_key():
    theory = XY((8, 8), 1.1)
    t = np.random.default_rng(5).uniform(-np.pi, np.pi, (8, 8))
    a, b = t.copy(), t.copy()
    XY((8, 8), 1.1).wolff_update(a, KEYS[3])
    theory.wolff_update(b, KEYS[3])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="C-contiguous"):
        theory.wolff_update(t.T, KEYS[0])  # a transposed view


def test_u1_and_phi4_without_local_sweeps_are_refused_in_one_line():
    with pytest.raises(ValueError, match="spin models") as e:
        U1((4, 4), 1.0).check_wolff()
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="Metropolis sweep"):
        Phi4((4, 4), m2=1.0, g=1.0).check_wolff(0)
    XY((3, 3), 1.0).check_wolff(0)  # pure clusters run on any XY lattice
