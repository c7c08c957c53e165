"""Mixture conditionals (samplers/autoregressive/conditionals.py): normalized densities that agree
with scipy, and exact samplers (KS tests), including the Best-Fisher von Mises sampler."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from samplers.autoregressive.conditionals import GaussianMixture, VonMisesMixture, sample_von_mises


@pytest.mark.parametrize("kappa", [1e-5, 0.05, 1.0, 7.0, 300.0])
def test_von_mises_sampler_is_exact(kappa):
    g = torch.Generator().manual_seed(3)
    d = sample_von_mises(torch.full((20000,), kappa, dtype=torch.float64), g).numpy()
    assert np.all(np.abs(d) <= math.pi)
    assert stats.kstest(d, stats.vonmises(kappa).cdf).pvalue > 1e-3


def test_von_mises_sampler_is_deterministic_given_the_generator():
    kappa = torch.linspace(0.01, 20, 500, dtype=torch.float64)
    a = sample_von_mises(kappa, torch.Generator().manual_seed(5))
    b = sample_von_mises(kappa, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def random_raw(K, n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 3 * K), generator=g, dtype=torch.float64) * 1.5


@pytest.mark.parametrize("cls", [GaussianMixture, VonMisesMixture])
def test_mixture_density_matches_scipy_and_is_normalized(cls):
    K = 3
    cond = cls(K)
    raw = random_raw(K)
    log_pi, mu, scale = (t[0].numpy() for t in cond.params(raw))
    grid = np.linspace(-math.pi, math.pi, 4001) if cond.periodic else np.linspace(-30, 30, 40001)
    ours = cond.log_prob(raw.expand(len(grid), -1), torch.as_tensor(grid)).numpy()
    if cond.periodic:
        ref = sum(np.exp(log_pi[k]) * stats.vonmises(scale[k], loc=mu[k]).pdf(grid) for k in range(K))
    else:
        ref = sum(np.exp(log_pi[k]) * stats.norm(mu[k], scale[k]).pdf(grid) for k in range(K))
    np.testing.assert_allclose(ours, np.log(ref), rtol=1e-10, atol=1e-10)
    assert integrate.trapezoid(np.exp(ours), grid) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize("cls", [GaussianMixture, VonMisesMixture])
def test_mixture_samples_follow_the_density(cls):
    K = 3
    cond = cls(K)
    raw = random_raw(K, seed=1)
    x = cond.sample(raw.expand(20000, -1), torch.Generator().manual_seed(2)).numpy()
    grid = np.linspace(-math.pi, math.pi, 4001) if cond.periodic else np.linspace(-30, 30, 60001)
    pdf = np.exp(cond.log_prob(raw.expand(len(grid), -1), torch.as_tensor(grid)).numpy())
    cdf = integrate.cumulative_trapezoid(pdf, grid, initial=0.0)
    assert stats.kstest(x, lambda t: np.interp(t, grid, cdf / cdf[-1])).pvalue > 1e-3


def test_von_mises_log_density_is_stable_at_large_kappa():
    cond = VonMisesMixture(1)
    raw = torch.tensor([[0.0, 0.3, 2000.0]], dtype=torch.float64)  # kappa ~ 2000: I_0 overflows nothing
    lp = cond.log_prob(raw, torch.tensor([0.3], dtype=torch.float64))
    kappa = cond.params(raw)[2][0, 0].item()
    assert lp.item() == pytest.approx(-math.log(2 * math.pi) - math.log(special.i0e(kappa)), rel=1e-12)
