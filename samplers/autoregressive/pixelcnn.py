"""A PixelCNN-style masked-convolution network on the periodic lattice (van den Oord et al.,
"Pixel recurrent neural networks", ICML 2016; "Conditional image generation with PixelCNN
decoders", NeurIPS 2016), with masks that respect the torus.

Ordering and causal context
---------------------------
Sites are ordered in raster order, i = r * L1 + c for site (r, c) of an L0 x L1 lattice (row r
along axis 0). A convolution of odd kernel size k at site i reads the k x k window of sites
((r + dr) mod L0, (c + dc) mod L1), |dr|, |dc| <= k // 2 -- periodic, like the action. Which of
them it may read depends on the *position*, not only on the offset, because the periodic wrap
moves a neighbour from the future into the past: the mask of layer l at site i keeps the offset
(dr, dc) iff the site j it reaches satisfies

    j <  i   (first layer, "type A": a site never sees its own variable)
    j <= i   (later layers, "type B": the features at j depend on x_<j only, so j <= i is safe)

so by induction every feature at site i, and the conditional parameters there, are functions of
x_<i only (tests/autoregressive/test_pixelcnn.py checks it with a Jacobian). The causal context
of site (r, c) in the first layer is therefore: the rows above within k // 2 (all columns of the
window, wrapping in c), the sites to the left in the same row, and -- through the periodic
boundaries -- (i) for the last columns, the sites (r, c + dc mod L1) that wrap to the start of the
row, e.g. the right neighbour (r, 0) of (r, L1 - 1), and (ii) for the last rows, the sites of the
first rows that the window reaches across the boundary, e.g. the lower neighbour (0, c) of
(L0 - 1, c). So each site sees, once they are sampled, all its lattice neighbours that precede
it, including the ones across the boundary, which is where the nearest-neighbour actions couple.
Further layers widen the context by k // 2 per layer (same rule), without blind spots from the
wrap; a window reaching the same site twice (L < k) simply sums both weights.

Network: input features (F channels per site: the field and a constant 1 that tells which
neighbours exist, see model.py) -> masked layer (type A) -> SiLU -> [masked layer (type B) ->
SiLU, added to its input when the widths agree] x (len(hidden) - 1) -> 1 x 1 head to the P
conditional parameters of each site.

Caching for sampling
--------------------
Sampling visits the sites in order. The features of every layer at sites j < i are final once
x_<i is known (they depend on x_<j only), so they are kept in per-layer buffers (N, C, V), and at
step i only the column of every layer at site i is computed from its k x k window of buffered
values: O(sum_l C_l C_{l-1} k^2) per configuration and site instead of a full network pass.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def causal_windows(shape: tuple[int, int], kernel_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src, mask_a, mask_b): src[i, o] the raster index of the site that offset o reaches from site i
    on the torus; mask_a[i, o] = (src < i), mask_b[i, o] = (src <= i) as 0/1 floats. Offsets o run over
    (dr, dc) in raster order of the k x k window."""
    L0, L1 = shape
    h = kernel_size // 2
    r, c = torch.meshgrid(torch.arange(L0), torch.arange(L1), indexing="ij")
    r, c = r.reshape(-1), c.reshape(-1)
    idx = r * L1 + c
    src = torch.stack([((r + dr) % L0) * L1 + (c + dc) % L1
                       for dr in range(-h, h + 1) for dc in range(-h, h + 1)], dim=1)
    return src, (src < idx[:, None]).float(), (src <= idx[:, None]).float()


class MaskedPeriodicConv(nn.Module):
    """y[n, o, i] = b[o] + sum_{c, o'} W[o, c, o'] mask[i, o'] h[n, c, src[i, o']] (see module docstring)."""

    def __init__(self, c_in: int, c_out: int, src: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        k2 = src.shape[1]
        bound = 1.0 / math.sqrt(c_in * k2)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k2).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))
        self.register_buffer("src", src.clone(), persistent=False)
        self.register_buffer("mask", mask.clone(), persistent=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """All sites: h (N, C_in, V) -> (N, C_out, V)."""
        g = h[:, :, self.src] * self.mask  # (N, C_in, V, k^2)
        return torch.einsum("ncvk,ock->nov", g, self.weight) + self.bias[:, None]

    def at(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """Site i only: h (N, C_in, V) -> (N, C_out)."""
        g = h[:, :, self.src[i]] * self.mask[i]  # (N, C_in, k^2)
        return g.flatten(1) @ self.weight.flatten(1).T + self.bias


class PixelCNN(nn.Module):
    """Masked periodic convolutions over the raster order; out: (N, V, n_params) per site."""

    def __init__(self, shape: tuple[int, int], in_features: int, n_params: int, hidden: tuple[int, ...] = (32, 32, 32),
                 kernel_size: int = 3, head_bias: torch.Tensor | None = None):
        super().__init__()
        self.shape = tuple(shape)
        src, mask_a, mask_b = causal_windows(self.shape, kernel_size)
        widths = (in_features, *hidden)
        self.layers = nn.ModuleList(
            MaskedPeriodicConv(widths[l], widths[l + 1], src, mask_a if l == 0 else mask_b) for l in range(len(hidden)))
        self.head = nn.Linear(hidden[-1], n_params)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            if head_bias is not None:
                self.head.bias.copy_(head_bias)

    def _block(self, l: int, h_in: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = F.silu(y)
        return h_in + y if l > 0 and h_in.shape[1] == y.shape[1] else y

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """feat (N, F, V) -> raw conditional parameters (N, V, P)."""
        h = feat
        for l, layer in enumerate(self.layers):
            h = self._block(l, h, layer(h))
        return self.head(h.transpose(1, 2))

    # ------------------------------------------------------------------ incremental (sampling)
    def start(self, feat: torch.Tensor) -> list[torch.Tensor]:
        """A cache for sequential sampling: [feat (N, F, V) (filled by the caller), one buffer per layer]."""
        n, v = feat.shape[0], feat.shape[2]
        return [feat] + [feat.new_zeros(n, layer.weight.shape[0], v) for layer in self.layers]

    def site(self, cache: list[torch.Tensor], i: int) -> torch.Tensor:
        """Raw parameters (N, P) of site i's conditional, from the cached columns j < i (and the
        columns at i it computes and stores now); cache[0][:, :, :i] must hold the features of x_<i."""
        for l, layer in enumerate(self.layers):
            h_in = cache[l]
            cache[l + 1][:, :, i] = self._block(l, h_in[:, :, i], layer.at(h_in, i))
        return self.head(cache[-1][:, :, i])
