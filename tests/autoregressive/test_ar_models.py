"""PixelCNN and MADE autoregressive models (samplers/autoregressive): log q is the sum of the
conditionals, the networks are causal, sampling and density agree, and the interface is the flows'."""
import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from lattice import XY, Phi4
from samplers.autoregressive import build
from samplers.autoregressive.pixelcnn import causal_windows
from samplers.flows import build_model

from .conftest import perturbed

ARCHS = [{"arch": "pixelcnn", "hidden": [8, 8, 8]}, {"arch": "made", "hidden": [24, 24]}]
THEORIES = [Phi4((3, 4), m2=-4.0, g=8.0), XY((3, 4), 1.0)]
IDS = ["pixelcnn", "made"]


def configs(theory, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *theory.shape), generator=g, dtype=torch.float64)
    return (torch.rand((n, *theory.shape), generator=g, dtype=torch.float64) * 2 - 1) * math.pi \
        if theory.name == "xy" else x


# --------------------------------------------------------------------------- construction
def test_build_interface_and_validation():
    th = XY((4, 4), 1.0)
    m = build_model("autoregressive", th, arch="pixelcnn", hidden=(8, 8), n_components=3)
    assert m.name == "autoregressive" and m.theory is th and not m.reparameterizable
    assert m.hyper == {"arch": "pixelcnn", "hidden": [8, 8], "kernel_size": 3, "n_components": 3, "dtype": "float32"}
    assert json.loads(json.dumps(m.hyper)) == m.hyper
    assert build(th, **m.hyper).state_dict().keys() == m.state_dict().keys()
    assert build(th, n_layers=4, hidden=[8]).hyper["hidden"] == [8, 8, 8, 8]
    for bad, needle in [({"arch": "lstm"}, "arch"), ({"kernel_size": 2}, "kernel_size"), ({"n_components": 0}, "n_comp"),
                        ({"dtype": "float16"}, "dtype"), ({"hidden": [0]}, "hidden")]:
        with pytest.raises(ValueError, match=needle):
            build(th, **bad)
    from lattice import U1
    with pytest.raises(ValueError, match="phi4, xy"):
        build_model("autoregressive", U1((4, 4), 1.0))


def test_causal_windows_see_the_preceding_neighbours_across_the_boundary():
    L0, L1 = 4, 5
    src, mask_a, mask_b = causal_windows((L0, L1), 3)
    idx = torch.arange(L0 * L1)[:, None]
    assert torch.equal(mask_a.bool(), src < idx) and torch.equal(mask_b.bool(), src <= idx)
    seen = lambda i: set(src[i][mask_a[i].bool()].tolist())  # noqa: E731
    r, c = 1, L1 - 1  # last column: its right neighbour (r, 0) wraps into the past
    assert r * L1 + 0 in seen(r * L1 + c)
    r, c = L0 - 1, 2  # last row: its lower neighbour (0, c) wraps into the past
    assert 0 * L1 + c in seen(r * L1 + c)
    assert seen(0) == set()  # the first site has no context


