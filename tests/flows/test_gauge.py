"""Gauge-equivariant U(1) flow (samplers.flows.gauge): equivariance, exact densities, training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lattice import make_theory
from samplers.flows import build_model
from samplers.flows.gauge import build, gauge_transform, plaquettes, wrap
from samplers.weights import ess_fraction, imh_acceptance

torch.set_num_threads(1)  # 2 threads spin-wait badly when the 2 cores are shared

MAPS = ("ncp", "spline")


def u1(L0=4, L1=None, beta=2.0):
    return make_theory("u1", (L0, L1 or L0), beta=beta)


def randomized(theory, plaq_map, n_layers=8, seed=0, std=0.15, **kw):
    """A float64 flow with all conditioner weights random (the zero-init flow is the identity)."""
    torch.manual_seed(seed)
    flow = build(theory, n_layers=n_layers, plaq_map=plaq_map, dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, std)
    return flow


def angle_diff(a, b):
    return wrap(a - b).abs().max().item()


def prior_sample(flow, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return flow.prior.sample(n, generator=g)


@pytest.mark.parametrize("plaq_map", MAPS)
def test_gauge_equivariance(plaq_map):
    flow = randomized(u1(8), plaq_map)
    z = prior_sample(flow, 6)
    alpha = (torch.rand((6, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 - 1) * math.pi
    with torch.no_grad():
        x, ld = flow(z)
        xg, ldg = flow(gauge_transform(z, alpha))
        assert angle_diff(xg, gauge_transform(x, alpha)) < 1e-10
        assert (ldg - ld).abs().max().item() < 1e-10
        # the same the other way, and log q is gauge invariant
        zg, lig = flow.inverse(gauge_transform(x, alpha))
        assert angle_diff(zg, gauge_transform(z, alpha)) < 1e-10
        assert (flow.log_q(gauge_transform(x, alpha)) - flow.log_q(x)).abs().max().item() < 1e-10
    assert ld.abs().min().item() > 1e-2  # the check is not vacuous: the flow is far from identity


def test_gauge_transform_keeps_plaquettes():
    z = (torch.rand((3, 2, 4, 8), dtype=torch.float64) * 2 - 1) * math.pi
    alpha = torch.randn((3, 4, 8), dtype=torch.float64) * 3
    assert angle_diff(plaquettes(gauge_transform(z, alpha)), plaquettes(z)) < 1e-12
    assert angle_diff(gauge_transform(z, alpha), z) > 0.1


@pytest.mark.parametrize("passive_sum", [True, False])
@pytest.mark.parametrize("plaq_map", MAPS)
def test_inverse_and_logdet_vs_autograd_jacobian(plaq_map, passive_sum):
    # with passive_sum the conditioner also sees P(x) + P(x - e_nu): the Jacobian must stay triangular
    flow = randomized(u1(4), plaq_map, n_layers=8, passive_sum=passive_sum)
    z = prior_sample(flow, 1)
    x, ld = flow(z)
    z2, ldi = flow.inverse(x)
    assert angle_diff(z2, z) < 1e-10
    assert abs((ld + ldi).item()) < 1e-10
    jac = torch.func.jacrev(lambda v: flow(v.reshape(1, 2, 4, 4))[0].reshape(-1))(z.reshape(-1))
    assert jac.shape == (32, 32)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign.item() > 0  # orientation preserving
    assert abs(logabs.item() - ld.item()) < 1e-9
    # sample() and log_q() agree
    with torch.no_grad():
        xs, lq = flow.sample(5)
        assert (flow.log_q(xs) - lq).abs().max().item() < 1e-10


@pytest.mark.parametrize("plaq_map", MAPS)
def test_translations_by_mask_period_commute(plaq_map):
    flow = randomized(u1(8, 12), plaq_map)
    z = prior_sample(flow, 4)
    with torch.no_grad():
        x, ld = flow(z)
        for shift, dims in (((4,), (2,)), ((4,), (3,)), ((-4, 8), (2, 3))):
            xs, lds = flow(torch.roll(z, shift, dims))
            assert angle_diff(xs, torch.roll(x, shift, dims)) < 1e-10
            assert (lds - ld).abs().max().item() < 1e-10
        # a shift by one site is not a symmetry of the masks
        x1, _ = flow(torch.roll(z, 1, 2))
        assert angle_diff(x1, torch.roll(x, 1, 2)) > 1e-3


@pytest.mark.parametrize("plaq_map", MAPS)
def test_zero_init_is_identity_and_output_range(plaq_map):
    theory = u1(8)
    flow = build(theory, plaq_map=plaq_map)  # float32, default hyperparameters
    assert flow.name == "gauge-flow" and len(flow.transforms) == flow.hyper["n_layers"]
    x, lq = flow.sample(16)
    assert x.dtype == torch.float32 and x.shape == (16, 2, 8, 8) and lq.dtype == torch.float64
    assert x.min().item() >= -math.pi and x.max().item() < math.pi
    z = prior_sample(flow, 16)
    xz, ld = flow(z)
    assert angle_diff(xz, z) < 1e-5
    assert ld.abs().max().item() < 1e-4  # float32 rounding of 16 x 16 identity-spline log slopes
    assert (lq + 2 * 64 * math.log(2 * math.pi)).abs().max().item() < 1e-3


@pytest.mark.parametrize("plaq_map", MAPS)
def test_float32_round_trip(plaq_map):
    flow = randomized(u1(8), plaq_map, n_layers=16, std=0.1).to(torch.float32)
    with torch.no_grad():
        x, lq = flow.sample(64)
        z, ldi = flow.inverse(x)
        x2, ld = flow(z)
    assert angle_diff(x2.double(), x.double()) < 1e-5
    assert (ld + ldi).abs().max().item() < 1e-3


def test_inverse_gradients_for_forward_kl():
    """log q(x) is differentiable in the parameters through the (bisection + Newton) NCP inverse."""
    flow = randomized(u1(4), "ncp", n_layers=4)
    x, _ = flow.sample(3)
    x = x.detach()
    bias = flow.transforms[1].net[-1].bias
    grad = torch.autograd.grad(flow.log_q(x).sum(), bias)[0]
    eps = 1e-6
    num = torch.zeros_like(bias)
    with torch.no_grad():
        for i in range(bias.numel()):
            bias[i] += eps
            up = flow.log_q(x).sum()
            bias[i] -= 2 * eps
            down = flow.log_q(x).sum()
            bias[i] += eps
            num[i] = (up - down) / (2 * eps)
    assert torch.allclose(grad, num, atol=1e-6, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="multiples of 4"):
        build(u1(6))
    with pytest.raises(ValueError, match="multiples of 4"):
        build(u1(8, 10))
    with pytest.raises(ValueError, match="plaq_map"):
        build(u1(4), plaq_map="affine")
    with pytest.raises(ValueError):
        build_model("gauge-flow", make_theory("xy", (4, 4), beta=1.0))
    assert build_model("gauge-flow", u1(4), n_layers=2, hidden=(8,)).hyper["n_layers"] == 2


def _ess_and_acceptance(flow, n, seed):
    with torch.no_grad():
        x, lq = flow.sample(n, generator=torch.Generator().manual_seed(seed))
        logw = (flow.log_p(x) - lq).numpy()
    return ess_fraction(logw), imh_acceptance(logw, np.random.default_rng(seed))


def test_reverse_kl_training_improves_ess_and_acceptance():
    theory = u1(4, beta=2.0)
    torch.manual_seed(0)
    flow = build(theory, n_layers=8, hidden=(8,), plaq_map="spline")
    ess0, acc0 = _ess_and_acceptance(flow, 2048, seed=5)
    opt = torch.optim.Adam(flow.parameters(), lr=2e-2)
    gen = torch.Generator().manual_seed(0)  # not the global generator: other tests' use must not matter
    for _ in range(100):
        x, lq = flow.sample(128, gen)
        loss = (lq - flow.log_p(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ess1, acc1 = _ess_and_acceptance(flow, 2048, seed=6)
    print(f"U(1) 4x4 beta=2: ESS/N {ess0:.3f} -> {ess1:.3f}, MH acceptance {acc0:.3f} -> {acc1:.3f}")
    # measured: ESS/N 0.003 -> ~0.15, acceptance 0.004 -> ~0.25 (the tail of the weights is long)
    assert ess1 > max(0.06, 10 * ess0)
    assert acc1 > max(0.15, acc0 + 0.1)
