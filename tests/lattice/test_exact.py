"""lattice.exact: the numpy-only references agree with scipy's special functions and quadrature."""
import numpy as np
import pytest
from scipy import integrate, special

from lattice import exact


@pytest.mark.parametrize("beta", [0.0, 0.3, 2.0, 8.0, 20.0])
def test_scaled_bessel_functions_match_scipy(beta):
    n = np.arange(-40, 41)
    np.testing.assert_allclose(exact.ive(n, beta), special.ive(n, beta), rtol=1e-12, atol=1e-300)


def test_simpson_matches_scipy():
    x = np.linspace(0.0, 3.0, 101)
    y = np.exp(-x) * np.cos(3 * x)
    assert exact.simpson(y, x) == pytest.approx(integrate.simpson(y, x=x), rel=1e-12)


@pytest.mark.parametrize("beta", [0.5, 2.0, 6.0])
def test_infinite_volume_chi_t_matches_adaptive_quadrature(beta):
    w = lambda phi: np.exp(beta * (np.cos(phi) - 1))  # noqa: E731
    ref = integrate.quad(lambda p: p**2 * w(p), -np.pi, np.pi)[0] / integrate.quad(w, -np.pi, np.pi)[0] / (4 * np.pi**2)
    assert exact.u1_topological_susceptibility_infinite(beta) == pytest.approx(ref, rel=1e-10)


def test_chi_t_of_the_pipeline_lattice_is_the_quoted_one():
    assert exact.u1_topological_susceptibility_torus(2.0, 64) * 64 == pytest.approx(1.2393, abs=1e-4)
