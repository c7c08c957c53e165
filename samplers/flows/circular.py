"""Flows on the torus [-pi, pi)^V for angle fields (XY model): coupling layers with circular
rational-quadratic splines (Rezende et al., "Normalizing flows on tori and spheres", ICML 2020;
Durkan et al., "Neural spline flows", NeurIPS 2019).

Circular rational-quadratic spline
----------------------------------
K bins on [-pi, pi) with widths w_k > 0 and heights h_k > 0 (each summing to 2 pi) and K positive
knot derivatives d_0 .. d_{K-1}; the derivative at the right end equals the one at the left end,
d_K := d_0, so the map and its derivative are continuous across the identified points -pi ~ pi and
the spline is a diffeomorphism of the circle that fixes -pi. Knots x_0 = -pi, x_{k+1} = x_k + w_k,
y_0 = -pi, y_{k+1} = y_k + h_k. For x in bin k, with s_k = h_k / w_k and xi = (x - x_k) / w_k in [0, 1]:

    f(x)  = y_k + h_k [s_k xi^2 + d_k xi (1 - xi)] / D,     D = s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)
    f'(x) = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2] / D^2  > 0

Inverse (Durkan et al. eq. 6-8): for y in bin k (found from the y-knots), with dy = y - y_k and
delta = d_{k+1} + d_k - 2 s_k, xi solves a xi^2 + b xi + c = 0 with

    a = h_k (s_k - d_k) + dy delta,  b = h_k d_k - dy delta,  c = -s_k dy,
    xi = 2 c / (-b - sqrt(b^2 - 4 a c)) = (sqrt(b^2 - 4 a c) - b) / (2 a)   (the root in [0, 1];
    the first form is used for b >= 0, the second for b < 0, so neither cancels)

and log |dx/dy| = -log f'(x). Parameters come from unconstrained network outputs by
    w = 2 pi [m_w + (1 - K m_w) softmax(a)],  h likewise,  d = m_d + softplus(c + log(e^(1-m_d) - 1)),
so all-zero outputs give w = h = 2 pi / K, d = 1: the identity (``spline_params``).

Each coupling layer may follow the spline by a conditioned rotation x -> wrap(f(x) + phi), which
lets the layer move the fixed point -pi; phi is a further network output (0 at initialization).

Coupling layers
---------------
Checkerboard masks alternate between layers (layer l updates the sites with (i + j) % 2 == l % 2).
The conditioner is ``nets.conv_net`` (circular padding) on the frozen angles given as two channels
(cos theta, sin theta), zero on the active sites (or, in the equivariant variant below, on
relative angles of the frozen neighbours as cos/sin), so it is 2 pi-periodic in every input angle. Its
3K + 1 output channels at an active site are the spline parameters and the rotation phi there;
``head_kernel=1`` makes the output layer a 1x1 convolution (the hidden layers keep kernel_size),
which roughly halves the cost of a layer, since the wide 3K + 1 channel output dominates it.

Symmetries
----------
- without ``frame``: translations by multiples of 2 lattice sites along each axis (the mask
  period; exact for even L);
- with ``equivariant=True`` (opt-in; even lattice sizes) also global rotations
  theta -> theta + alpha. An active site x is transformed relative to its frozen neighbour
  r_x = theta_{x+e0}: x' = r_x + wrap(f(wrap(x - r_x)) + phi), and the conditioner sees only
  rotation-invariant inputs: at each active site the six channels cos, sin of
  theta_{x+n} - r_x for the other three neighbours n = -e0, +e1, -e1 (zero on frozen sites). So
  T(x + alpha) = T(x) + alpha and log q(x + alpha) = log q(x), like the XY action; the layer is
  smooth everywhere (no reference direction that can become undefined) and local, so the
  translation symmetry survives.
- with ``frame=True`` also global rotations, by a global reference frame instead of local
  references: one site, the origin o = (0, 0), is never transformed, and every layer acts on the
  angles relative to it, x' = theta_o + wrap(f(wrap(x - theta_o)) + phi), with a conditioner that
  sees cos, sin of theta_y - theta_o at the frozen sites y plus a one-hot channel marking o (so
  it knows where the reference is). Writing theta = theta_o + phi, the uniform prior factorizes
  into a uniform theta_o and a uniform phi on the other V - 1 sites (a shear of the torus, volume
  preserving), and the flow is an ordinary non-equivariant coupling flow on phi; so
  T(x + alpha) = T(x) + alpha and log q(x + alpha) = log q(x) exactly, and the global angle is
  exactly uniform under the model, as under the XY action. The price is the translation symmetry
  (o is a special site); the target's distribution of phi is not translation invariant either.
  Why it matters: without a built-in rotation symmetry, reverse-KL training collapses the global
  angle (8x8, beta = 1: the model's magnetization angle covered about a third of the circle), and
  the missing angles give rare huge weights, i.e. a small ESS even when var(log w) is small.
  (In other words the flow acts on the quotient of the torus by global rotations, in the frame
  of one site, like fixing a gauge; the conditioners stay periodic in every input angle.)
  ``frame`` is the default (``frame=None``: frame = not equivariant).
- with ``equivariant=False, frame=False`` the flow has no rotation symmetry.
  Reverse KL on 8x8 at beta = 1, 4 CPU-minutes each (benchmarks/RESULTS.md): final loss -154.6
  (plain), -150.5 (local ``equivariant=True``: it learns much more slowly), -155.4 (``frame``); IMH
  acceptance 0.21, 0.03, 0.29.
- not built in: the reflection theta -> -theta, lattice rotations and reflections.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .base import Flow, Transform, UniformAnglePrior, as_dtype
from .nets import conv_net

THEORIES = ("xy",)

TWO_PI = 2 * math.pi
MIN_BIN = 1e-3    # minimal bin width/height as a fraction of 2 pi
MIN_DERIV = 1e-3  # minimal knot derivative


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Angles mod 2 pi into [-pi, pi) (also when rounding would give +pi)."""
    k = torch.floor((x + math.pi) / TWO_PI)
    y = x - TWO_PI * k  # exact (y = x) for angles already in range
    y = torch.where(y >= math.pi, y - TWO_PI, y)
    return torch.where(y < -math.pi, y + TWO_PI, y)


