"""Specification of lattice.u1_plaquettes: links built from V - 1 independent plaquettes, two holonomies and a
gauge transformation, the exact proposal density log q, and the derived ESS/N of its weights
(docs/plaquette_sampler.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from lattice import U1
from lattice.rng import uniform
from lattice.u1_plaquettes import (expected_ess_fraction, expected_ess_fraction_infinite, links_from_plaquettes,
                                   links_from_plaquettes_batch, log_i0, log_q, log_weight, propose, propose_batch)
from lattice.vonmises import STRIDE, draw
from observables.u1 import plaquette_angles, wrap_symmetric

SHAPES = [(2, 2), (3, 5), (4, 4), (6, 3)]
Z_MAX = 4.0


def angles(rng, shape):
    return rng.uniform(-np.pi, np.pi, shape)


def plaquettes(t):
    return plaquette_angles(t[None])[0]


def circle_distance(a, b):
    return np.abs(wrap_symmetric(np.asarray(a) - np.asarray(b)))


def proposal_log_weights(shape, beta, n, seed, chunk=4000):
    """beta cos theta_P(P_last) of n proposals with keys from default_rng(seed) (in chunks, to bound memory)."""
    keys = np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64)
    return np.concatenate([log_weight(propose_batch(keys[i:i + chunk], shape, beta), beta)
                           for i in range(0, n, chunk)])


def ess_and_error(log_w):
    """ESS/N = m1^2 / m2 (m_k = mean w^k) of independent weights, with its delta-method error."""
    w = np.exp(log_w - log_w.max())
    m1, m2 = w.mean(), (w * w).mean()
    grad = np.array([2 * m1 / m2, -m1 * m1 / m2**2])
    cov = np.cov(np.stack([w, w * w]))
    return m1 * m1 / m2, math.sqrt(grad @ cov @ grad / len(w))


# --------------------------------------------------------------------------- the map
@pytest.mark.parametrize("shape", SHAPES)
def test_built_links_have_the_drawn_plaquettes_and_the_last_is_minus_their_sum(shape):
    rng = np.random.default_rng(1)
    phi, alpha = angles(rng, shape), angles(rng, shape)
    t = links_from_plaquettes(phi, 0.7, -2.1, alpha)
    p = plaquettes(t)
    free = np.ones(shape, bool)
    free[-1, -1] = False
    assert circle_distance(p[free], phi[free]).max() < 1e-12
    assert circle_distance(p[-1, -1], -phi[free].sum()) < 1e-12
    assert np.all((-np.pi <= t) & (t < np.pi))


def test_the_last_plaquette_entry_of_phi_is_not_used():
    rng = np.random.default_rng(2)
    phi, alpha = angles(rng, (4, 6)), angles(rng, (4, 6))
    other = phi.copy()
    other[-1, -1] += 1.0
    np.testing.assert_array_equal(links_from_plaquettes(phi, 0.1, 0.2, alpha),
                                  links_from_plaquettes(other, 0.1, 0.2, alpha))


@pytest.mark.parametrize("shape", SHAPES)
def test_alpha_is_a_gauge_transformation_that_changes_no_plaquette(shape):
    rng = np.random.default_rng(3)
    phi, alpha = angles(rng, shape), angles(rng, shape)
    bare = links_from_plaquettes(phi, 0.4, 1.3, np.zeros(shape))
    t = links_from_plaquettes(phi, 0.4, 1.3, alpha)
    assert circle_distance(plaquettes(t), plaquettes(bare)).max() < 1e-12
    for mu in range(2):  # theta_mu(x) + alpha(x) - alpha(x + mu)
        expected = bare[mu] + alpha - np.roll(alpha, -1, axis=mu)
        assert circle_distance(t[mu], expected).max() < 1e-12


def test_holonomies_are_the_polyakov_phases_in_the_tree_gauge():
    # alpha = 0: the tree links vanish; h0 is the Polyakov loop of the column x1 = 0 (axis 0), h1 the
    # loop along axis 1 at x0 = 0 (winding loops are gauge invariant, so h0, h1 are the torus holonomies)
    rng = np.random.default_rng(4)
    phi = angles(rng, (4, 5))
    t = links_from_plaquettes(phi, 0.9, -0.6, np.zeros((4, 5)))
    assert circle_distance(t[0, :, 0].sum(), 0.9) < 1e-12
    assert circle_distance(t[1, 0, :].sum(), -0.6) < 1e-12
    np.testing.assert_array_equal(t[1, :, :-1], 0.0)
    np.testing.assert_array_equal(t[0, :-1, 0], 0.0)


def test_batch_form_is_the_single_map_on_each_row():
    rng = np.random.default_rng(5)
    phis, alphas, h = angles(rng, (3, 4, 6)), angles(rng, (3, 4, 6)), angles(rng, (3, 2))
    out = links_from_plaquettes_batch(phis, h, alphas)
    for k in range(3):
        np.testing.assert_array_equal(out[k], links_from_plaquettes(phis[k], h[k, 0], h[k, 1], alphas[k]))


def test_proposal_of_a_key_is_built_from_its_documented_streams():
    L0, L1, beta, key = 3, 4, 2.5, np.uint64(12345)
    V = L0 * L1
    phi = np.zeros((L0, L1))
    for s in range(V - 1):
        phi[s // L1, s % L1] = draw(beta, key, s)
    h0 = math.pi * (2 * uniform(key, (V - 1) * STRIDE) - 1)
    h1 = math.pi * (2 * uniform(key, (V - 1) * STRIDE + 1) - 1)
    alpha = np.array([math.pi * (2 * uniform(key, (V + s) * STRIDE) - 1) for s in range(V)]).reshape(L0, L1)
    np.testing.assert_array_equal(propose(key, (L0, L1), beta), links_from_plaquettes(phi, h0, h1, alpha))
    keys = np.array([7, 12345], dtype=np.uint64)
    np.testing.assert_array_equal(propose_batch(keys, (L0, L1), beta)[1], propose(key, (L0, L1), beta))


# --------------------------------------------------------------------------- the density
def reference_log_q(t, beta):
    p = plaquettes(t).reshape(-1)[:-1]  # all but P_last = (L0 - 1, L1 - 1), the last in C order
    return -t.size * math.log(2 * math.pi) + float(np.sum(beta * np.cos(p))) - p.size * math.log(special.i0(beta))


@pytest.mark.parametrize("beta", [0.0, 0.7, 4.0, 30.0])
def test_log_q_is_the_von_mises_density_of_all_plaquettes_but_the_last(beta):
    rng = np.random.default_rng(6)
    ts = angles(rng, (5, 2, 3, 4))
    assert abs(log_i0(beta) - math.log(special.i0(beta))) < 1e-13 * max(1.0, beta)
    batch = log_q(ts, beta)
    for k in range(5):
        assert abs(log_q(ts[k], beta) - reference_log_q(ts[k], beta)) < 1e-11 * max(1.0, beta)
        assert batch[k] == log_q(ts[k], beta)


def test_log_weight_is_log_p_minus_log_q_up_to_a_constant():
    theory = U1((4, 3), 2.3)
    ts = angles(np.random.default_rng(7), (6, 2, 4, 3))
    diff = -theory.action_batch(ts) - log_q(ts, theory.beta) - log_weight(ts, theory.beta)
    assert np.ptp(diff) < 1e-11


def z_of_partition_estimate(beta, log_q_fn, n=100_000, seed=8):
    """On the 2 x 2 torus: z of the importance-sampling estimate of Z = int exp(-S) d theta, the mean of
    exp(-S - log q) over proposals, against the exact (2 pi)^{2V} e^{-beta V} sum_n I_n(beta)^V."""
    theory, V = U1((2, 2), beta), 4
    keys = np.random.default_rng(seed).integers(0, 2**64, n, dtype=np.uint64)
    ts = propose_batch(keys, theory.shape, beta)
    n_range = np.arange(-40, 41)
    log_z = 2 * V * math.log(2 * math.pi) - beta * V + math.log(np.sum(special.iv(n_range, beta) ** V))
    ratio = np.exp(-theory.action_batch(ts) - log_q_fn(ts, beta) - log_z)  # estimate / exact, per proposal
    err = ratio.std(ddof=1) / math.sqrt(n)
    return (ratio.mean() - 1.0) / err if err > 0 else math.copysign(math.inf, ratio.mean() - 1.0)


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_importance_estimate_of_z_on_2x2_is_exact(beta):
    z = z_of_partition_estimate(beta, log_q)
    assert abs(z) < Z_MAX, f"z = {z:.2f}"


WRONG_LOG_Q = {
    "includes P_last": lambda ts, beta: log_q(ts, beta) + log_weight(ts, beta) - log_i0(beta),
    "misses the gauge volume 2 pi": lambda ts, beta: log_q(ts, beta) + math.log(2 * math.pi),
}


@pytest.mark.parametrize("wrong", WRONG_LOG_Q)
def test_a_wrong_log_q_fails_the_2x2_partition_test(wrong):
    assert abs(z_of_partition_estimate(1.0, WRONG_LOG_Q[wrong])) > 10


# --------------------------------------------------------------------------- ESS of the weights
def ess_by_quadrature(beta, volume, n_grid=4096):
    """E_q[w]^2 / E_q[w^2] with the density of theta_P(P_last) = -(sum of V - 1 von Mises angles) from
    numerical circular convolution on a grid (no Bessel functions)."""
    phi = 2 * np.pi * np.arange(n_grid) / n_grid
    f = np.exp(beta * (np.cos(phi) - 1))
    f /= f.sum()
    density = np.real(np.fft.ifft(np.fft.fft(f) ** (volume - 1)))  # the law of the sum (mod 2 pi) on the grid
    density = np.roll(density[::-1], 1)  # of minus the sum: index m <-> angle -2 pi m / n
    w = np.exp(beta * (np.cos(phi) - 1))
    return float((density * w).sum() ** 2 / (density * w * w).sum())


@pytest.mark.parametrize("beta", [0.5, 2.0, 6.0])
@pytest.mark.parametrize("volume", [2, 3, 7, 64])
def test_expected_ess_fraction_agrees_with_quadrature(beta, volume):
    assert abs(expected_ess_fraction(beta, volume) - ess_by_quadrature(beta, volume)) < 1e-10


def test_expected_ess_fraction_limits():
    # V = 2: E_q[w] = I_0(2 beta) / I_0(beta) (Neumann), E_q[w^2] = sum_n r_n I_n(2 beta)
    beta = 1.7
    n = np.arange(-40, 41)
    r = special.iv(n, beta) / special.i0(beta)
    ref = (special.i0(2 * beta) / special.i0(beta)) ** 2 / np.sum(r * special.iv(n, 2 * beta))
    assert abs(expected_ess_fraction(beta, 2) - ref) < 1e-12
    for b in (1.0, 4.0):  # large V: I_0(beta)^2 / I_0(2 beta), independent of V
        assert abs(expected_ess_fraction(b, 4096) - special.i0(b) ** 2 / special.i0(2 * b)) < 1e-12
        assert abs(expected_ess_fraction(b, 4096) - expected_ess_fraction_infinite(b)) < 1e-12
    assert abs(expected_ess_fraction_infinite(400.0) * math.sqrt(math.pi * 400.0) - 1) < 1e-3  # ~ 1/sqrt(pi beta)
    assert expected_ess_fraction(0.0, 16) == 1.0


@pytest.mark.parametrize("beta,shape", [(1.0, (4, 4)), (3.0, (4, 4)), (6.0, (8, 8)), (10.0, (2, 3))])
def test_measured_ess_of_proposals_matches_expected(beta, shape):
    ess, err = ess_and_error(proposal_log_weights(shape, beta, 40_000, seed=9))
    expected = expected_ess_fraction(beta, shape[0] * shape[1])
    assert abs(ess - expected) < Z_MAX * err, f"{ess:.4f} +- {err:.4f} vs {expected:.4f}"


def test_measured_ess_is_volume_independent_at_large_volume():
    beta = 4.0
    limit = expected_ess_fraction_infinite(beta)
    for shape, n in (((16, 16), 12_000), ((32, 32), 6_000)):
        assert abs(expected_ess_fraction(beta, shape[0] * shape[1]) - limit) < 1e-12
        ess, err = ess_and_error(proposal_log_weights(shape, beta, n, seed=10))
        assert abs(ess - limit) < Z_MAX * err, f"{shape}: {ess:.4f} +- {err:.4f} vs {limit:.4f}"
