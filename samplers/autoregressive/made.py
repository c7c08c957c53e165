"""MADE: a masked MLP over all sites at once (Germain, Gregor, Murray, Larochelle, "MADE: Masked
autoencoder for distribution estimation", ICML 2015), for small lattices.

Sites in raster order i = r * L1 + c. The F input features of site i get degree i; hidden unit u
of every hidden layer gets degree m(u) = u mod max(V - 1, 1) in {0, .., V - 2}; a weight from a
unit of degree a to a hidden unit of degree m is kept iff m >= a, and from a hidden unit of
degree m to the outputs of site i iff i > m. So every path from input site j to the outputs of
site i has j <= m < i: the conditional parameters of site i depend on x_<i only (site 0's are the
output bias alone). All sites are fully connected through the masks -- the whole x_<i is the
context, with no notion of distance, so periodic boundaries need no special treatment; the
network costs O(V * width) per layer and pass, which is why it is meant for small lattices.

Sampling recomputes the (cheap) network once per site and reads site i's outputs: V passes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def made_masks(n_sites: int, in_features: int, hidden: tuple[int, ...], n_params: int) -> list[torch.Tensor]:
    """The 0/1 masks (out, in) of the layers: inputs -> hidden[0] -> ... -> outputs (site-major)."""
    deg_in = torch.arange(n_sites).repeat_interleave(in_features)
    degs = [deg_in] + [torch.arange(h) % max(n_sites - 1, 1) for h in hidden]
    masks = [(degs[l + 1][:, None] >= degs[l][None, :]).float() for l in range(len(hidden))]
    deg_out = torch.arange(n_sites).repeat_interleave(n_params)
    masks.append((deg_out[:, None] > degs[-1][None, :]).float())
    return masks


class MaskedLinear(nn.Linear):
    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked MLP; forward(feat (N, F, V)) -> raw conditional parameters (N, V, P)."""

    def __init__(self, shape: tuple[int, int], in_features: int, n_params: int, hidden: tuple[int, ...] = (64, 64),
                 head_bias: torch.Tensor | None = None):
        super().__init__()
        self.shape = tuple(shape)
        self.n_sites, self.n_params = math.prod(self.shape), n_params
        masks = made_masks(self.n_sites, in_features, tuple(hidden), n_params)
        self.layers = nn.ModuleList(MaskedLinear(m) for m in masks)
        with torch.no_grad():
            self.layers[-1].weight.mul_(0.1)
            if head_bias is not None:
                self.layers[-1].bias.copy_(head_bias.repeat(self.n_sites))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        h = feat.transpose(1, 2).flatten(1)  # (N, V * F), site-major like the degrees
        for layer in self.layers[:-1]:
            h = F.silu(layer(h))
        return self.layers[-1](h).view(-1, self.n_sites, self.n_params)

    def start(self, feat: torch.Tensor) -> list:
        """A cache for sequential sampling, without autograd: the features (N, F, V) (``record`` fills
        them) and the masked weights, formed once per pass instead of once per site."""
        return [feat, [(layer.weight * layer.mask, layer.bias) for layer in self.layers]]

    def record(self, cache: list, i: int, feat_i: torch.Tensor) -> None:
        """Store the features (N, F) of the value just drawn at site i."""
        cache[0][:, :, i] = feat_i

    def site(self, cache: list, i: int) -> torch.Tensor:
        """Raw parameters (N, P) of site i (a pass over the network with the features of x_<i set)."""
        feat, weights = cache
        h = feat.transpose(1, 2).flatten(1)
        for w, b in weights[:-1]:
            h = F.silu(F.linear(h, w, b))
        w, b = weights[-1]
        rows = slice(i * self.n_params, (i + 1) * self.n_params)
        return F.linear(h, w[rows], b[rows])
