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
x_<i is known (they depend on x_<j only), so they are kept in per-layer buffers (N, V, C), and at
step i only the column of every layer at site i is computed from the taps of its k x k window that
its mask keeps: one gather of whole rows and one matrix product per layer and site,
O(sum_l C_l C_{l-1} k^2) per configuration and site instead of a full network pass.
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
    """y[n, i, o] = b[o] + sum_{c, o'} W[o, c, o'] mask[i, o'] h[n, src[i, o'], c] (see module docstring).

    Layout: sites before channels, h (N, V, C), so a window is whole rows of C numbers. The masked
    taps are never read: each site gathers only the taps its mask keeps (a masked-out tap reads an
    appended zero row in the all-sites pass) and multiplies them with the matching columns of W in
    one matrix product, which is the masked sum exactly (0 * w = 0 left out)."""

    def __init__(self, c_in: int, c_out: int, src: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        k2 = src.shape[1]
        bound = 1.0 / math.sqrt(c_in * k2)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k2).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound))
        v = src.shape[0]
        self.register_buffer("src_masked", torch.where(mask > 0, src, v).reshape(-1), persistent=False)
        # sites with the same kept taps share one weight matrix: pattern[i] indexes (taps, their sources)
        patterns: dict = {}
        self.pattern = [patterns.setdefault(tuple(mask[i].nonzero().squeeze(1).tolist()), len(patterns))
                        for i in range(v)]
        self.taps = [torch.tensor(t, dtype=torch.long) for t in patterns]
        self.sources = [src[i, self.taps[self.pattern[i]]] for i in range(v)]

    def _flat_weight(self, taps: torch.Tensor | None = None) -> torch.Tensor:
        """W as (len(taps) C_in, C_out), row t C_in + c = W[:, c, taps[t]] (all taps if None)."""
        w = self.weight if taps is None else self.weight[:, :, taps.to(self.weight.device)]
        return w.permute(2, 1, 0).reshape(-1, w.shape[0])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """All sites: h (N, V, C_in) -> (N, V, C_out)."""
        n, v, c = h.shape
        g = torch.cat((h, h.new_zeros(n, 1, c)), 1).index_select(1, self.src_masked)  # (N, V k^2, C_in)
        return torch.addmm(self.bias, g.view(n * v, -1), self._flat_weight()).view(n, v, -1)

    def site_tables(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """For a sampling pass (``at``), on the layer's device: the flat weight of each tap pattern and
        the kept sources of each site."""
        device = self.weight.device
        return [self._flat_weight(t) for t in self.taps], [s.to(device) for s in self.sources]

    def at(self, h: torch.Tensor, i: int, tables: tuple) -> torch.Tensor:
        """Site i only: h (N, V, C_in) -> (N, C_out); tables from ``site_tables``."""
        weights, sources = tables
        g = h.index_select(1, sources[i])  # (N, kept taps, C_in)
        return torch.addmm(self.bias, g.view(h.shape[0], -1), weights[self.pattern[i]])


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
        h = feat.transpose(1, 2)
        for l, layer in enumerate(self.layers):
            h = self._block(l, h, layer(h))
        return self.head(h)

    # ------------------------------------------------------------------ incremental (sampling)
    def start(self, feat: torch.Tensor) -> list:
        """A cache for sequential sampling, without autograd: the features (N, V, F) (``record`` fills
        them), one buffer (N, V, C_l) per layer, and each layer's ``site_tables``."""
        n, _, v = feat.shape
        buffers = [feat.transpose(1, 2).contiguous()] + [feat.new_zeros(n, v, layer.weight.shape[0])
                                                          for layer in self.layers]
        return [buffers, [layer.site_tables() for layer in self.layers]]

    def record(self, cache: list, i: int, feat_i: torch.Tensor) -> None:
        """Store the features (N, F) of the value just drawn at site i."""
        cache[0][0][:, i] = feat_i

    def site(self, cache: list, i: int) -> torch.Tensor:
        """Raw parameters (N, P) of site i's conditional, from the cached columns j < i (and the
        columns at i it computes and stores now); the features of x_<i must be recorded."""
        buffers, tables = cache
        for l, layer in enumerate(self.layers):
            h_in = buffers[l]
            buffers[l + 1][:, i] = self._block(l, h_in[:, i], layer.at(h_in, i, tables[l]))
        return self.head(buffers[-1][:, i])
