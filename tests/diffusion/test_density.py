"""The PF-ODE sampler's log q is the exact density of the discrete map that produced the sample."""
import math

import pytest
import torch

from lattice import U1, XY, Phi4
from tests.diffusion.conftest import perturbed

THEORIES = {"phi4": Phi4((2, 2), m2=-4.0, g=8.0), "xy": XY((2, 2), 1.0), "u1": U1((2, 2), 1.0)}


def composed_map_log_q(model, z):
    """Independent change of variables: log r(z) - log |det d x / d z| of the whole composed map,
    its Jacobian by reverse-mode autograd of all steps at once (not step by step)."""
    grid = model._grid()

    def full(zf):
        y = zf.view(1, *model.config_shape)
        for t0, t1 in zip(grid[:-1], grid[1:]):
            y = y + model._ode_increment(y, t0, t1)
        return y.flatten()

    J = torch.stack([torch.autograd.functional.jacobian(full, zi.flatten()) for zi in z])
    return model.prior_log_prob(z) - torch.linalg.slogdet(J)[1]


@pytest.mark.parametrize("integrator", ["euler", "heun"])
@pytest.mark.parametrize("name", sorted(THEORIES))
def test_pf_ode_log_q_equals_the_change_of_variables_of_the_composed_map(name, integrator):
    model = perturbed(THEORIES[name], hidden=(8, 8), n_steps=5, integrator=integrator)
    x, log_q = model.sample(6, torch.Generator().manual_seed(3))
    z = model._prior_sample(6, torch.Generator().manual_seed(3))  # the same prior draws
    ref = composed_map_log_q(model, z)
    assert torch.allclose(log_q, ref, atol=1e-10)
    assert (log_q - model.prior_log_prob(z)).abs().max() > 1e-3  # the map is not volume preserving


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_log_q_of_a_given_configuration_inverts_the_map(name):
    model = perturbed(THEORIES[name], hidden=(8, 8), n_steps=5, integrator="heun")
    x, log_q = model.sample(6, torch.Generator().manual_seed(4))
    assert torch.allclose(model.log_q(x), log_q, atol=1e-9)


def test_angle_samples_lie_on_the_torus():
    model = perturbed(THEORIES["u1"], hidden=(8,), n_steps=16)
    x, _ = model.sample(8, torch.Generator().manual_seed(0))
    assert x.min() >= -math.pi and x.max() < math.pi


def test_sde_samples_come_without_a_density():
    model = perturbed(THEORIES["phi4"], hidden=(8,), n_steps=4).set_sampling(sampler="sde", corrector_steps=1)
    x, log_q = model.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 2, 2) and torch.isfinite(x).all()
    assert torch.isnan(log_q).all() and not model.exact_density


def test_a_folding_step_is_refused():
    model = perturbed(THEORIES["phi4"], hidden=(8,), n_steps=1, noise=0.0)
    with torch.no_grad():
        model.net.head.bias.fill_(0.0)
        model.net.head.weight.normal_(0, 30.0, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="not invertible"):
        model.sample(64, torch.Generator().manual_seed(0))


def test_bad_sampling_options_are_refused():
    model = perturbed(THEORIES["xy"], hidden=(8,))
    for kwargs, match in [({"sampler": "ddim"}, "unknown diffusion sampler"), ({"n_steps": 0}, "positive integer"),
                          ({"integrator": "rk4"}, "unknown integrator"), ({"corrector_steps": -1}, "non-negative")]:
        with pytest.raises(ValueError, match=match):
            model.set_sampling(**kwargs)
