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

Everything but the time embedding is local: the output at a site depends on the field only within
``receptive_radius`` (the sum of the kernel radii, + 1 for the U(1) plaquette). ``ScoreNet.jacobian``
uses it: the exact Jacobian ds/dx by forward-mode differentiation by hand, one tangent per degree of
freedom held on the window of sites it can reach, its convolutions as float64 GEMMs of the nonzero
window slots (docs/diffusion.md, "The step Jacobians"). The periodic padding is ``circular_pad``, bitwise
that of nn.Conv2d(padding_mode="circular") with a cheaper backward; the modules are nn.Conv2d as before
(the same parameter names: checkpoints load).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FIELD_CHANNELS = {"phi4": (1, 1), "xy": (2, 1), "u1": (6, 2)}  # theory -> (input, output) channels
FIELD_COMPONENTS = {"phi4": 1, "xy": 1, "u1": 2}  # theory -> degrees of freedom per site


def circular_pad(h: torch.Tensor, p0: int, p1: int | None = None) -> torch.Tensor:
    """h (..., L0, L1) extended periodically by p0 rows and p1 (default p0) columns on each side.

    The same values as F.pad(h, (p1, p1, p0, p0), mode="circular"), and the same order of operations
    (columns first, then rows), so that the gradient sums its contributions in the same order: the
    outputs and the Jacobians of the score network are bitwise those of nn.Conv2d(padding_mode="circular")
    (tests/diffusion/test_passes.py). Its backward is two slice-and-add passes instead of the copies of
    F.pad's, which dominated the exact-density passes (about 80 % of their time at 8 x 8)."""
    p1 = p0 if p1 is None else p1
    L0, L1 = h.shape[-2:]
    if p0 > L0 or p1 > L1:  # wraps more than once: index by residues (F.pad refuses this case)
        i1 = torch.arange(-p1, L1 + p1, device=h.device) % L1
        i0 = torch.arange(-p0, L0 + p0, device=h.device) % L0
        return h.index_select(-1, i1).index_select(-2, i0)
    if p1:
        h = torch.cat([h[..., L1 - p1:], h, h[..., :p1]], dim=-1)
    if p0:
        h = torch.cat([h[..., L0 - p0:, :], h, h[..., :p0, :]], dim=-2)
    return h


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    """d SiLU / dz = sigmoid(z) (1 + z (1 - sigmoid(z))), the formula of SiLU's autograd backward."""
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


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


