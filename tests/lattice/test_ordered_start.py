"""--init ordered: phi4 starts in one minimum of the uniform-field action (sign from the chain's seed),
xy and u1 start cold."""
import numpy as np

from lattice import U1, XY, Phi4
from samplers.chain import ChainState


def test_phi4_ordered_start_is_the_uniform_field_at_the_minimum_of_the_uniform_action():
    theory = Phi4((8, 8), kappa=0.5, lam=0.022)
    A, B, C = theory.coefficients
    phi0 = theory.ordered_magnitude
    per_site = lambda phi: (B - A * theory.dim) * phi**2 + C * phi**4  # noqa: E731
    assert per_site(phi0) < min(per_site(0.99 * phi0), per_site(1.01 * phi0))
    config = ChainState.start(theory, seed=0, init="ordered").config
    assert np.all(config == config.flat[0]) and abs(config.flat[0]) == phi0
    assert np.isclose(theory.action(config), theory.n_dof * per_site(phi0))


def test_phi4_ordered_start_takes_both_signs_over_seeds_and_is_fixed_by_the_seed():
    theory = Phi4((4, 4), m2=-4.0, g=8.0)
    signs = {np.sign(ChainState.start(theory, seed=s, init="ordered").config.flat[0]) for s in range(8)}
    assert signs == {-1.0, 1.0}
    a, b = (ChainState.start(theory, seed=5, init="ordered", chain=2).config for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_phi4_ordered_start_in_the_symmetric_phase_is_the_zero_field():
    theory = Phi4((4, 4), kappa=0.1, lam=0.02)
    assert theory.ordered_magnitude == 0.0
    assert not ChainState.start(theory, seed=0, init="ordered").config.any()


def test_xy_and_u1_ordered_starts_are_cold():
    for theory in (XY((4, 4), 1.0), U1((4, 4), 2.0)):
        config = ChainState.start(theory, seed=3, init="ordered").config
        assert config.shape == theory.config_shape and not config.any()