def spline_params(raw: torch.Tensor, n_bins: int, min_bin: float = MIN_BIN, min_deriv: float = MIN_DERIV):
    """Unconstrained raw (..., 3 K) -> (widths, heights, derivs), each (..., K): widths and heights
    positive and summing to 2 pi (softmax), derivs positive (softplus). raw = 0 gives the identity."""
    if raw.shape[-1] != 3 * n_bins:
        raise ValueError(f"expected {3 * n_bins} raw spline parameters in the last axis, got {raw.shape[-1]}")
    a, b, c = raw.split(n_bins, dim=-1)
    scale = 1 - n_bins * min_bin
    if scale <= 0:
        raise ValueError(f"min_bin {min_bin} too large for {n_bins} bins")
    widths = TWO_PI * (min_bin + scale * torch.softmax(a, dim=-1))
    heights = TWO_PI * (min_bin + scale * torch.softmax(b, dim=-1))
    shift = math.log(math.expm1(1 - min_deriv))  # softplus(shift) = 1 - min_deriv
    derivs = min_deriv + F.softplus(c + shift)
    return widths, heights, derivs


def _knots(sizes: torch.Tensor) -> torch.Tensor:
    """(..., K) bin sizes -> (..., K + 1) knots from -pi to pi (end points exact)."""
    k = F.pad(torch.cumsum(sizes, dim=-1), (1, 0)) - math.pi
    k = k.clone()
    k[..., 0] = -math.pi
    k[..., -1] = math.pi
    return k


def _bin_data(v: torch.Tensor, knots: torch.Tensor, widths, heights, derivs):
    """Gather, for each v (...), its bin k (searched in ``knots``, the x- or the y-knots) and that
    bin's x_k, y_k, w_k, h_k, d_k, d_{k+1}."""
    idx = (v.unsqueeze(-1) >= knots[..., 1:-1]).sum(-1, keepdim=True)  # (..., 1) in 0..K-1
    n_bins = widths.shape[-1]
    xk = torch.gather(_knots(widths), -1, idx).squeeze(-1)
    yk = torch.gather(_knots(heights), -1, idx).squeeze(-1)
    w = torch.gather(widths, -1, idx).squeeze(-1)
    h = torch.gather(heights, -1, idx).squeeze(-1)
    d0 = torch.gather(derivs, -1, idx).squeeze(-1)
    d1 = torch.gather(derivs, -1, torch.remainder(idx + 1, n_bins)).squeeze(-1)  # d_K = d_0
    return xk, yk, w, h, d0, d1


