"""The score network s_theta(x, t) ~ grad_x log p_t(x) for lattice fields.

A stack of convolutions with circular (periodic) padding, so the network is translation equivariant
on the torus like the actions; SiLU activations. Time enters through Gaussian Fourier features of
log std(t) (Song et al. 2021), mapped by a small MLP to one bias per channel of every hidden layer.
Inputs per site (channels), chosen so that the network is a smooth function on the field's manifold:

    phi4   phi / sqrt(1 + std(t)^2)              (keeps the input O(1) at every noise level)
    xy     cos theta, sin theta                  (2 pi-periodic in every angle)
    u1     cos, sin of both links at x and of the plaquette theta_P(x)   (six channels)

Outputs: one score component per degree of freedom (u1: two channels, one per link direction),
divided by std(t), the scale of the true score of the noised field at large t (Song et al.'s
parameterization), so that the network's raw output is O(1) at every noise level. For angle fields
(xy, u1) it is also multiplied by exp(-std^2 / 2): on the torus the noised density is the target
convolved with wrapped Gaussians, whose non-constant Fourier modes k decay as exp(-|k|^2 std^2 / 2),
so the true score vanishes at least that fast; the envelope builds this in exactly, and the
large-noise steps of generation stay close to the identity (and invertible) whatever the network
learned there (without it, a score rescaled to a larger beta folded the first PF-ODE steps).
"""
from __future__ import annotations

import math

import torch
from torch import nn

FIELD_CHANNELS = {"phi4": (1, 1), "xy": (2, 1), "u1": (6, 2)}  # theory -> (input, output) channels


def u1_plaquette(x: torch.Tensor) -> torch.Tensor:
    """theta_P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x) for links (N, 2, L0, L1)."""
    t0, t1 = x[:, 0], x[:, 1]
    return t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1


class TimeEmbedding(nn.Module):
    """Fourier features [sin(2 pi w c), cos(2 pi w c)] of c = log std(t), fixed random w ~ N(0, s^2)."""

    def __init__(self, dim: int, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(1234)  # fixed: part of the architecture, not of training
        self.register_buffer("w", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        a = 2 * math.pi * c[:, None] * self.w[None, :]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class ScoreNet(nn.Module):
    """s_theta(x, std) for fields of one theory on an L0 x L1 lattice (batch first, PHYSICS.md layouts)."""

    def __init__(self, theory_name: str, hidden: tuple[int, ...] = (32, 32, 32, 32), kernel_size: int = 3,
                 time_dim: int = 32):
        super().__init__()
        self.theory_name = theory_name
        n_in, self.n_out = FIELD_CHANNELS[theory_name]
        self.embed = nn.Sequential(TimeEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.SiLU())
        pad = kernel_size // 2
        widths = (n_in, *hidden)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel_size, padding=pad, padding_mode="circular")
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.time_bias = nn.ModuleList(nn.Linear(time_dim, b) for b in hidden)
        self.head = nn.Conv2d(hidden[-1], self.n_out, kernel_size, padding=pad, padding_mode="circular")
        nn.init.zeros_(self.head.weight)  # starts at s = 0: the score of a flat density
        nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()

    def features(self, x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        if self.theory_name == "phi4":
            return (x / torch.sqrt(1 + std ** 2).view(-1, 1, 1)).unsqueeze(1)
        if self.theory_name == "xy":
            return torch.stack([torch.cos(x), torch.sin(x)], dim=1)
        p = u1_plaquette(x).unsqueeze(1)
        return torch.cat([torch.cos(x), torch.sin(x), torch.cos(p), torch.sin(p)], dim=1)

    def forward(self, x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The score at x (N, *config_shape) and noise level std (N,), same shape as x."""
        emb = self.embed(torch.log(std))
        h = self.features(x, std)
        for conv, tb in zip(self.convs, self.time_bias):
            h = self.act(conv(h) + tb(emb)[:, :, None, None])
        scale = 1 / std if self.theory_name == "phi4" else torch.exp(-0.5 * std ** 2) / std
        out = self.head(h) * scale.view(-1, 1, 1, 1)
        return out if self.theory_name == "u1" else out[:, 0]
