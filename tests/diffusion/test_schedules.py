"""Noise schedules and the (wrapped) Gaussian kernels of samplers/diffusion/schedules.py."""
import math

import numpy as np
import pytest
import torch

from samplers.diffusion.schedules import (Schedule, wrapped_normal_log_prob_sites, wrapped_normal_score)

STDS = [0.05, 0.3, 1.0, 1.49, 1.51, 3.0, 9.85]


@pytest.mark.parametrize("kind", ["ve", "geometric"])
def test_g2_is_the_time_derivative_of_the_kernel_variance(kind):
    s = Schedule(kind)
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    derivative = (s.std(t + h) ** 2 - s.std(t - h) ** 2) / (2 * h)
    assert torch.allclose(derivative, s.g2(t), rtol=1e-6)


def test_ve_schedule_matches_the_papers_sigma_25():
    s = Schedule("ve", sigma=25.0)
    assert float(s.std(torch.tensor(0.0, dtype=torch.float64))) == 0.0
    assert float(s.std(torch.tensor(1.0, dtype=torch.float64))) == pytest.approx(math.sqrt(624 / (2 * math.log(25))))


@pytest.mark.parametrize("std", STDS)
def test_wrapped_normal_is_normalized_on_the_circle(std):
    d = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
    p = torch.exp(wrapped_normal_log_prob_sites(d, std)).numpy()
    assert np.trapezoid(p, d.numpy()) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("std", STDS)
def test_wrapped_normal_equals_a_long_image_sum(std):
    d = torch.linspace(-math.pi, math.pi, 101, dtype=torch.float64)
    k = torch.arange(-200, 201, dtype=torch.float64)
    ref = torch.logsumexp(-((d[:, None] + 2 * math.pi * k) ** 2) / (2 * std ** 2), 1) \
        - math.log(std * math.sqrt(2 * math.pi))
    assert torch.allclose(wrapped_normal_log_prob_sites(d, std), ref, atol=1e-12)


@pytest.mark.parametrize("std", [0.1, 0.7, 2.0])
def test_wrapped_score_is_the_derivative_of_the_log_density(std):
    d = torch.linspace(-3.0, 3.0, 13, dtype=torch.float64)
    h = 1e-6
    fd = (wrapped_normal_log_prob_sites(d + h, std) - wrapped_normal_log_prob_sites(d - h, std)) / (2 * h)
    score = wrapped_normal_score(d, torch.full_like(d, std), n_images=int(4 * std) + 2)
    assert torch.allclose(score, fd, atol=1e-6)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="unknown noise schedule"):
        Schedule("vp")
    with pytest.raises(ValueError, match="sigma must be > 1"):
        Schedule("ve", sigma=0.5)