def _log_deriv(xi, s, d0, d1):
    one_m = 1 - xi
    t = xi * one_m
    denom = s + (d1 + d0 - 2 * s) * t
    num = d1 * xi * xi + 2 * s * t + d0 * one_m * one_m
    return 2 * torch.log(s) + torch.log(num) - 2 * torch.log(denom)


def circular_spline(theta: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor, derivs: torch.Tensor):
    """Forward circular rational-quadratic spline.

    theta: angles of any shape S, in [-pi, pi) (values outside are wrapped first).
    widths, heights: shape S + (K,), positive, each summing to 2 pi along the last axis.
    derivs: shape S + (K,), positive: the derivative at the knots x_0 = -pi, ..., x_{K-1}; the
        derivative at x_K = pi is derivs[..., 0] (periodic), so the map is a circle diffeomorphism.
    Returns (theta', logdet) both of shape S: theta' = f(theta) in [-pi, pi), logdet = log f'(theta)
    elementwise (same dtype as theta; sum in float64 yourself). Use ``spline_params`` to make the
    parameters from unconstrained network outputs.
    """
    x = wrap(theta)
    xk, yk, w, h, d0, d1 = _bin_data(x, _knots(widths), widths, heights, derivs)
    s = h / w
    xi = ((x - xk) / w).clamp(0, 1)
    t = xi * (1 - xi)
    denom = s + (d1 + d0 - 2 * s) * t
    y = yk + h * (s * xi * xi + d0 * t) / denom
    return wrap(y), _log_deriv(xi, s, d0, d1)


def circular_spline_inverse(theta: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor,
                            derivs: torch.Tensor):
    """Inverse of ``circular_spline`` with the same parameters (same shapes).

    Returns (f^-1(theta), logdet) with logdet = log |d f^-1 / d theta| = -log f'(f^-1(theta)),
    elementwise, shape S.
    """
    y = wrap(theta)
    xk, yk, w, h, d0, d1 = _bin_data(y, _knots(heights), widths, heights, derivs)  # bin of y
    s = h / w
    dy = y - yk
    delta = d1 + d0 - 2 * s
    a = h * (s - d0) + dy * delta
    b = h * d0 - dy * delta
    c = -s * dy
    sq = torch.sqrt((b * b - 4 * a * c).clamp_min(0))
    # the same root in the form without cancellation: 2c / (-b - sq) for b >= 0, (sq - b) / 2a for b < 0
    pos = b >= 0
    den = torch.where(pos, -b - sq, 2 * a)
    den = torch.where(den == 0, torch.ones_like(den), den)  # only for the branch not taken / c = 0
    xi = (torch.where(pos, 2 * c, sq - b) / den).clamp(0, 1)
    x = xk + xi * w
    return wrap(x), -_log_deriv(xi, s, d0, d1)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """F.softplus (threshold 20) from operations whose result for an element does not depend on its
    position in the tensor: torch's softplus kernel computes the last, non-vectorized elements of a
    tensor with other roundings, so a configuration's bits would depend on the batch it is in."""
    return torch.where(x > 20, x, x.clamp_min(0) + torch.log1p(torch.exp(-x.abs())))


