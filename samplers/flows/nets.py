"""Conditioner networks for coupling layers: small CNNs with periodic (circular) padding, so they
are translation equivariant on the torus (Albergo, Kanwar, Shanahan, PRD 100 (2019) 034515).

``conv_net`` builds the network (an nn.Sequential of Conv2d(padding_mode="circular") and LeakyReLU:
its state_dict is what checkpoints store). ``SiteConvNet`` runs such a network exactly, faster,
from the same parameters (issue 14):

- every convolution is ONE gather by a precomputed index (the circular padding and the im2col unfold
  at once) and ONE matrix product with the bias (float64 has no oneDNN kernels; torch's fallback
  convolution was 72 % of a float64 pass);
- only the output sites a coupling layer uses are computed: the last layer at the sites it updates,
  each hidden layer at the sites the next one reads (for the U(1) gauge flow with 3x3 kernels: 1/4,
  3/4 and all of the sites), and inputs that are zero by construction (the masked sites) are never
  read: their products are left out of the sums, which is exact (0 * w = 0);
- two layouts: rows (batch first; without autograd), in which a configuration's bits do not depend on
  the batch it is computed in (SiteConvNet's docstring), and batch last (with autograd, training).
The result is the function conv_net computes, to rounding (float64: agrees with F.conv2d to ~1e-15
relative), with autograd, in any dtype and on any device (index_select and addmm only);
tests/flows/test_fast_conv.py. ``circular_conv2d`` is the plain NCHW drop-in for one circular Conv2d.

Also here: ``reference_passes()`` switches the models back to the code of before issue 14 (F.conv2d with
circular padding, masked clones), for comparisons and the benchmark's "before" figures;
``keep_freed_memory()`` (glibc malloc settings that avoid page faults, applied on the first lean pass);
``compiled()`` (opt-in torch.compile with an eager fallback); ``CHUNK_SITES`` (the row chunks of large
no-grad passes).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading

import torch
from torch import nn

_STATE = threading.local()


def reference_mode() -> bool:
    """Whether the models run their pre-issue-14 reference code (see ``reference_passes``)."""
    return getattr(_STATE, "reference", False)


@contextlib.contextmanager
def reference_passes(on: bool = True):
    """Within the block, flows compute with their reference code (the code before issue 14): the same
    function to rounding, slower. For tests and benchmarks."""
    old = reference_mode()
    _STATE.reference = bool(on)
    try:
        yield
    finally:
        _STATE.reference = old


def conv_net(in_channels: int, out_channels: int, hidden: tuple[int, ...] = (16, 16), kernel_size: int = 3,
             final_zero: bool = True, final_kernel_size: int | None = None) -> nn.Sequential:
    """Conv2d stack with circular padding and LeakyReLU between layers (Tanh-free output). With
    final_zero the last layer starts at zero, so a fresh coupling layer is the identity.
    final_kernel_size (default: kernel_size) sets the kernel of the output layer only, e.g. 1 for a
    cheap per-site output head when the output has many channels."""
    sizes = [in_channels, *hidden, out_channels]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i == len(sizes) - 2 and final_kernel_size is not None:
            k = final_kernel_size
            layers.append(nn.Conv2d(a, b, k, padding=k // 2, padding_mode="circular") if k > 1
                          else nn.Conv2d(a, b, 1))
            continue
        layers.append(nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2, padding_mode="circular"))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU())
    if final_zero:
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------- fast exact path
def periodic_taps(shape: tuple[int, int], kernel_size: tuple[int, int] | int) -> torch.Tensor:
    """(k0 k1, V) long: the site (flat index x0 L1 + x1) that tap (a, b) (flat a k1 + b) of a
    cross-correlation with circular padding k // 2 reads for each output site: (x0 + a - k0 // 2) mod L0,
    (x1 + b - k1 // 2) mod L1 -- what Conv2d(padding=k // 2, padding_mode="circular") computes."""
    k0, k1 = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    l0, l1 = shape
    x0 = torch.arange(l0)[None, None, :, None]
    x1 = torch.arange(l1)[None, None, None, :]
    a = torch.arange(k0)[:, None, None, None] - k0 // 2
    b = torch.arange(k1)[None, :, None, None] - k1 // 2
    return (((x0 + a) % l0) * l1 + (x1 + b) % l1).reshape(k0 * k1, l0 * l1)


class CircularPadding(nn.Module):
    """Base of stateless periodic-padding modules placed before a Conv2d(padding=0) (realnvp's
    CircularPad2d): ``pad`` sites on each side. SiteConvNet reads the pair as one circular convolution."""

    pad: int = 0


def _conv_layers(net: nn.Sequential) -> list[tuple[nn.Conv2d, float | None]]:
    """(conv, negative slope of the LeakyReLU after it or None) for conv_net's layers (also with
    the circular padding as a separate CircularPadding module before a Conv2d(padding=0))."""
    out: list = []
    pad = None
    for m in net:
        if isinstance(m, CircularPadding):
            pad = (m.pad, m.pad)
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size
            if m.stride != (1, 1) or m.dilation != (1, 1) or m.groups != 1 or m.bias is None:
                raise ValueError("SiteConvNet needs stride 1, no dilation, no groups, with bias")
            if k[0] % 2 == 0 or k[1] % 2 == 0:
                raise ValueError("SiteConvNet needs odd kernels")
            padding = pad if pad is not None else m.padding
            circular = pad is not None or m.padding_mode == "circular" or k == (1, 1)
            if not circular or padding != (k[0] // 2, k[1] // 2) or (pad is not None and m.padding != (0, 0)):
                raise ValueError("SiteConvNet runs conv_net's circular 'same' convolutions only")
            out.append([m, None])
            pad = None
        elif isinstance(m, nn.LeakyReLU):
            if not out or out[-1][1] is not None or pad is not None:
                raise ValueError("expected conv_net's Conv2d / LeakyReLU sequence")
            out[-1][1] = float(m.negative_slope)
        else:
            raise ValueError(f"SiteConvNet cannot run a {type(m).__name__}")
    if pad is not None or not out:
        raise ValueError("expected conv_net's Conv2d / LeakyReLU sequence")
    return [tuple(p) for p in out]


ROW_BLOCK = 16  # site lists are padded to multiples of this (see _padded)


def _padded(sites: torch.Tensor) -> torch.Tensor:
    """``sites`` padded to a multiple of ROW_BLOCK entries by repeating its first one. Why: BLAS sums a
    matrix product in an order that may depend on the alignment of its operands in memory; with every
    configuration's matrices a multiple of 16 rows (of 64 bytes in float32 / 128 in float64 per row-block),
    all of them start equally aligned, and the batched product gives each configuration the same bits
    whatever its position in the batch (tests/flows/test_fast_conv.py checks it)."""
    extra = -len(sites) % ROW_BLOCK
    return torch.cat((sites, sites[:1].expand(extra))) if extra and len(sites) else sites


class SiteConvNet(nn.Module):
    """Runs the conv_net ``net`` (passed at call time: its parameters stay where they are, in the
    coupling layer's state_dict) on a lattice of ``shape``, computing the output at ``out_sites`` only.

    Input: a table of R = ``table_rows`` rows of Q components per configuration; input channel
    c = g Q + q is component q of the row ``in_rows[g, s]`` at lattice site s, or zero by construction
    where that is -1 (``in_rows``: (G, V) long, G = C_in / Q row groups). Buffers only (no parameters,
    no persistent state): it follows the module's device and never enters a state_dict.

    Two layouts of the same computation:
      - rows (``batch_last=False``, the passes without autograd): batch first, channels last, table
        (N, R, Q), output (N, len(out_sites), C_out). Each layer is one index_select of whole rows (the
        circular padding and the unfold at once) and one matrix product (N S, k^2 C) @ (k^2 C, C_out)
        in which every configuration's rows form a block of the same size and alignment (site lists are
        padded, see _padded), so row i of the output has the same bits whatever the other rows and the
        batch size (what the chain sets of samplers/proposal.py rely on);
      - batch last (``batch_last=True``, training): a field is (C, S, N), table (Q, R, N), output
        (C_out, len(out_sites), N); each layer is one index_select of rows of N numbers and one product
        W (C_out, C k^2) @ cols (C k^2, S N) -- about 1.7x faster with autograd, the same function to
        rounding, but a configuration's bits depend on the batch (BLAS sums in an order that depends on
        the column position).
    Hidden layer l is computed at the sites S_l that layer l + 1 reads (S_last = out_sites, S_l = the
    k x k neighbourhoods of S_{l+1}). The first layer is split into groups of output sites that read the
    same set of (row group, tap) pairs with non-zero input, one product per group with the weight's columns
    for that set; products of inputs that are zero by construction are left out, which is exact (masks of
    period 2 or 4 give 2 or 4 groups; an irregular mask with more than ``max_groups`` groups reads a
    zero row for the zero inputs instead).
    """

    def __init__(self, net: nn.Sequential, shape: tuple[int, int], out_sites: torch.Tensor, in_rows: torch.Tensor,
                 table_rows: int, max_groups: int = 8):
        super().__init__()
        layers = _conv_layers(net)
        self.slopes = [s for _, s in layers]
        self.shape = tuple(shape)
        V = shape[0] * shape[1]
        in_rows = torch.as_tensor(in_rows, dtype=torch.long)
        c_in = layers[0][0].in_channels
        if in_rows.dim() != 2 or in_rows.shape[1] != V or c_in % in_rows.shape[0]:
            raise ValueError(f"in_rows must have shape (G, {V}) with G dividing {c_in}, got {tuple(in_rows.shape)}")
        n_g = in_rows.shape[0]
        q = self.q = c_in // n_g
        taps = [periodic_taps(shape, conv.kernel_size) for conv, _ in layers]
        # sites needed at the output of each layer, from the last one back
        sites = [torch.as_tensor(out_sites, dtype=torch.long)]
        for t in reversed(taps[1:]):
            need = torch.zeros(V, dtype=torch.bool)
            need[t[:, sites[0]].reshape(-1)] = True
            sites.insert(0, need.nonzero().squeeze(1))
        # first layer: the (row group, tap) pairs each output site reads, grouped by the set that is not zero
        t0 = taps[0]
        n_taps = t0.shape[0]
        rows = in_rows[:, t0[:, sites[0]]].reshape(n_g * n_taps, -1)  # (pair = g T + tap, S_0): table row
        groups: dict = {}
        for j in range(rows.shape[1]):
            groups.setdefault(tuple((rows[:, j] >= 0).nonzero().squeeze(1).tolist()), []).append(j)
        self.zero_row = len(groups) > max_groups  # irregular masks: one group reading a zero row instead
        if self.zero_row:
            groups = {tuple(range(rows.shape[0])): list(range(rows.shape[1]))}
            rows = torch.where(rows >= 0, rows, int(table_rows))  # the zero row appended to the table
        order = []
        self.n_groups = len(groups)
        self.group_k = []
        for g, (pairs, members) in enumerate(groups.items()):
            pairs_t = torch.tensor(pairs, dtype=torch.long)
            members_t = _padded(torch.tensor(members, dtype=torch.long))
            gq, tap = pairs_t // n_taps, pairs_t % n_taps
            col = (gq[:, None] * q + torch.arange(q)[None, :]) * n_taps + tap[:, None]  # weight column (pair, q)
            self.register_buffer(f"k{g}", col.reshape(-1), persistent=False)  # rows layout: K = (pair, q)
            self.register_buffer(f"kb{g}", col.t().reshape(-1), persistent=False)  # batch last: K = (q, pair)
            gathered = rows[pairs_t][:, members_t]  # (pairs, sites)
            self.register_buffer(f"g{g}", gathered.t().reshape(-1), persistent=False)  # site-major
            self.register_buffer(f"gb{g}", gathered.reshape(-1), persistent=False)  # pair-major
            self.group_k.append(len(pairs) * q)
            order.append(members_t)
        # the first layer's output comes out group by group: its site order is sites[0][perm] (with the
        # padding rows of each group, see _padded)
        perm = torch.cat(order)
        stored = [sites[0][perm]] + [_padded(s) for s in sites[1:]]
        self.n_out = len(sites[-1])
        self.unpermute = False
        if len(layers) == 1:  # back to out_sites' order
            first = torch.full((V,), -1, dtype=torch.long)
            for j in reversed(range(len(perm))):
                first[stored[0][j]] = j
            self.register_buffer("unperm", first[sites[0]], persistent=False)
            self.unpermute = True
        self.counts = [len(s) for s in stored]
        self.group_sizes = [len(m) for m in order]
        # gather index of layer l >= 1: positions in the stored site list of layer l - 1
        for l in range(1, len(layers)):
            pos = torch.full((V,), -1, dtype=torch.long)
            for j in reversed(range(len(stored[l - 1]))):  # the first of repeated (padding) entries
                pos[stored[l - 1][j]] = j
            idx = pos[taps[l][:, stored[l]]]  # (taps, S_l)
            assert bool((idx >= 0).all())
            self.register_buffer(f"i{l}", idx.t().reshape(-1), persistent=False)  # site-major, then tap
            self.register_buffer(f"ib{l}", idx.reshape(-1), persistent=False)  # tap-major, then site
        self.n_layers = len(layers)

    def weights(self, net: nn.Sequential, batch_last: bool) -> list:
        """The parameters of ``net`` as the products use them: per layer (weight, bias), the first layer's
        weight once per site group (its columns for that group); rows layout: W^T with rows (tap, channel)
        and the bias as it is; batch last: W (C_out, channel x tap) and the bias as a column. Without
        autograd they are kept until a parameter changes (in place: its version; or is replaced)."""
        convs = [m for m in net if isinstance(m, nn.Conv2d)]
        params = [p for m in convs for p in (m.weight, m.bias)]
        key = None
        if not (torch.is_grad_enabled() and any(p.requires_grad for p in params)) and not torch.compiler.is_compiling():
            key = [batch_last] + [(p.data_ptr(), p._version) for p in params]
            cached = self.__dict__.get("_cache")
            if cached is not None and cached[0] == key:
                return cached[1]
        out = []
        for l, m in enumerate(convs):
            co = m.out_channels
            w = m.weight.reshape(co, -1)
            if batch_last:
                if l == 0:
                    w = [w.index_select(1, self._buffers[f"kb{g}"]) for g in range(self.n_groups)]
                out.append((w, m.bias.unsqueeze(1)))
                continue
            if l == 0:
                wt = [w.index_select(1, self._buffers[f"k{g}"]).t().contiguous() for g in range(self.n_groups)]
            else:
                wt = m.weight.reshape(co, m.in_channels, -1).permute(2, 1, 0).reshape(-1, co).contiguous()
            out.append((wt, m.bias))
        if key is not None:
            self._cache = (key, out)
        return out

    @staticmethod
    def _product(cols: torch.Tensor, wt: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """b + cols @ wt for every configuration: (N, S, K) x (K, C_out) -> (N, S, C_out), as one matrix
        product (N S, K) x (K, C_out). S is padded (see _padded), so every configuration's rows form
        equally aligned blocks, and each configuration gets the same bits whatever the batch."""
        if wt.shape[1] == 1:  # a single output channel would be a matrix-vector product: keep two
            return SiteConvNet._product(cols, torch.cat((wt, wt), 1), torch.cat((b, b)))[..., :1]
        return torch.addmm(b, cols.reshape(-1, cols.shape[-1]), wt).view(*cols.shape[:-1], wt.shape[1])

    def forward(self, net: nn.Sequential, table: torch.Tensor, batch_last: bool = False) -> torch.Tensor:
        if batch_last:
            return self._forward_batch_last(net, table)
        layers = self.weights(net, False)
        buf = self._buffers
        n = table.shape[0]
        if self.zero_row:
            table = torch.nn.functional.pad(table, (0, 0, 0, 1))
        w0, b0 = layers[0]
        outs = [self._product(table.index_select(1, buf[f"g{g}"]).view(n, self.group_sizes[g], self.group_k[g]),
                              w0[g], b0) for g in range(self.n_groups)]
        h = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        for l in range(1, self.n_layers):
            h = self._act(h, self.slopes[l - 1])
            wt, b = layers[l]
            h = self._product(h.index_select(1, buf[f"i{l}"]).view(n, self.counts[l], wt.shape[0]), wt, b)
        if self.unpermute:
            h = h.index_select(1, buf["unperm"])
        elif h.shape[1] != self.n_out:
            h = h[:, :self.n_out]
        return self._act(h, self.slopes[-1])

    def _forward_batch_last(self, net: nn.Sequential, table: torch.Tensor) -> torch.Tensor:
        layers = self.weights(net, True)
        buf = self._buffers
        n = table.shape[-1]
        if self.zero_row:
            table = torch.nn.functional.pad(table, (0, 0, 0, 1))
        w0, b0 = layers[0]
        outs = [torch.addmm(b0, w0[g], table.index_select(1, buf[f"gb{g}"]).view(self.group_k[g], -1))
                for g in range(self.n_groups)]
        h = (outs[0] if len(outs) == 1 else torch.cat(outs, 1)).view(b0.shape[0], self.counts[0], n)
        for l in range(1, self.n_layers):
            h = self._act(h, self.slopes[l - 1])
            w, b = layers[l]
            cols = h.index_select(1, buf[f"ib{l}"]).view(w.shape[1], -1)
            h = torch.addmm(b, w, cols).view(b.shape[0], self.counts[l], n)
        if self.unpermute:
            h = h.index_select(1, buf["unperm"])
        elif h.shape[1] != self.n_out:
            h = h[:, :self.n_out]
        return self._act(h, self.slopes[-1])

    @staticmethod
    def _act(h: torch.Tensor, slope: float | None) -> torch.Tensor:
        if slope is None:
            return h
        return torch.nn.functional.leaky_relu(h, slope, inplace=not (torch.is_grad_enabled() and h.requires_grad))


def circular_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(x, weight, bias) with circular padding k // 2 on each side (what a
    Conv2d(padding=k // 2, padding_mode="circular") computes), by one index gather (padding and unfold)
    and one matrix product per image (so each image's result is bitwise independent of the batch); NCHW in
    and out, any dtype, device, autograd. Odd kernels only."""
    n, c, l0, l1 = x.shape
    co, ci, k0, k1 = weight.shape
    if ci != c or k0 % 2 == 0 or k1 % 2 == 0:
        raise ValueError("circular_conv2d needs matching channels and an odd kernel")
    V, T = l0 * l1, k0 * k1
    idx = periodic_taps((l0, l1), (k0, k1)).to(x.device).t().reshape(-1)  # site-major, then tap
    cols = x.reshape(n, c, V).transpose(1, 2).index_select(1, idx).reshape(n, V, T * c)  # (N, V, (tap, c))
    wt = weight.reshape(co, ci, T).permute(2, 1, 0).reshape(T * c, co)
    out = torch.bmm(cols, wt.expand(n, *wt.shape)) if bias is None else torch.baddbmm(bias, cols, wt.expand(n, *wt.shape))
    return out.transpose(1, 2).reshape(n, co, l0, l1)


_MALLOC = {"done": False, "kept": False}


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system (mallopt:
    M_MMAP_THRESHOLD 32 MiB, M_TRIM_THRESHOLD 1 GiB, M_TOP_PAD 64 MiB). Why: the passes allocate and free
    buffers of a few MB per layer (and training keeps them for the backward pass); by default glibc gives
    such blocks back and takes them again, and every first touch of a page is a page fault -- here ~1.5 us
    per 4 kB page, which made a gather of 3.5 MB cost 1.5 ms instead of 0.25 ms. The process then keeps
    up to its peak heap (what it used anyway). Once per process; set LATTICEML_KEEP_FREED_MEMORY=0 to
    leave malloc alone. Returns whether the settings were applied (glibc only)."""
    if _MALLOC["done"]:
        return _MALLOC["kept"]
    _MALLOC["done"] = True
    if os.environ.get("LATTICEML_KEEP_FREED_MEMORY", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = all(libc.mallopt(option, value) == 1 for option, value in ((-3, 32 << 20), (-1, 1 << 30), (-2, 64 << 20)))
    except (OSError, AttributeError):
        ok = False
    _MALLOC["kept"] = ok
    return ok


def compiled(fn, **options):
    """torch.compile(fn) (default dynamic=False) that falls back to fn itself if compiling fails at the
    first call (no compiler, an unsupported op). Opt-in only: measured in benchmarks/bench_flow_passes.py,
    it pays for the log q of ONE configuration (about 2.5x over the lean eager pass, after ~45 s of
    compiling on this 2-core machine, again for each new batch size) and not for batched passes; a
    compiled pass is not guaranteed to give the eager pass's bits."""
    options.setdefault("dynamic", False)
    try:
        fast = torch.compile(fn, **options)
    except Exception:  # noqa: BLE001 - any failure: run eagerly
        return fn
    state = {"ok": None}

    def run(*args, **kwargs):
        if state["ok"] is False:
            return fn(*args, **kwargs)
        try:
            out = fast(*args, **kwargs)
            state["ok"] = True
            return out
        except Exception:  # noqa: BLE001
            if state["ok"]:
                raise
            state["ok"] = False
            return fn(*args, **kwargs)
    return run


CHUNK_SITES = 1 << 14  # sites x rows per chunk of a no-grad pass on the CPU (benchmarks/bench_flow_passes.py)


def chunk_rows(n_sites: int, device=None) -> int:
    """Batch rows per chunk of a no-grad pass: about CHUNK_SITES sites x rows on the CPU, so that the
    gathered (im2col) buffers stay in the caches; no chunks on other devices."""
    if device is not None and torch.device(device).type != "cpu":
        return 1 << 62
    return max(1, CHUNK_SITES // max(1, n_sites))
