"""RealNVP for phi^4: affine coupling layers with checkerboard masks and convolutional conditioners.

Dinh, Sohl-Dickstein, Bengio, ICLR 2017 (RealNVP); for lattice fields Albergo, Kanwar, Shanahan,
PRD 100 (2019) 034515 and the tutorial arXiv:2101.08176. One coupling layer with the mask m
(1 on the frozen sites, 0 on the active ones; checkerboard, alternating between layers) is

    x_f = m * z,   (s, t) = net(x_f),   s <- tanh(s)
    x   = x_f + (1 - m) * (z * exp(s) + t)
    log |det dx/dz| = sum over the active sites of s

and its inverse z = x_f + (1 - m) * (x - t) * exp(-s) (the frozen sites pass through, so
(s, t) is recomputed from them). The conditioner is samplers.flows.nets.conv_net(1, 2, hidden,
kernel_size): a CNN with circular padding, so every layer commutes with the lattice translations
that preserve the mask.

Choices (documented here since the papers differ):
- s is bounded with tanh (|s| < 1 per layer and site, so |log det| < V/2 per layer): reverse-KL
  training starts from an identity flow and an unbounded s can blow up exp(s) in the first steps
  (the tutorial puts tanh on both outputs). t is left linear, so a layer can shift the field by any
  amount (the broken phase at m^2 = -4, g = 8 has |phi| ~ 1).
- The final conv layer starts at zero (conv_net's final_zero), so a fresh flow is the identity
  and log q is the prior's.
- Speed: conv_net's Conv2d(padding_mode="circular") pads with torch.nn.functional.pad, whose
  forward and backward are several slice copies and fills (about half the time of a 16 -> 16
  conv on 8 x 8 at batch 256 in a micro-benchmark). Here each Conv2d of the conv_net is run with
  padding 0 on an input padded by one index_select with a precomputed periodic index
  (CircularPad2d): one gather forward, one index_add backward. The parameters, their names
  (state_dict) and the function computed are exactly conv_net's.
- Lean passes (issue 14, ``AffineCoupling.forward_flat``): the conditioner through nets.SiteConvNet
  (one gather and one matrix product per convolution, (s, t) only at the active sites, the masked inputs
  never read), the update one index_copy; the default for every pass except float32 training on the
  CPU, where oneDNN's float32 convolutions of the layers above are faster (``use_lean``). The same
  function to rounding (tests/flows/test_fast_conv.py).

Symmetries (what the architecture guarantees, tests/flows/test_realnvp.py checks them):
- Translations: the flow commutes with every translation that maps the checkerboard onto itself,
  i.e. shifts (a0, a1) with a0 + a1 even (by 2 along one axis, by (1, 1) diagonally), on lattices
  with even extents. On an odd extent the checkerboard is not periodic (the two sites across the
  boundary share a parity): the flow is still exact and invertible, only this equivariance is lost.
- phi -> -phi: NOT a symmetry. A layer is odd only if s is even and t odd in x_f, which the conv
  net (biases, LeakyReLU) does not impose, so q(-x) != q(x) in general although the phi^4 target
  is Z2 symmetric. (An exactly symmetric model is the mixture q_sym(x) = (q(x) + q(-x)) / 2:
  sample x ~ q and flip its sign with probability 1/2; log q_sym = logaddexp(log q(x), log q(-x)) - log 2.)
  A fresh (identity) flow is trivially odd.
- The flow is not equivariant under lattice reflections or 90-degree rotations (the 3 x 3 kernels
  are unconstrained).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Flow, NormalPrior, Transform, as_dtype
from .nets import CircularPadding, SiteConvNet, conv_net

THEORIES = ("phi4",)



def checkerboard(shape: tuple[int, int], parity: int) -> torch.Tensor:
    """Mask (float32) with 1 on the sites (i, j) with (i + j) % 2 == parity."""
    i = torch.arange(shape[0])[:, None]
    j = torch.arange(shape[1])[None, :]
    return ((i + j) % 2 == parity).to(torch.float32)


class CircularPad2d(CircularPadding):
    """Periodic padding of the last two axes by ``pad`` sites, as one index_select."""

    def __init__(self, shape: tuple[int, int], pad: int):
        super().__init__()
        self.pad = int(pad)
        l0, l1 = shape
        rows = torch.arange(-pad, l0 + pad) % l0
        cols = torch.arange(-pad, l1 + pad) % l1
        self.register_buffer("index", (rows[:, None] * l1 + cols[None, :]).flatten(), persistent=False)
        self.padded = (l0 + 2 * pad, l1 + 2 * pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(-2).index_select(-1, self.index).unflatten(-1, self.padded)


def _fast_circular(net: nn.Sequential, shape: tuple[int, int]) -> nn.Sequential:
    """conv_net's layers with each circular Conv2d split into CircularPad2d + Conv2d(padding=0):
    the same parameters and the same function (the pads hold no state)."""
    layers: list[nn.Module] = []
    for m in net:
        if isinstance(m, nn.Conv2d):
            p0, p1 = m.padding
            if m.padding_mode != "circular" or p0 != p1:
                raise ValueError("expected conv_net's circular, symmetric padding")
            m.padding_mode = "zeros"
            m.padding = (0, 0)
            layers.append(CircularPad2d(shape, p0))
        layers.append(m)
    return nn.Sequential(*layers)


class AffineCoupling(Transform):
    """x = m z + (1 - m)(z exp(tanh s) + t), (s, t) = net(m z); m = 1 on the frozen sites.

    Acts on batches (N, L0, L1); computes in the dtype of its parameters, returns float64 logdets.
    The lean pass (``forward_flat`` / ``inverse_flat``, field flattened to (N, V), issue 14) computes the
    same function: the conditioner through nets.SiteConvNet, which reads only the frozen sites and gives
    (s, t) only at the active ones, and the update as one index_copy of the active sites."""

    lean = True

    def use_lean(self, x: torch.Tensor) -> bool:
        """The lean pass, except for float32 with autograd on the CPU (training): there oneDNN's float32
        convolutions (the reference pass) are faster than the gather + matrix product (issue 14 measurement:
        a training step on 8 x 8 at batch 256, 60 against 80 ms on one thread)."""
        if not super().use_lean(x):
            return False
        return not (torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type == "cpu")

    def __init__(self, mask: torch.Tensor, net: nn.Module):
        super().__init__()
        self.register_buffer("mask", mask.clone())
        self.net = net
        shape = tuple(mask.shape)
        frozen = mask.flatten() > 0.5
        self.register_buffer("active_idx", (~frozen).nonzero().squeeze(1), persistent=False)
        in_rows = torch.where(frozen, torch.arange(frozen.numel()), torch.full_like(frozen, -1, dtype=torch.long))
        self.plan = SiteConvNet(net, shape, self.active_idx, in_rows[None], frozen.numel())

    def _st_flat(self, x: torch.Tensor, batch_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = 0 if batch_last else 1  # the axis of the sites
        out = self.plan.forward(self.net, x.unsqueeze(0 if batch_last else -1), batch_last)
        s, t = out.unbind(0 if batch_last else -1)  # at the active sites
        return torch.tanh(s), t, x.index_select(d, self._buffers["active_idx"])

    def forward_flat(self, z: torch.Tensor, batch_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        d = 0 if batch_last else 1
        s, t, za = self._st_flat(z, batch_last)
        return z.index_copy(d, self._buffers["active_idx"], torch.addcmul(t, za, torch.exp(s))), s.to(torch.float64).sum(d)

    def inverse_flat(self, x: torch.Tensor, batch_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        d = 0 if batch_last else 1
        s, t, xa = self._st_flat(x, batch_last)
        return x.index_copy(d, self._buffers["active_idx"], (xa - t) * torch.exp(-s)), -s.to(torch.float64).sum(d)

    # the reference pass (before issue 14)
    def _st(self, frozen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(frozen.unsqueeze(1))
        active = 1 - self.mask
        return torch.tanh(out[:, 0]) * active, out[:, 1] * active

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_lean(z):
            return self.run_lean(z, inverse=False)
        frozen = z * self.mask
        s, t = self._st(frozen)
        x = frozen + (1 - self.mask) * (z * torch.exp(s) + t)
        return x, s.to(torch.float64).sum(dim=(1, 2))

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_lean(x):
            return self.run_lean(x, inverse=True)
        frozen = x * self.mask
        s, t = self._st(frozen)
        z = frozen + (1 - self.mask) * (x - t) * torch.exp(-s)
        return z, -s.to(torch.float64).sum(dim=(1, 2))


def build(theory, n_layers: int = 8, hidden: tuple[int, ...] = (16, 16), kernel_size: int = 3,
          dtype: torch.dtype | str = torch.float32) -> Flow:
    """A RealNVP flow for a 2D phi^4 theory: N(0, 1) prior on theory.shape, then ``n_layers``
    affine couplings whose checkerboard masks alternate (layer k freezes the sites of parity k % 2).
    ``dtype`` may be a torch dtype or its name ("float32", "float64"), so build(theory, **flow.hyper)
    rebuilds the same architecture."""
    if getattr(theory, "name", None) not in THEORIES:
        raise ValueError(f"realnvp is for {', '.join(THEORIES)}, not {getattr(theory, 'name', theory)!r}")
    shape = tuple(theory.shape)
    if len(shape) != 2:
        raise ValueError(f"realnvp needs a 2D lattice (its conditioners are 2D CNNs), got shape {shape}")
    dtype = as_dtype(dtype)
    if int(n_layers) != n_layers or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers}")
    hidden = tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden channel counts must be positive, got {hidden}")
    if int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    n_layers, kernel_size = int(n_layers), int(kernel_size)
    transforms = [AffineCoupling(checkerboard(shape, k % 2),
                                 _fast_circular(conv_net(1, 2, hidden, kernel_size), shape))
                  for k in range(n_layers)]
    hyper = {"n_layers": n_layers, "hidden": list(hidden), "kernel_size": kernel_size,
             "dtype": str(dtype).removeprefix("torch.")}
    return Flow(NormalPrior(shape), transforms, theory, "realnvp", hyper).to(dtype)