def spline_lean(x: torch.Tensor, raw: torch.Tensor, n_bins: int, inverse: bool = False,
                min_bin: float = MIN_BIN, min_deriv: float = MIN_DERIV) -> tuple[torch.Tensor, torch.Tensor]:
    """``circular_spline`` (with ``inverse``: ``circular_spline_inverse``) with the parameters
    ``spline_params`` makes of ``raw``, for the lean passes: the same formulas (the same function to
    rounding) in about half the tensor operations (one softmax for widths and heights, one gather of all
    per-bin quantities, softplus only for the two knot derivatives used, fused multiply-adds).

    Layout: the parameter axis is the second last, raw (*B, 3 K, A), x (*B, A) (operations over the K
    bins then run vectorized along A). Angles are measured from -pi, i.e. x = theta + pi in [0, 2 pi] (the
    knots then start at 0 exactly). Returns (y, logd), shape (*B, A): y = f(theta) + pi in [0, 2 pi] up
    to rounding, not reduced mod 2 pi (the caller's update does that), and logd = log |dy/dx|."""
    k = n_bins
    if raw.shape[-2] != 3 * k:
        raise ValueError(f"expected {3 * k} raw spline parameters in the second last axis, got {raw.shape[-2]}")
    scale = 1 - k * min_bin
    if scale <= 0:
        raise ValueError(f"min_bin {min_bin} too large for {k} bins")
    logits, c = raw.split((2 * k, k), dim=-2)
    wh = torch.softmax(logits.unflatten(-2, (2, k)), dim=-2).mul(TWO_PI * scale).add_(TWO_PI * min_bin)  # (*B, 2, K, A)
    lower = F.pad(torch.cumsum(wh[..., :k - 1, :], dim=-2), (0, 0, 1, 0))  # bin starts x_k, y_k (+ pi)
    idx = (x.unsqueeze(-2) >= lower[..., 1 if inverse else 0, 1:, :]).sum(-2, keepdim=True)  # (*B, 1, A): bin
    # derivative logits at the knots: only those of the bin's two ends are mapped (d_K = d_0)
    table = torch.cat((lower, wh, c.unsqueeze(-3), torch.roll(c, -1, -2).unsqueeze(-3)), dim=-3)  # (*B, 6, K, A)
    sel = torch.gather(table, -2, idx.unsqueeze(-3).expand(*idx.shape[:-2], 6, 1, idx.shape[-1])).squeeze(-2)
    xk, yk, w, h, c0, c1 = sel.unbind(-2)  # (*B, A) each
    d0, d1 = _softplus(sel[..., 4:, :] + math.log(math.expm1(1 - min_deriv))).add_(min_deriv).unbind(-2)
    s = h / w
    delta = torch.add(d1 + d0, s, alpha=-2)
    if not inverse:
        xi = ((x - xk) / w).clamp(0, 1)
        xx = xi * xi
        t = xi - xx  # xi (1 - xi)
        denom = torch.addcmul(s, delta, t)
        y = torch.addcdiv(yk, h * torch.addcmul(d0 * t, s, xx), denom)
    else:
        dy = x - yk
        a = torch.addcmul(h * (s - d0), dy, delta)
        b = torch.addcmul(h * d0, dy, delta, value=-1)
        cq = s * dy  # minus the c of the quadratic a xi^2 + b xi - cq = 0
        sq = torch.sqrt(torch.addcmul(b * b, a, cq, value=4).clamp_min(0))
        # the root in [0, 1] without cancellation: -2 cq / (-b - sq) for b >= 0, (sq - b) / 2a for b < 0
        pos = b >= 0
        den = torch.where(pos, -(b + sq), 2 * a)
        den = torch.where(den == 0, 1.0, den)  # only for the branch not taken / cq = 0
        xi = (torch.where(pos, -2 * cq, sq - b) / den).clamp(0, 1)
        y = torch.addcmul(xk, xi, w)
        xx = xi * xi
        t = xi - xx
        denom = torch.addcmul(s, delta, t)
    om = 1 - xi
    num = torch.addcmul(torch.addcmul(d1 * xx, d0, om * om), s, t, value=2)  # f' = s^2 num / denom^2
    logd = torch.add(torch.log(num), torch.log(s / denom), alpha=2)
    return y, (-logd if inverse else logd)


