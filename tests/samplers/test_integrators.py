"""The HMC integrators: reversible, and with the energy error of their order."""
import numpy as np
import pytest

from lattice import U1, XY, Phi4
from samplers.integrators import INTEGRATORS

THEORIES = {
    "phi4": Phi4((6, 6), kappa=0.25, lam=0.5),
    "phi4-3d": Phi4((4, 4, 4), m2=-1.0, g=1.0),
    "xy": XY((6, 6), 1.1),
    "u1": U1((6, 6), 2.0),
}


def start(theory, seed=0):
    rng = np.random.default_rng(seed)
    q = theory.random_config(rng)
    if not theory.compact:
        q *= 0.5
    return q, rng.standard_normal(q.shape)


def hamiltonian(theory, q, p):
    return 0.5 * float((p * p).sum()) + theory.action(q)


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_integrator_is_reversible(name, integrator):
    theory = THEORIES[name]
    q0, p0 = start(theory)
    q, p = q0.copy(), p0.copy()
    INTEGRATORS[integrator](theory, q, p, 0.05, 20)
    assert np.abs(q - q0).max() > 1e-3  # it moved
    p *= -1
    INTEGRATORS[integrator](theory, q, p, 0.05, 20)
    assert np.abs(q - q0).max() < 1e-10
    assert np.abs(p + p0).max() < 1e-10


def energy_error(theory, integrator, eps, tau=1.0, n_starts=8):
    """rms of dH over a few starting points, at fixed trajectory length tau."""
    errors = []
    for seed in range(n_starts):
        q, p = start(theory, seed)
        h0 = hamiltonian(theory, q, p)
        INTEGRATORS[integrator](theory, q, p, eps, round(tau / eps))
        errors.append(hamiltonian(theory, q, p) - h0)
    return float(np.sqrt(np.mean(np.square(errors))))


@pytest.mark.parametrize("name", THEORIES)
@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_energy_violation_scales_as_eps_squared(name, integrator):
    theory = THEORIES[name]
    e1 = energy_error(theory, integrator, 0.02)
    e2 = energy_error(theory, integrator, 0.01)
    assert 3.5 < e1 / e2 < 4.5, f"halving eps divided dH by {e1 / e2:.2f}, expected 4"


@pytest.mark.parametrize("name", THEORIES)
def test_minimum_norm_integrator_has_smaller_energy_error(name):
    theory = THEORIES[name]
    assert energy_error(theory, "omelyan", 0.02) < 0.3 * energy_error(theory, "leapfrog", 0.02)


def test_leapfrog_follows_the_harmonic_oscillator_exactly():
    # kappa = lambda = 0: S = sum_x phi_x^2, independent oscillators q'' = -w^2 q with w^2 = 2,
    # for which one leapfrog step is a known linear map.
    theory = Phi4((2, 2), kappa=0.0, lam=0.0)
    q0 = np.array([[0.3, -0.1], [0.7, 0.2]])
    p0 = np.array([[0.1, 0.4], [-0.5, 0.0]])
    eps, w2 = 0.1, 2.0
    q, p = q0.copy(), p0.copy()
    INTEGRATORS["leapfrog"](theory, q, p, eps, 1)
    q_exp = (1 - 0.5 * eps**2 * w2) * q0 + eps * p0
    p_exp = (1 - 0.5 * eps**2 * w2) * p0 - eps * w2 * (1 - 0.25 * eps**2 * w2) * q0
    np.testing.assert_allclose(q, q_exp, atol=1e-14)
    np.testing.assert_allclose(p, p_exp, atol=1e-14)
