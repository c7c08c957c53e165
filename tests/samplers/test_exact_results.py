"""Metropolis and HMC reproduce exact results (fixed seeds, binned errors, |z| < 4)."""
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from observables.stats import binned_mean_error
from samplers import HMC, Metropolis
from samplers.chain import ChainState, MemoryWriter, run_chain
from tests.exact import free_field_phi2, ring_link_cos, u1_plaquette_torus

Z_MAX = 4.0


def sample(theory, sampler, n, every=1, n_therm=300, seed=1, tune=True):
    writer = MemoryWriter()
    run_chain(theory, sampler, ChainState.start(theory, seed), n, every=every, n_therm=n_therm, writer=writer,
              tune=tune)
    return writer.arrays()


def assert_agrees(series, exact, n_bins=20):
    mean, err = binned_mean_error(series, n_bins)
    z = (mean - exact) / err
    assert abs(z) < Z_MAX, f"{mean:.6f} +- {err:.6f} vs exact {exact:.6f}: z = {z:.2f}"
    return z


SAMPLERS = {
    "metropolis": lambda: Metropolis(),
    "hmc-leapfrog": lambda: HMC(integrator="leapfrog"),
    "hmc-omelyan": lambda: HMC(integrator="omelyan"),
}


@pytest.mark.parametrize("beta", [1.0, 3.0])
@pytest.mark.parametrize("algorithm", SAMPLERS)
def test_u1_plaquette_matches_character_expansion(beta, algorithm):
    theory = U1((8, 8), beta)
    _, actions, _ = sample(theory, SAMPLERS[algorithm](), 4000)
    plaquette = 1.0 - actions / (beta * 64)
    assert_agrees(plaquette, u1_plaquette_torus(beta, 64))


@pytest.mark.parametrize("algorithm", SAMPLERS)
def test_phi4_free_field_phi2_matches_lattice_propagator(algorithm):
    theory = Phi4((8, 8), m2=0.5, g=0.0)
    configs, _, _ = sample(theory, SAMPLERS[algorithm](), 4000)
    A, B, _ = theory.coefficients
    assert_agrees((configs**2).mean(axis=(1, 2)), free_field_phi2(theory.shape, A, B))


@pytest.mark.parametrize("algorithm", SAMPLERS)
def test_phi4_free_field_in_three_dimensions(algorithm):
    theory = Phi4((4, 4, 4), kappa=0.12, lam=0.0)
    configs, _, _ = sample(theory, SAMPLERS[algorithm](), 3000)
    A, B, _ = theory.coefficients
    assert_agrees((configs**2).mean(axis=(1, 2, 3)), free_field_phi2(theory.shape, A, B))


@pytest.mark.parametrize("beta", [0.5, 1.2])
@pytest.mark.parametrize("algorithm", SAMPLERS)
def test_xy_2x2_energy_matches_exact_ring(beta, algorithm):
    # On a 2 x 2 torus x + mu = x - mu, so S = -2 beta sum of the 4 links of a ring:
    # a closed O(2) ring with coupling 2 beta, solved by the character expansion.
    theory = XY((2, 2), beta)
    _, actions, _ = sample(theory, SAMPLERS[algorithm](), 6000)
    link_cos = -actions / (beta * 8)  # S = -beta * 8 <cos> on the 8 (x, mu) terms
    assert_agrees(link_cos, ring_link_cos(2 * beta, 4))


def test_xy_metropolis_and_hmc_agree_on_8x8():
    theory = XY((8, 8), 1.0)
    _, s_metro, _ = sample(theory, Metropolis(), 4000, seed=2)
    _, s_hmc, _ = sample(theory, HMC(), 4000, seed=3)
    m1, e1 = binned_mean_error(s_metro)
    m2, e2 = binned_mean_error(s_hmc)
    assert abs(m1 - m2) / np.hypot(e1, e2) < Z_MAX


def test_hmc_exp_minus_dH_averages_to_one():
    theory = Phi4((8, 8), kappa=0.25, lam=0.5)
    hmc = HMC(step_size=0.2, n_steps=5)  # fixed: acceptance well below 1, so dH is not tiny
    _, _, diag = sample(theory, hmc, 3000, tune=False)
    assert 0.3 < diag["accept"].mean() < 0.95
    assert_agrees(np.exp(-diag["dH"]), 1.0)
