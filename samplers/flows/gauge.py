"""Gauge-equivariant flow for 2D U(1) lattice gauge theory (model "gauge-flow").

Kanwar, Albergo, Boyda, Cranmer, Hackett, Racaniere, Rezende, Shanahan, PRL 125 (2020) 121601;
the U(1) part of the tutorial Albergo et al., arXiv:2101.08176.

Links theta[mu, x0, x1] (PHYSICS.md), plaquette at x (lower-left corner)

    P(x) = theta_0(x) + theta_1(x + e0) - theta_0(x + e1) - theta_1(x).

Coupling layer (mu, off), nu = 1 - mu. Mask geometry (stripes of period 4 across nu, running
along mu; "row" below means a fixed value of x_nu):

    updated links   theta_mu(x)  with x_nu % 4 == off            (1/8 of all links)
    active   plaq.  P(x)         with x_nu % 4 == off            (1/4 of the plaquettes)
    passive  plaq.  P(x)         with x_nu % 4 == off - 1 (mod 4)
    frozen   plaq.  P(x)         with x_nu % 4 in {off + 1, off + 2}

(Note: the stripes are rows of constant x_nu, not x_mu: theta_mu(x) lies in the two plaquettes
P(x) and P(x - e_nu), which differ in x_nu. For mu = 0 it enters P(x) with sign +1, for mu = 1
with sign -1.) Each updated link lies in exactly one active plaquette, P(x), and one passive one,
P(x - e_nu); frozen plaquettes contain no updated link. The layer

  1. computes all plaquettes, wraps them to [-pi, pi);
  2. feeds cos/sin of the frozen plaquettes (zero elsewhere) to a periodic CNN (nets.conv_net)
     that gives, at every active plaquette, the parameters of an invertible circle map h; with
     ``passive_sum`` (the default) also cos/sin of the sum P(x) + P(x - e_nu) of each active
     plaquette and its passive partner, placed at the active plaquette (zero elsewhere);
  3. maps active plaquettes P -> P' = h(P) and moves the updated link so that its active
     plaquette becomes P': theta_mu(x) += sign_mu (P' - P), sign_0 = +1, sign_1 = -1; the
     passive plaquette P(x - e_nu) absorbs the opposite change.

Why the passive sum: the layer moves P(x) and P(x - e_nu) by opposite amounts, so their sum
Sigma(x) = P(x) + P(x - e_nu) is invariant under the layer. Conditioning h on Sigma keeps the layer
invertible (Sigma is the same before and after) and the Jacobian triangular (Sigma contains the
updated link with coefficients +1 and -1, i.e. not at all, and no other updated link: the two other
mu-links of the pair lie in rows off +- 1), while it tells the layer how to split Sigma between the two
plaquettes: the ideal conditional exp(beta cos P + beta cos(Sigma - P)) is a function of Sigma. Without
it a layer that concentrates its active plaquettes spreads their passive partners, which matters
more the larger beta (our addition to Kanwar et al.; ``passive_sum=False`` gives their layer).

Only gauge-invariant quantities (plaquettes mod 2 pi) enter h and the update, so the layer commutes
with gauge transformations theta_mu(x) -> theta_mu(x) + alpha(x) - alpha(x + e_mu) (mod 2 pi).
The Jacobian is triangular (conditioning plaquettes contain no updated link) with diagonal
d theta'/d theta = h'(P), so log |det| = sum over active plaquettes of log h'(P), exact. Layers
cycle mu fastest, then off: layer i has mu = i % 2, off = (i // 2) % 4, so 8 layers touch every
link once. The masks have period 4 along both axes (L0, L1 must be multiples of 4), and the
convolutions are translation equivariant, so the flow commutes with translations by 4 along either
axis. Outputs are wrapped to [-pi, pi).

Circle maps h (``plaq_map``):
  "ncp"    non-compact projection mixture (Rezende et al. 2020, as in the tutorial):
           h(u) = sum_k w_k 2 atan(exp(s_k) tan(u / 2)) + t (mod 2 pi), u in [-pi, pi);
           weights w = softmax, K = n_mix components; the inverse is found by bisection to
           machine precision followed by one Newton step (which also gives the exact gradient
           of the inverse with respect to the parameters).
  "spline" circular rational-quadratic spline with n_bins bins (Durkan et al. 2019,
           Rezende et al. 2020) followed by a rotation t; analytic inverse.
With the conditioner's last layer zero-initialized (the default) every map is the identity.

Passes: ``GaugeCoupling`` computes each layer by its lean pass (issue 14: one gather for all plaquettes,
the conditioner at the sites it is needed at through nets.SiteConvNet, the lean spline, one index_copy;
see its docstring); ``nets.reference_passes()`` switches to the original pass (``_couple_reference``),
the same function to rounding (tests/flows/test_fast_conv.py).

Prior (``prior``): "haar" (uniform links, the default and what a checkpoint without the option gets) or
"plaquette" (priors.PlaquettePrior: links built from V - 1 independent von Mises plaquettes at ``prior_beta``,
default the theory's beta, two uniform holonomies and a uniform gauge transformation; exact log r, a function
of the plaquettes only, so the flow stays gauge equivariant and log q exact). With the zero-initialized
conditioners the plaquette-prior flow starts as the plaquette sampler, which misses only the torus constraint
(docs/gauge_prior.md).
"""
from __future__ import annotations