class CircularSplineCoupling(Transform):
    """One checkerboard coupling layer: active angles (parity ``parity``) go through a circular RQ
    spline plus a rotation, both conditioned on the frozen angles (see the module docstring)."""

    def __init__(self, shape: tuple[int, int], parity: int, hidden=(16, 16), kernel_size: int = 3,
                 n_bins: int = 8, equivariant: bool = False, head_kernel: int | None = None, frame: bool = False):
        super().__init__()
        self.shape = tuple(shape)
        self.n_bins = n_bins
        self.equivariant = equivariant
        self.frame = frame
        if frame and equivariant:
            raise ValueError("frame=True and equivariant=True exclude each other (two kinds of rotation symmetry)")
        i, j = torch.meshgrid(torch.arange(shape[0]), torch.arange(shape[1]), indexing="ij")
        active = ((i + j) % 2 == parity)
        if frame:
            active[0, 0] = False  # the reference site is never transformed
            self.register_buffer("origin", (i == 0) & (j == 0), persistent=False)
        self.register_buffer("active", active, persistent=False)
        self.register_buffer("active_idx", active.flatten().nonzero().squeeze(1), persistent=False)
        if equivariant and (shape[0] % 2 or shape[1] % 2):
            raise ValueError(f"the rotation-equivariant circular flow needs even lattice sizes, got {shape}; "
                             "use equivariant=False")
        n_in = 3 if frame else 6 if equivariant else 2
        self.net = conv_net(n_in, 3 * n_bins + 1, hidden, kernel_size, final_kernel_size=head_kernel)

    def _condition(self, x: torch.Tensor):
        """Spline parameters at the active sites (N, A, K) x3, rotation (N, A), and the reference
        angles (N, A) the active angles are measured from (None without equivariance)."""
        if self.frame:
            ref = x[:, :1, :1]  # theta at the origin: the frame's reference angle
            rel = x - ref
            feats = torch.stack((torch.cos(rel) * ~self.active, torch.sin(rel) * ~self.active,
                                 self.origin.to(x.dtype).expand_as(x)), 1)
            ref = ref.flatten(1)
        elif self.equivariant:
            ref = torch.roll(x, -1, dims=1)  # theta_{x + e0}, frozen for every active x
            nbrs = (torch.roll(x, 1, dims=1), torch.roll(x, -1, dims=2), torch.roll(x, 1, dims=2))
            rel = [n - ref for n in nbrs]
            feats = torch.stack([torch.cos(r) for r in rel] + [torch.sin(r) for r in rel], 1) * self.active
            ref = ref.flatten(1)[:, self.active_idx]
        else:
            feats = torch.stack((torch.cos(x), torch.sin(x)), 1) * ~self.active
            ref = None
        out = self.net(feats).flatten(2)[:, :, self.active_idx].transpose(1, 2)  # (N, A, 3K+1)
        widths, heights, derivs = spline_params(out[..., :-1], self.n_bins)
        return widths, heights, derivs, out[..., -1], ref

    def forward(self, z):
        widths, heights, derivs, rot, ref = self._condition(z)
        flat = z.flatten(1)
        u = flat[:, self.active_idx]
        if ref is not None:
            u = u - ref
        v, ld = circular_spline(u, widths, heights, derivs)
        v = v + rot
        if ref is not None:
            v = v + ref
        out = flat.index_copy(1, self.active_idx, wrap(v))
        return out.view_as(z), ld.to(torch.float64).sum(1)

    def inverse(self, x):
        widths, heights, derivs, rot, ref = self._condition(x)
        flat = x.flatten(1)
        v = flat[:, self.active_idx] - rot
        if ref is not None:
            v = v - ref
        u, ld = circular_spline_inverse(v, widths, heights, derivs)
        if ref is not None:
            u = u + ref
        out = flat.index_copy(1, self.active_idx, wrap(u))
        return out.view_as(x), ld.to(torch.float64).sum(1)


def build(theory, n_layers: int = 8, hidden=(16, 16), kernel_size: int = 5, n_bins: int = 8,
          equivariant: bool = False, head_kernel: int | None = 1, frame: bool | None = None,
          dtype=torch.float32) -> Flow:
    """Circular-spline coupling flow for the XY model on theory.config_shape (2D), uniform prior.

    Defaults (the best of the 8x8, beta = 1 reverse-KL screening, benchmarks/RESULTS.md): 8 layers,
    conditioners with hidden (16, 16) channels and 5x5 kernels (receptive field 9x9) and a 1x1
    output head (``head_kernel``; None: kernel_size), 8 spline bins, and the global-rotation frame
    (``frame=None`` means frame = not equivariant); ``frame=False, kernel_size=3, head_kernel=None``
    is the original translation-equivariant plain flow (checkpoints written before these options
    existed store kernel_size but neither frame nor head_kernel: rebuild them with those values). Lattice sides must be at least kernel_size // 2
    (circular padding wraps at most once)."""
    if theory.name not in THEORIES:
        raise ValueError(f"circular-flow is for {', '.join(THEORIES)}, not {theory.name}")
    shape = tuple(theory.config_shape)
    if len(shape) != 2:
        raise ValueError(f"circular-flow needs a 2D lattice, got shape {shape}")
    hidden = tuple(int(h) for h in hidden)
    if frame is None:
        frame = not equivariant
    dtype = as_dtype(dtype)
    layers = [CircularSplineCoupling(shape, l % 2, hidden, kernel_size, n_bins, equivariant, head_kernel, frame)
              for l in range(n_layers)]
    hyper = {"n_layers": n_layers, "hidden": list(hidden), "kernel_size": kernel_size, "n_bins": n_bins,
             "equivariant": equivariant, "head_kernel": head_kernel,
             "frame": bool(frame), "dtype": str(dtype).removeprefix("torch.")}
    flow = Flow(UniformAnglePrior(shape), layers, theory, "circular-flow", hyper)
    return flow.to(dtype)