# --------------------------------------------------------------------------- densities
@pytest.mark.parametrize("hyper", ARCHS, ids=IDS)
@pytest.mark.parametrize("theory", THEORIES, ids=["phi4", "xy"])
def test_log_q_is_the_sum_of_independently_computed_conditionals(theory, hyper):
    model = perturbed(theory, n_components=2, **hyper)
    x = configs(theory, 5)
    V = math.prod(theory.shape)
    total = np.zeros(5)
    g = torch.Generator().manual_seed(9)
    for i in range(V):  # site i's conditional from a pass where x_>=i is replaced by noise
        xi = x.reshape(5, V).clone()
        xi[:, i:] = torch.randn((5, V - i), generator=g, dtype=torch.float64)
        with torch.no_grad():
            log_pi, mu, scale = (t.numpy() for t in model.conditional.params(model.conditional_params(xi)[:, i]))
        v = x.reshape(5, V)[:, i].numpy()
        dist = (stats.vonmises(scale, loc=mu) if theory.name == "xy" else stats.norm(mu, scale))
        total += np.log((np.exp(log_pi) * dist.pdf(v[:, None])).sum(1))
    np.testing.assert_allclose(model.log_q(x).detach().numpy(), total, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("hyper", ARCHS, ids=IDS)
@pytest.mark.parametrize("theory", THEORIES, ids=["phi4", "xy"])
def test_conditional_parameters_are_causal(theory, hyper):
    model = perturbed(theory, seed=1, **hyper)
    V = math.prod(theory.shape)
    x = configs(theory, 1, seed=2)[0]
    jac = torch.autograd.functional.jacobian(lambda y: model.conditional_params(y[None])[0], x).reshape(V, -1, V)
    dep = jac.abs().amax(1)  # dep[i, j]: how much site i's conditional parameters move with x_j
    assert torch.all(dep[torch.triu(torch.ones(V, V, dtype=torch.bool))] == 0)  # j >= i: never
    assert torch.all(dep[1:, :].amax(1) > 0)  # every site after the first does depend on its context
    assert dep[V - 1, V - 2] > 0  # e.g. on its left neighbour


@pytest.mark.parametrize("hyper", ARCHS, ids=IDS)
@pytest.mark.parametrize("theory", THEORIES, ids=["phi4", "xy"])
def test_sampling_returns_the_exact_log_q_of_its_samples(theory, hyper):
    model = perturbed(theory, seed=3, **hyper)
    x, lq = model.sample(64, torch.Generator().manual_seed(4))
    assert x.shape == (64, *theory.shape) and x.dtype == torch.float64 and lq.dtype == torch.float64
    torch.testing.assert_close(model.log_q(x).detach(), lq, rtol=0, atol=1e-10)
    if theory.name == "xy":
        assert torch.all((x >= -math.pi) & (x < math.pi))
        torch.testing.assert_close(model.log_q(x + 2 * math.pi).detach(), lq, rtol=0, atol=1e-10)  # periodic
    again, lq2 = model.sample(64, torch.Generator().manual_seed(4))
    assert torch.equal(again, x) and torch.equal(lq2, lq)  # deterministic in the generator


def test_float32_models_sample_in_float32_with_float64_log_q():
    model = build_model("autoregressive", XY((4, 4), 1.0), hidden=(8, 8))
    x, lq = model.sample(16, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and lq.dtype == torch.float64
    assert model.log_q(x).dtype == torch.float64
    torch.testing.assert_close(model.log_q(x).detach(), lq, rtol=0, atol=1e-3)


@pytest.mark.parametrize("hyper", ARCHS, ids=IDS)
@pytest.mark.parametrize("theory", [Phi4((2, 2), m2=-1.0, g=1.0), XY((2, 2), 1.0)], ids=["phi4", "xy"])
def test_samples_follow_the_density_on_a_tiny_lattice(theory, hyper):
    # marginal of site 1: q(x_1) = int dx_0 q(x_0) q(x_1 | x_0), integrated on a grid
    xy = theory.name == "xy"
    model = perturbed(theory, seed=5, noise=0.5 if xy else 0.3, **(hyper | {"hidden": hyper["hidden"][:2]}))
    lo, hi = (-math.pi, math.pi) if xy else (-12.0, 12.0)
    g0, g1 = np.linspace(lo, hi, 241), np.linspace(lo, hi, 601)
    x = torch.zeros(len(g0), len(g1), 4, dtype=torch.float64)
    x[..., 0], x[..., 1] = torch.as_tensor(g0)[:, None], torch.as_tensor(g1)[None, :]
    with torch.no_grad():
        lp = model.conditional_log_prob(x.reshape(-1, 2, 2)).reshape(len(g0), len(g1), 4).numpy()
    joint = np.exp(lp[..., 0] + lp[..., 1])
    marginal = integrate.trapezoid(joint, g0, axis=0)
    assert integrate.trapezoid(marginal, g1) == pytest.approx(1.0, abs=1e-3)
    conditional_spread = np.exp(lp[:, 300, 1]).std() / np.exp(lp[:, 300, 1]).mean()
    assert conditional_spread > 0.05  # q(x_1 | x_0) does depend on x_0: the test is not trivial
    cdf = integrate.cumulative_trapezoid(marginal, g1, initial=0.0)
    samples, _ = model.sample(20000, torch.Generator().manual_seed(6))
    s = samples.reshape(-1, 4)[:, 1].numpy()
    assert stats.kstest(s, lambda t: np.interp(t, g1, cdf / cdf[-1])).pvalue > 1e-3
    # and the sampled pairs follow q(x_0) q(x_1 | x_0): the mean log q of samples is -entropy
    with np.errstate(divide="ignore"):
        entropy = -integrate.trapezoid(integrate.trapezoid(np.where(joint > 0, joint * np.log(joint), 0), g1), g0)
    lq01 = model.conditional_log_prob(samples).detach().numpy()[:, :2].sum(1)
    assert abs(-lq01.mean() - entropy) < 4 * lq01.std() / math.sqrt(len(lq01))