def _fold(t: torch.Tensor, dim: int, origin: int, size: int) -> torch.Tensor:
    """Fold a window along ``dim`` (index i = offset i - origin) onto the torus of ``size`` sites (index =
    offset mod size): contributions landing on one site are summed in a fixed order (deterministic on
    every device)."""
    m = t.shape[dim]
    q = -(-m // size)
    if q * size > m:
        shape = list(t.shape)
        shape[dim] = q * size - m
        t = torch.cat([t, t.new_zeros(shape)], dim)
    t = t.unflatten(dim, (q, size)).sum(dim)
    return torch.roll(t, -origin, dims=dim)


class _Window:
    """The offsets a tangent holds along one lattice axis of ``size`` sites: ``width`` offsets
    -origin .. width - 1 - origin from the site of its degree of freedom (exactly zero outside them), or,
    once they would cover the axis more than once, the whole periodic axis (``torus``: index = offset mod
    size, origin 0). A tangent is a field on the torus; a window holds it unfolded, and where it outgrows
    the axis the contributions that land on one site are summed (``_tangent_conv`` writes them modulo the
    axis, or ``_fold``)."""

    def __init__(self, size: int, width: int, origin: int):
        self.size, self.width, self.origin, self.torus = size, width, origin, False
        self._wrap()

    def _wrap(self):
        if self.width > self.size:
            self.width, self.origin, self.torus = self.size, 0, True

    def key(self) -> tuple:
        return (self.size, self.width, self.origin)

    def positions(self, device) -> torch.Tensor:
        """(size, width): the lattice coordinate of slot i of the tangent of the dof at coordinate s."""
        s = torch.arange(self.size, device=device)[:, None]
        return (s + torch.arange(self.width, device=device)[None, :] - self.origin) % self.size

    def grow(self, p: int) -> None:
        """The window after a convolution of kernel radius p: p more offsets on each side, or the torus
        once that covers the axis more than once."""
        if not self.torus:
            self.width += 2 * p
            self.origin += p
            self._wrap()


def _tangent_conv(t: torch.Tensor, windows, weight: torch.Tensor, slope: torch.Tensor | None = None,
                  alloc=None) -> torch.Tensor:
    """The cross-correlation of nn.Conv2d (no bias), applied to tangents t (w0, w1, C_in, B) that are zero
    outside their windows, optionally first multiplied by ``slope`` (a (w0, w1, C_in, N, L0, L1) view,
    ``ScoreNet._window_view``); returns (w0', w1', C_out, B) on the grown windows (``windows`` updated).

    Scatter form: input slot i, tap ky feeds output offset (i - origin) + ky - p with weight[..., k-1-ky]
    (k = 2p + 1): slot offset + origin' of the grown window, or offset mod L on a torus axis (a window
    that outgrows its axis is folded). Only the nonzero slots cost anything (a padded convolution of
    the window would multiply its zeros too), and every product is a float64 GEMM at BLAS speed (torch's
    float64 conv2d, an im2col per image, ran at a third of it on these shapes). Wide outputs: per input
    slot and tap one GEMM of its (C_in, B) block accumulated (addmm_) into the (C_out, B) block of its
    output slot, in a fixed order (deterministic), the blocks staying in cache; narrow ones (the head):
    one batched GEMM for all slots and taps, then k^2 shifted additions. ``alloc(shape)``: where a wide
    output is written (default: a new tensor; ScoreNet reuses buffers, sparing fresh pages)."""
    c_out, c_in, k, _ = weight.shape
    p = k // 2
    w0, w1, _, b = t.shape
    before = [(w.width, w.origin, w.torus) for w in windows]
    for w in windows:
        w.grow(p)
    flipped = weight.flip(-1).flip(-2)
    if c_out * 4 < c_in:
        if slope is not None:  # slot by slot: a broadcast product with the whole strided view is 5x slower
            scaled = torch.empty_like(t)
            for i in range(w0):
                for j in range(w1):
                    sl = slope[i, j]
                    torch.mul(t[i, j].view(sl.shape), sl, out=scaled[i, j].view(sl.shape))
            t = scaled
        ws = flipped.permute(2, 3, 0, 1).reshape(k * k * c_out, c_in)
        y = torch.matmul(ws, t.view(w0 * w1, c_in, b)).view(w0, w1, k, k, c_out, b)
        out = t.new_zeros(w0 + 2 * p, w1 + 2 * p, c_out, b)
        for ky in range(k):
            for kx in range(k):
                out[ky:ky + w0, kx:kx + w1] += y[:, :, ky, kx]
        for a, (w, (width, origin, torus)) in enumerate(zip(windows, before)):
            if w.torus:  # a torus axis, or a window that outgrew its axis: fold onto it
                out = _fold(out, a, origin + p, w.size)
        return out
    maps = []
    for w, (width, origin, torus) in zip(windows, before):  # output slot of (input slot, tap) on each axis
        maps.append([[(i - origin + ky - p) % w.size if w.torus else i + ky for ky in range(k)]
                     for i in range(width)])
    shape = (windows[0].width, windows[1].width, c_out, b)
    out = alloc(shape) if alloc is not None else t.new_empty(shape)
    out_blocks = [row.unbind(0) for row in out.unbind(0)]
    written = [[False] * windows[1].width for _ in range(windows[0].width)]
    taps = [[flipped[:, :, ky, kx].contiguous() for kx in range(k)] for ky in range(k)]
    slopes = [row.unbind(0) for row in slope.unbind(0)] if slope is not None else None
    scaled = t.new_empty(c_in, b) if slope is not None else None
    for i, t_row in enumerate(t.unbind(0)):
        for j, block in enumerate(t_row.unbind(0)):
            if slopes is not None:
                sl = slopes[i][j]
                block = torch.mul(block.view(sl.shape), sl, out=scaled.view(sl.shape)).view(c_in, b)
            for ky in range(k):
                a = maps[0][i][ky]
                for kx in range(k):
                    c = maps[1][j][kx]
                    if written[a][c]:
                        out_blocks[a][c].addmm_(taps[ky][kx], block)
                    else:  # the first product into this slot: beta = 0 ignores what the buffer held
                        out_blocks[a][c].addmm_(taps[ky][kx], block, beta=0)
                        written[a][c] = True
    for a, row in enumerate(written):
        for c, done in enumerate(row):
            if not done:
                out_blocks[a][c].zero_()
    return out


class ScoreNet(nn.Module):
    """s_theta(x, std) for fields of one theory on an L0 x L1 lattice (batch first, PHYSICS.md layouts).

    ``legacy_padding`` (class default False) = True runs the convolutions with nn.Conv2d's own circular
    padding, the code before issue 14 (bitwise the same results, slower backward), kept for benchmarks."""

    legacy_padding = False

    def __init__(self, theory_name: str, hidden: tuple[int, ...] = (32, 32, 32, 32), kernel_size: int = 3,
                 time_dim: int = 32):
        super().__init__()
        self.theory_name = theory_name
        n_in, self.n_out = FIELD_CHANNELS[theory_name]
        self.n_comp = FIELD_COMPONENTS[theory_name]
        self.embed = nn.Sequential(TimeEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.SiLU())
        pad = kernel_size // 2
        self.kernel_radius = pad
        widths = (n_in, *hidden)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, kernel_size, padding=pad, padding_mode="circular")
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.time_bias = nn.ModuleList(nn.Linear(time_dim, b) for b in hidden)
        self.head = nn.Conv2d(hidden[-1], self.n_out, kernel_size, padding=pad, padding_mode="circular")
        nn.init.zeros_(self.head.weight)  # starts at s = 0: the score of a flat density
        nn.init.zeros_(self.head.bias)
        self.act = nn.SiLU()
        self._index_cache: dict = {}
        self._workspace: dict = {}

    @property
    def receptive_radius(self) -> int:
        """R such that the output at site s depends on the field only within max-norm distance R of s (on
        the torus): one kernel radius per convolution, plus one for the U(1) plaquette among the input
        features. Nothing in the network is global in x (no pooling, no global feature): the time
        embedding and the per-channel biases depend on std(t) alone."""
        return self.kernel_radius * (len(self.convs) + 1) + (1 if self.theory_name == "u1" else 0)

    def _conv(self, conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
        if self.legacy_padding:
            return conv(h)
        return F.conv2d(circular_pad(h, *conv.padding), conv.weight, conv.bias)

    def features(self, x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        if self.theory_name == "phi4":
            return (x / torch.sqrt(1 + std ** 2).view(-1, 1, 1)).unsqueeze(1)
        if self.theory_name == "xy":
            return torch.stack([torch.cos(x), torch.sin(x)], dim=1)
        p = u1_plaquette(x).unsqueeze(1)
        return torch.cat([torch.cos(x), torch.sin(x), torch.cos(p), torch.sin(p)], dim=1)

    def _output_scale(self, std: torch.Tensor) -> torch.Tensor:
        return 1 / std if self.theory_name == "phi4" else torch.exp(-0.5 * std ** 2) / std

    def _time_biases(self, std: torch.Tensor) -> list[torch.Tensor]:
        """The per-channel bias of every hidden layer at each noise level, (N, C, 1, 1). When all rows share
        one std (every generation step) it is computed once and broadcast, so that a row's score does not
        depend on the batch it came in (a float64 GEMM of 8 rows does not round row 1 as one of 5 does)."""
        n = std.shape[0]
        if n > 1 and bool((std == std[0]).all()):
            return [b.expand(n, -1, -1, -1) for b in self._time_biases(std[:1])]
        emb = self.embed(torch.log(std))
        return [tb(emb)[:, :, None, None] for tb in self.time_bias]

    def forward(self, x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The score at x (N, *config_shape) and noise level std (N,), same shape as x."""
        h = self.features(x, std)
        for conv, bias in zip(self.convs, self._time_biases(std)):
            h = self.act(self._conv(conv, h) + bias)
        out = self._conv(self.head, h) * self._output_scale(std).view(-1, 1, 1, 1)
        return out if self.theory_name == "u1" else out[:, 0]

    # ------------------------------------------------------------------ exact local Jacobian
    def jacobian(self, x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """d forward(x, std) / dx at each configuration, (N, d, d) in the network's dtype, d = n_dof (rows:
        outputs, columns: inputs, both flattened in the config layout). Exact: forward-mode
        differentiation by hand (``local_jacobian``), every entry outside the receptive field an exact
        zero, every entry inside the chain rule's product: the matrix torch.func.jacrev gives, to
        rounding (tests/diffusion/test_passes.py)."""
        n = x.shape[0]
        d = x[0].numel()
        J = torch.zeros(n, d * d, dtype=x.dtype, device=x.device)
        for k, values, windows in self.local_jacobian(x, std):
            J[:, self._dense_index(k, windows, x.device)] = values.permute(3, 0, 1, 2, 4).reshape(n, -1)
        return J.view(n, d, d)

    def local_jacobian(self, x: torch.Tensor, std: torch.Tensor):
        """The nonzero part of ``jacobian``, per input component k (u1: the two link directions): yields
        (k, values, windows) with values (w0, w1, n_out, N, S), values[i, j, c, n, s] = d out[n, c, site
        s + offset (i, j)] / d x[n, k, site s] (S sites; the offsets of the two ``_Window`` objects).

        Forward-mode by hand, one tangent per degree of freedom, each held on the window of sites it can
        reach: the input features' tangents (one site; two for the plaquette of u1), then per layer the
        convolution of the tangent (``_tangent_conv``; the window grows by the kernel radius and is folded
        onto the torus once it covers an axis) times SiLU'(pre-activation) at the window's sites, and the
        head's convolution times the output scale. The time embedding and biases have no tangent."""
        n = x.shape[0]
        L0, L1 = x.shape[-2:]
        with torch.no_grad():
            h = self.features(x, std)
            slopes = []
            for conv, bias in zip(self.convs, self._time_biases(std)):
                pre = self._conv(conv, h) + bias
                slopes.append(silu_grad(pre).transpose(0, 1).contiguous())  # (C, N, L0, L1)
                h = self.act(pre)
            scale = self._output_scale(std).view(1, 1, 1, n, 1)
            for k, t, windows in self._feature_tangents(x, std):
                slope = None
                for layer, (conv, next_slope) in enumerate(zip(self.convs, slopes)):
                    t = _tangent_conv(t, windows, conv.weight, slope, lambda shape: self._buffer(layer, shape, x))
                    slope = self._window_view(next_slope, windows)
                t = _tangent_conv(t, windows, self.head.weight, slope)
                yield k, t.view(*t.shape[:3], n, L0 * L1) * scale, windows

    def _buffer(self, layer: int, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        """A reused (uninitialized) tensor for the tangents of hidden layer ``layer``: intermediate results of
        ``local_jacobian`` only, consumed before it returns (a fresh tensor of this size costs a page fault per
        4 kB at its first write, about a tenth of the Jacobian's time here)."""
        key = (layer, like.dtype, like.device)
        buf = self._workspace.get(key)
        if buf is None or tuple(buf.shape) != tuple(shape):
            buf = self._workspace[key] = like.new_empty(shape)
        return buf

    def _feature_tangents(self, x: torch.Tensor, std: torch.Tensor):
        """Per input component k: (k, tangents of the input features (w0, w1, C_in, N S), windows)."""
        n = x.shape[0]
        L0, L1 = x.shape[-2:]
        S = L0 * L1
        if self.theory_name == "phi4":
            t = (1 / torch.sqrt(1 + std ** 2)).view(1, 1, 1, n, 1).expand(1, 1, 1, n, S)
            yield 0, t.reshape(1, 1, 1, n * S), [_Window(L0, 1, 0), _Window(L1, 1, 0)]
            return
        if self.theory_name == "xy":
            t = torch.stack([-torch.sin(x), torch.cos(x)])  # d(cos, sin)/dtheta at each site
            yield 0, t.reshape(1, 1, 2, n * S), [_Window(L0, 1, 0), _Window(L1, 1, 0)]
            return
        # u1: channels (cos x0, cos x1, sin x0, sin x1, cos P, sin P) with the plaquette
        # P(s') = x0(s') + x1(s' + e0) - x0(s' + e1) - x1(s') at s' = s + u:
        # dP(s + u)/dx0(s) = +1 at u = (0, 0), -1 at u = (0, -1); dP(s + u)/dx1(s) = +1 at u = (-1, 0), -1 at (0, 0)
        p = u1_plaquette(x)
        sin_p, cos_p = torch.sin(p), torch.cos(p)
        for k, u, (w0, o0, w1, o1) in [(0, (0, -1), (1, 0, 2, 1)), (1, (-1, 0), (2, 1, 1, 0))]:
            t = x.new_zeros(w0, w1, 6, n, L0, L1)
            here = (o0, o1)  # the slot of offset (0, 0); the other one is offset u
            there = (o0 + u[0], o1 + u[1])
            sign_here, sign_there = (1.0, -1.0) if k == 0 else (-1.0, 1.0)
            p_there = torch.roll(p, shifts=(-u[0], -u[1]), dims=(1, 2))  # P at s + u
            t[here][k] = -torch.sin(x[:, k])
            t[here][2 + k] = torch.cos(x[:, k])
            t[here][4] = -sign_here * sin_p
            t[here][5] = sign_here * cos_p
            t[there][4] = -sign_there * torch.sin(p_there)
            t[there][5] = sign_there * torch.cos(p_there)
            windows = [_Window(L0, w0, o0), _Window(L1, w1, o1)]
            t = t.view(w0, w1, 6, n * S)
            for a, w in enumerate(windows):
                if w.torus:  # a 2-wide window on an axis of 1 site
                    t = _fold(t, a, [o0, o1][a], w.size)
            yield k, t, windows

    @staticmethod
    def _window_view(field: torch.Tensor, windows) -> torch.Tensor:
        """field (C, N, L0, L1) at the sites of every tangent's window, as a strided view (w0, w1, C, N, L0,
        L1) of the field extended periodically (slot i of the window of coordinate s is site s + i - origin):
        no gather; the block of one slot is (C N, L0, L1) with rows of L1 contiguous values."""
        c, n, L0, L1 = field.shape
        (w0, w1), (o0, o1) = (windows[0].width, windows[1].width), (windows[0].origin, windows[1].origin)
        i0 = (torch.arange(L0 + w0 - 1, device=field.device) - o0) % L0
        i1 = (torch.arange(L1 + w1 - 1, device=field.device) - o1) % L1
        ext = field.index_select(3, i1).index_select(2, i0)  # ext[..., q0, q1] = field at (q0 - o0, q1 - o1)
        st = ext.stride()
        return ext.as_strided((w0, w1, c, n, L0, L1), (st[2], st[3], st[0], st[1], st[2], st[3]))

    def _dense_index(self, k: int, windows, device) -> torch.Tensor:
        """Flat indices row * d + col into the (d, d) Jacobian of the entries of component k that
        ``local_jacobian`` yields, in their layout (w0, w1, n_out, S) per configuration; distinct (a
        window holds each site at most once)."""
        key = (k, tuple(w.key() for w in windows), self.n_comp, self.n_out, str(device))
        if key not in self._index_cache:
            L0, L1 = windows[0].size, windows[1].size
            S = L0 * L1
            d = self.n_comp * S
            i0, i1 = (w.positions(device) for w in windows)  # (L, w): coordinate of slot i from coordinate s
            c = torch.arange(self.n_out, device=device).view(1, 1, -1, 1, 1)
            row = c * S + i0.T.reshape(-1, 1, 1, L0, 1) * L1 + i1.T.reshape(1, -1, 1, 1, L1)
            col = k * S + torch.arange(S, device=device).view(1, 1, 1, L0, L1)
            self._index_cache[key] = (row * d + col).reshape(-1)
        return self._index_cache[key]