import math

import torch

from .base import Flow, Transform, UniformAnglePrior
from .circular import TWO_PI, circular_spline, circular_spline_inverse, spline_lean, spline_params, wrap
from .nets import SiteConvNet, conv_net
from .priors import PRIORS, PlaquettePrior

THEORIES = ("u1",)
PERIOD = 4


def plaquettes(x: torch.Tensor) -> torch.Tensor:
    """P(x) (unwrapped) of links x, shape (N, 2, L0, L1) -> (N, L0, L1)."""
    t0, t1 = x[:, 0], x[:, 1]
    return t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1


def gauge_transform(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """theta_mu(x) + alpha(x) - alpha(x + e_mu), wrapped; alpha of shape (N, L0, L1)."""
    out = torch.stack((x[:, 0] + alpha - torch.roll(alpha, -1, dims=1),
                       x[:, 1] + alpha - torch.roll(alpha, -1, dims=2)), dim=1)
    return wrap(out)


# ----------------------------------------------------------------------------------------------
# circle maps: params has a trailing channel axis (..., C); u and the result have shape (...)

class NCPMixture:
    """Mixture of non-compact projections plus rotation; C = 2 n_mix + 1 (s, weight logits, t)."""

    def __init__(self, n_mix: int = 2):
        self.n_mix = n_mix
        self.n_params = 2 * n_mix + 1

    def _split(self, params):
        k = self.n_mix
        s, logits, t = params[..., :k], params[..., k:2 * k], params[..., 2 * k]
        return s, torch.log_softmax(logits, dim=-1), t

    @staticmethod
    def _h(u, s, logw):
        """mixture value (in [-pi, pi]) and log derivative; u (...,), s/logw (..., K)."""
        uu = u.unsqueeze(-1)
        half = uu / 2
        val = (logw.exp() * 2 * torch.atan(torch.exp(s) * torch.tan(half))).sum(-1)
        c, sn = torch.cos(half), torch.sin(half)
        logd = -torch.log(torch.exp(-s) * c * c + torch.exp(s) * sn * sn)
        return val, torch.logsumexp(logw + logd, dim=-1)

    def forward(self, u, params):
        s, logw, t = self._split(params)
        val, logd = self._h(u, s, logw)
        return wrap(val + t), logd

    def inverse(self, v, params):
        s, logw, t = self._split(params)
        y = wrap(v - t)
        with torch.no_grad():
            sd, lwd, yd = s.detach(), logw.detach(), y.detach()
            lo = torch.full_like(yd, -math.pi)
            hi = torch.full_like(yd, math.pi)
            n_iter = 60 if yd.dtype == torch.float64 else 32
            for _ in range(n_iter):
                mid = (lo + hi) / 2
                below = self._h(mid, sd, lwd)[0] < yd
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
            u0 = (lo + hi) / 2
        # one Newton step from the (detached) root: exact value to rounding, exact gradient
        val, logd = self._h(u0, s, logw)
        u = u0 - (val - y) * torch.exp(-logd)
        _, logd = self._h(u, s, logw)
        return wrap(u), -logd

    # the lean passes: parameters (..., C, A) (channel axis second last), angles measured from -pi
    def forward_lean(self, u, params):
        v, logd = self.forward(u - math.pi, params.transpose(-1, -2))
        return v + math.pi, logd

    def inverse_lean(self, v, params):
        u, logd = self.inverse(v - math.pi, params.transpose(-1, -2))
        return u + math.pi, logd


class CircularSpline:
    """Circular rational-quadratic spline on [-pi, pi) (circular.circular_spline: fixes -pi, equal
    slopes at -pi and pi) followed by a rotation t; C = 3 n_bins + 1 (widths, heights, slopes, t)."""

    def __init__(self, n_bins: int = 8):
        self.n_bins = n_bins
        self.n_params = 3 * n_bins + 1

    def forward(self, u, params):
        w, h, d = spline_params(params[..., :-1], self.n_bins)
        v, logd = circular_spline(u, w, h, d)
        return wrap(v + params[..., -1]), logd

    def inverse(self, v, params):
        w, h, d = spline_params(params[..., :-1], self.n_bins)
        return circular_spline_inverse(wrap(v - params[..., -1]), w, h, d)

    # the lean passes: parameters (..., C, A) (channel axis second last), angles measured from -pi (in
    # [0, 2 pi]); the results are not reduced mod 2 pi (the links are wrapped at the end of the flow)
    def forward_lean(self, u, params):
        v, logd = spline_lean(u, params[..., :-1, :], self.n_bins)
        return v + params[..., -1, :], logd

    def inverse_lean(self, v, params):
        return spline_lean(torch.remainder(v - params[..., -1, :], TWO_PI), params[..., :-1, :], self.n_bins,
                           inverse=True)


PLAQ_MAPS = {"ncp": lambda n_mix, n_bins: NCPMixture(n_mix),
             "spline": lambda n_mix, n_bins: CircularSpline(n_bins)}


# ----------------------------------------------------------------------------------------------

class GaugeCoupling(Transform):
    """One gauge-equivariant coupling layer (mu, off); see the module docstring for the masks.

    The lean pass (``forward_flat`` / ``inverse_flat`` on links flattened to (N, 2 V), flat link index
    mu V + x0 L1 + x1) computes the same function as the reference pass (``_couple_reference``, the code
    before issue 14) in far fewer tensor operations:
      - one gather of the links and one signed sum give every plaquette the layer reads: the frozen
        ones, the active ones, and Sigma(x) = P(x) + P(x - e_nu) at the active sites directly as the sum
        of its six links (the updated link cancels), so the conditioner's inputs are bitwise the same
        in the forward and the inverse pass;
      - the conditioner runs through nets.SiteConvNet at the sites it is needed at (the circle-map
        parameters only at the active plaquettes), never reading the zero (masked) inputs;
      - the circle map is the lean spline (circular.spline_lean) on angles measured from -pi;
      - the link update is one index_copy; links are wrapped once at the end of the flow
        (``finish_flat``), not after every layer: plaquettes enter only through cos, sin and the
        periodic maps, so the map on the torus is the same.
    Every operation acts on each configuration (row) separately, in the same way whatever the batch, so
    row i of the result is bitwise a function of row i of the input.
    """

    lean = True

    def __init__(self, lattice_shape: tuple[int, int], mu: int, off: int, plaq_map, hidden, kernel_size,
                 passive_sum: bool = True):
        super().__init__()
        self.mu, self.off = int(mu), int(off)
        self.nu = 1 - self.mu
        self.sign = 1.0 if self.mu == 0 else -1.0
        self.plaq_map = plaq_map
        self.passive_sum = bool(passive_sum)
        self.net = conv_net(4 if passive_sum else 2, plaq_map.n_params, tuple(hidden), kernel_size, final_zero=True)
        L_nu = lattice_shape[self.nu]
        r = torch.arange(L_nu) % PERIOD
        frozen = ((r == (self.off + 1) % PERIOD) | (r == (self.off + 2) % PERIOD)).float()
        shape = [1, 1, 1]
        shape[1 + self.nu] = L_nu  # (1, L0, 1) or (1, 1, L1)
        self.register_buffer("frozen", frozen.reshape(shape), persistent=False)
        self.register_buffer("active", (r == self.off).float().reshape(shape), persistent=False)
        self._lean_plan(tuple(lattice_shape))

    # ------------------------------------------------------------------ lean pass (flat links, batch first)
    def _lean_plan(self, shape: tuple[int, int]) -> None:
        l0, l1 = shape
        V = l0 * l1
        x0, x1 = torch.meshgrid(torch.arange(l0), torch.arange(l1), indexing="ij")
        x0, x1 = x0.reshape(-1), x1.reshape(-1)
        row = (x0 if self.nu == 0 else x1) % PERIOD
        act = (row == self.off).nonzero().squeeze(1)
        frz = ((row == (self.off + 1) % PERIOD) | (row == (self.off + 2) % PERIOD)).nonzero().squeeze(1)

        def site(a0, a1):
            return (a0 % l0) * l1 + a1 % l1

        def plaq(s0, s1):  # {flat link: coefficient} of P at (s0, s1)
            terms: dict = {}
            for link, c in ((site(s0, s1), 1), (V + site(s0 + 1, s1), 1), (site(s0, s1 + 1), -1), (V + site(s0, s1), -1)):
                terms[int(link)] = terms.get(int(link), 0) + c
            return terms

        def add(a, b):
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0) + v
            return {k: v for k, v in out.items() if v != 0}

        e = (1, 0) if self.nu == 0 else (0, 1)
        rows = [plaq(int(x0[s]), int(x1[s])) for s in frz]  # frozen plaquettes
        if self.passive_sum:  # Sigma(x) = P(x) + P(x - e_nu): the updated link cancels
            rows += [add(plaq(int(x0[s]), int(x1[s])), plaq(int(x0[s]) - e[0], int(x1[s]) - e[1])) for s in act]
        rows += [plaq(int(x0[s]), int(x1[s])) for s in act]  # active plaquettes (last)
        width = max(len(r) for r in rows)
        idx = torch.zeros(width, len(rows), dtype=torch.long)
        sgn = torch.zeros(width, len(rows))
        for j, r in enumerate(rows):
            for i, (link, c) in enumerate(sorted(r.items(), key=lambda kv: -kv[1])):
                idx[i, j], sgn[i, j] = link, float(c)
        self.register_buffer("plaq_idx", idx.reshape(-1), persistent=False)
        self.register_buffer("plaq_sign", sgn, persistent=False)
        self.register_buffer("link_idx", self.mu * V + act, persistent=False)
        n_f, n_a = len(frz), len(act)
        self.n_feat = n_f + (n_a if self.passive_sum else 0)  # rows of the feature angles: frozen, then Sigma
        # conditioner input channels (cos P, sin P on frozen plaquettes; cos Sigma, sin Sigma on active
        # ones): rows of the table (N, angles, (cos, sin)); row group 0 the frozen P, 1 the Sigma
        in_rows = torch.full((2 if self.passive_sum else 1, V), -1, dtype=torch.long)
        in_rows[0, frz] = torch.arange(n_f)
        if self.passive_sum:
            in_rows[1, act] = n_f + torch.arange(n_a)
        self.plan = SiteConvNet(self.net, shape, act, in_rows, self.n_feat)
        self.n_active = n_a

    def _couple_flat(self, x: torch.Tensor, inverse: bool, batch_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        buf = self._buffers
        d = 0 if batch_last else 1  # the axis of the links / sites
        sign = buf["plaq_sign"]
        if batch_last:  # x (2 V, N)
            ang = (x.index_select(0, buf["plaq_idx"]).view(*sign.shape, -1) * sign.unsqueeze(-1)).sum(0)
        else:  # x (N, 2 V)
            ang = (x.index_select(1, buf["plaq_idx"]).view(x.shape[0], *sign.shape) * sign).sum(1)
        feat, pa = ang.split((self.n_feat, self.n_active), dim=d)
        table = torch.stack((torch.cos(feat), torch.sin(feat)), 0 if batch_last else -1)
        params = self.plan.forward(self.net, table, batch_last)
        pa = torch.remainder(pa + math.pi, TWO_PI)  # active plaquettes + pi, in [0, 2 pi)
        fn = self.plaq_map.inverse_lean if inverse else self.plaq_map.forward_lean
        if batch_last:  # params (C, A, N): the map on (C, A N)
            pn, logd = fn(pa.reshape(-1), params.reshape(params.shape[0], -1))
            pn, logd = pn.view_as(pa), logd.view_as(pa)
        else:  # params (N, A, C) -> (N, C, A): the map's operations over C run along A
            pn, logd = fn(pa, params.transpose(1, 2).contiguous())
        link = buf["link_idx"]
        new = torch.add(x.index_select(d, link), pn - pa, alpha=self.sign)
        return x.index_copy(d, link, new), logd.to(torch.float64).sum(d)

    def forward_flat(self, x, batch_last=False):
        return self._couple_flat(x, False, batch_last)

    def inverse_flat(self, x, batch_last=False):
        return self._couple_flat(x, True, batch_last)

    @staticmethod
    def finish_flat(x):
        return wrap(x)

    # ------------------------------------------------------------------ reference pass (before issue 14)
    def _active(self, a: torch.Tensor) -> torch.Tensor:
        """The active rows of a (..., L0, L1) tensor (x_nu % 4 == off)."""
        return a[..., self.off::PERIOD, :] if self.nu == 0 else a[..., self.off::PERIOD]

    def _couple_reference(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        p = wrap(plaquettes(x))
        fz = self.frozen.to(p.dtype)
        feats = [torch.cos(p) * fz, torch.sin(p) * fz]
        if self.passive_sum:  # Sigma(x) = P(x) + P(x - e_nu), invariant under this layer
            sigma = p + torch.roll(p, 1, dims=1 + self.nu)
            act = self.active.to(p.dtype)
            feats += [torch.cos(sigma) * act, torch.sin(sigma) * act]
        cond = torch.stack(feats, dim=1)
        params = self._active(self.net(cond)).movedim(1, -1)      # (N, ., ., C)
        pa = self._active(p)
        fn = self.plaq_map.inverse if inverse else self.plaq_map.forward
        pn, logd = fn(pa, params)
        out = x.clone()
        link = self._active(x[:, self.mu])
        new = wrap(link + self.sign * (pn - pa))
        if self.nu == 0:
            out[:, self.mu, self.off::PERIOD, :] = new
        else:
            out[:, self.mu, :, self.off::PERIOD] = new
        return out, logd.to(torch.float64).flatten(1).sum(1)

    def forward(self, z):
        if self.use_lean(z):
            return self.run_lean(z, inverse=False)
        return self._couple_reference(z, inverse=False)

    def inverse(self, x):
        if self.use_lean(x):
            return self.run_lean(x, inverse=True)
        return self._couple_reference(x, inverse=True)


def build(theory, n_layers: int = 16, hidden=(8, 8), kernel_size: int = 3, plaq_map: str = "spline",
          n_mix: int = 4, n_bins: int = 8, passive_sum: bool = True, prior: str = "haar", prior_beta=None,
          dtype=torch.float32) -> Flow:
    """Gauge-equivariant flow for theory (U(1) on L0 x L1, both multiples of 4): ``prior`` "haar"
    (uniform links) or "plaquette" (priors.PlaquettePrior: independent von Mises plaquettes at
    ``prior_beta``, default the theory's beta), n_layers coupling layers (mu = i % 2, off = (i // 2) % 4),
    conditioner CNNs with ``hidden`` channels and ``kernel_size``, plaquette maps ``plaq_map`` in
    {"ncp", "spline"} (n_mix NCP components, or n_bins spline bins), conditioned also on the active +
    passive plaquette sum with ``passive_sum`` (module docstring). A checkpoint without "prior" (before
    the option existed) rebuilds with the Haar prior."""
    if theory.name not in THEORIES:
        raise ValueError(f"gauge-flow is for {', '.join(THEORIES)}, not {theory.name}")
    shape = tuple(theory.shape)
    if len(shape) != 2 or any(L % PERIOD for L in shape):
        raise ValueError(f"gauge-flow needs a 2D lattice with both sides multiples of {PERIOD}, got {shape}")
    if plaq_map not in PLAQ_MAPS:
        raise ValueError(f"unknown plaq_map {plaq_map!r}; choose from {', '.join(PLAQ_MAPS)}")
    if n_layers < 1:
        raise ValueError(f"n_layers = {n_layers} < 1")
    prior_module = _prior(theory, prior, prior_beta)
    hidden = tuple(int(h) for h in hidden)
    layers = [GaugeCoupling(shape, i % 2, (i // 2) % PERIOD, PLAQ_MAPS[plaq_map](n_mix, n_bins), hidden, kernel_size,
                            passive_sum) for i in range(n_layers)]
    hyper = {"n_layers": int(n_layers), "hidden": list(hidden), "kernel_size": int(kernel_size),
             "plaq_map": plaq_map, "n_mix": int(n_mix), "n_bins": int(n_bins), "passive_sum": bool(passive_sum),
             "prior": prior, "prior_beta": getattr(prior_module, "beta0", None)}
    flow = Flow(prior_module, layers, theory, "gauge-flow", hyper)
    return flow.to(dtype)


def _prior(theory, prior: str, prior_beta) -> torch.nn.Module:
    """The prior module for ``prior`` (PRIORS) and ``prior_beta`` (plaquette only; None: the theory's beta)."""
    if prior not in PRIORS:
        raise ValueError(f"prior={prior}: choose {' or '.join(PRIORS)}")
    if prior == "haar":
        if prior_beta is not None:
            raise ValueError(f"prior_beta={prior_beta} needs prior=plaquette (the Haar prior has no coupling)")
        return UniformAnglePrior(theory.config_shape)
    if prior_beta is None:
        prior_beta = float(theory.beta)
    if isinstance(prior_beta, bool) or not isinstance(prior_beta, (int, float)) or not math.isfinite(prior_beta) \
            or prior_beta < 0:
        raise ValueError(f"prior_beta={prior_beta}: needs a finite number >= 0")
    return PlaquettePrior(theory.config_shape, float(prior_beta))
