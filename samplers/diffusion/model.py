"""Score-based diffusion models behind the proposal interface (samplers/proposal.py).

Training: denoising score matching (Vincent 2011; Song et al. ICLR 2021) on an ensemble x_0,

    L = E_t E_{x_0} E_{x_t | x_0} [ std(t)^2 | s_theta(x_t, t) - grad log K(x_t | x_0) |^2 ] / n_dof,

t ~ U(t_min, 1); K is the Gaussian kernel (phi4: target -(x_t - x_0)/std^2 = -z/std) or the wrapped
Gaussian on the torus (xy, u1: samplers/diffusion/schedules.py). ``physics_weight`` > 0 adds the
known score at the smallest noise level as a physics-informed term (see ``dsm_loss``).

Generation (schedules.py's VE SDE dx = g dw, integrated backwards from t = 1 to t_min on a grid of
n_steps equally spaced in log std(t), Schedule.grid). Written in the variance v = std^2 (g^2 dt = dv),
a step from t0 to t1 lowers v by dv = std(t0)^2 - std(t1)^2 > 0:

- reverse SDE, Euler-Maruyama: x <- x + dv s(x, t0) + sqrt(dv) z, optionally followed by Langevin
  corrector steps (Song et al.'s predictor-corrector with signal-to-noise ratio ``snr``). No density.
- probability-flow ODE dx = -s dv / 2, with a fixed step scheme ("euler": x + dv s(x, t0) / 2;
  "heun": the trapezoidal average with the Euler prediction's score at t1). Each step
  x_{k+1} = Phi_k(x_k) is a deterministic map, and the sample is x = Phi_{n-1}(...Phi_0(x_T)) with
  x_T from the exact prior N(0, std(1)^2) (wrapped on the torus), so

      log q(x) = log r(x_T) - sum_k log |det dPhi_k/dx (x_k)|

  exactly, with every step Jacobian computed exactly (below) and its log-determinant by an LU
  factorization, in float64 when the model is float64. This is the density of the discrete map that
  made x, not an estimate of the continuous flow's density: it holds whatever the step count, provided
  every Phi_k is a diffeomorphism (a step with h * Lip(drift) < 1 is; on the torus Phi_k is a
  degree-one map, so a positive Jacobian determinant everywhere makes it a bijection). A non-positive
  determinant is detected and refused (ValueError: take more steps).
  ``push(z)`` is this map from given prior draws z (``sample_prior``), row by row, so that chains can
  share one pass (samplers/proposal.py), as for flows.
- The step Jacobians (``set_jacobian``; all give the same matrix, to rounding): "local" (the default
  for the score network of score.py): the score's Jacobian ds/dx by the network's own forward-mode
  differentiation (ScoreNet.jacobian), one tangent per dof held only on the window of sites it can
  reach (the receptive field: one kernel radius per convolution), every entry outside it an exact
  zero; the Heun step's Jacobian then follows by the chain rule, I + h (A1 + A2 (I + h A1)) / 2 with
  A1 = ds/dx at (x, t0), A2 at (x + k1, t1). "colour": for a network that only declares its
  receptive radius R, one JVP of the whole step per colour of a colouring in which two dofs of one
  colour are farther apart than twice the step's radius (2R for Heun) along some axis, so that no
  output depends on both (``_colouring``); it saves passes only where the lattice is wider than about
  4 step radii. "dense": torch.func.jacrev, one backward pass per dof (the code before issue 14).
  Cost at the default network (3 x 32 channels): 16 Heun steps with exact log q take about 0.09 s
  (phi4) and 0.17 s (u1) per proposal on 8 x 8, 0.3 and 0.8 s on 16 x 16, one core float64
  (benchmarks/bench_diffusion_passes.py; with the dense Jacobians 0.75, 1.4, ~27 and ~44 s).
- ``log_q(x)`` of a given x inverts each step, from the guess x_k = x_{k+1} - Delta_k(x_{k+1}), by the
  fixed-point iteration x_k <- x_{k+1} - Delta_k(x_k) while it contracts (each iteration one or two
  score evaluations), else by damped Newton with the exact step Jacobians, converged to
  ``INVERSE_TOL`` in max norm, then sums the same exact log-determinants; it is exact to that
  tolerance (used by hybrid chains and reweighting; learned-mh uses the log q returned with each sample).

Transfer across couplings (``retarget``): for U(1) and XY the action is linear in beta, so the score
of the target at t -> 0 is (beta / beta_0) times that at beta_0; the retargeted model uses
s(x, t) = (beta / beta_0) s_theta(x, t) at every t ("physics-conditioned" rescaling), exact at
t -> 0. (For a Gaussian theory S = beta x^T A x / 2 the noised score at every t would follow from
s_beta(x, std) = (beta / beta_0) s_beta_0(x, std sqrt(beta / beta_0)); measured on U(1) 4 x 4 moved
from beta = 1 to 2 and 3 it gave lower acceptance, 0.06 and 0.02 against 0.15 and 0.07: on the
torus the large-noise score decays like exp(-std^2 / 2) whatever beta, which that rule does not
respect.) For phi4 (hopping parameterization) the action is linear in kappa only in its hopping
term, and the model adds the exact t -> 0 score difference 2 (kappa - kappa_0) sum_mu
(phi_{x+mu} + phi_{x-mu}), damped by 1 / (1 + std(t)^2) at larger noise (a heuristic; the noised
score is not known). Either way the map, and so the exact density above, is that of the retargeted
model: with learned-mh the chain at the new coupling is exact, however good the transfer.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .schedules import (Schedule, normal_log_prob, wrap, wrapped_normal_log_prob, wrapped_normal_score)

INTEGRATORS = ("euler", "heun")
SAMPLERS = ("ode", "sde")
JACOBIANS = ("auto", "local", "colour", "dense")  # how the step Jacobians are computed (all exact)
INVERSE_TOL = 1e-12
FIXED_POINT_ITER = 100  # at most this many fixed-point iterations per inverted step (then Newton)
FIXED_POINT_RATE = 0.5  # ... while every residual falls at least by this factor per iteration
JACOBIAN_CHUNK = 8192  # cotangents per vmapped Jacobian batch (sample chunk = this // n_dof)
LOCAL_CHUNK = 1 << 22  # elements of the largest tangent tensor per chunk of samples (local Jacobians)


def colour_period(size: int, distance: int) -> int:
    """The smallest c such that sites a, b of a cycle of ``size`` sites with a = b mod c are at cyclic
    distance >= ``distance`` whenever a != b (c = size when none is smaller: every site its own colour)."""
    for c in range(max(1, distance), size):
        q = (size - 1) // c  # sites 0, c, ..., q c share colour 0; the gap across the wrap is size - q c
        if size - q * c >= distance:
            return c
    return size


class DiffusionModel(nn.Module):
    """A score network + VE noise schedule for one theory; name, hyper, theory, log_p like ``Flow``."""

    reparameterizable = False

    def __init__(self, net: nn.Module, schedule: Schedule, theory, name: str, hyper: dict, t_min: float = 1e-3,
                 n_steps: int = 16, integrator: str = "heun"):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.theory = theory
        self.base_theory = theory
        self.name = name
        self.hyper = dict(hyper)
        self.t_min = float(t_min)
        self.periodic = theory.name in ("xy", "u1")
        self.config_shape = tuple(theory.config_shape)
        self.n_dof = math.prod(self.config_shape)
        self.score_scale = 1.0
        self.kappa_shift = 0.0
        self.sampler = "ode"
        self.corrector_steps = 0
        self.snr = 0.16
        self.set_sampling(n_steps=n_steps, integrator=integrator)
        self.jacobian = "auto"
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self._hopping_matrix = None
        self._colour_cache = None

    # ------------------------------------------------------------------ configuration
    @property
    def exact_density(self) -> bool:
        """True when ``sample`` returns the exact log q of its samples (the PF-ODE sampler)."""
        return self.sampler == "ode"

    def set_sampling(self, sampler: str | None = None, n_steps: int | None = None, integrator: str | None = None,
                     corrector_steps: int | None = None, snr: float | None = None) -> "DiffusionModel":
        """Choose how ``sample`` generates: "ode" (exact log q) or "sde" (log q = NaN), the number of
        integration steps, the ODE integrator, and the SDE's Langevin corrector steps and snr."""
        if sampler is not None:
            if sampler not in SAMPLERS:
                raise ValueError(f"unknown diffusion sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
            self.sampler = sampler
        if n_steps is not None:
            if int(n_steps) != n_steps or n_steps < 1:
                raise ValueError(f"diffusion steps must be a positive integer, got {n_steps}")
            self.n_steps = int(n_steps)
        if integrator is not None:
            if integrator not in INTEGRATORS:
                raise ValueError(f"unknown integrator {integrator!r}; choose from {', '.join(INTEGRATORS)}")
            self.integrator = integrator
        if corrector_steps is not None:
            if int(corrector_steps) != corrector_steps or corrector_steps < 0:
                raise ValueError(f"corrector steps must be a non-negative integer, got {corrector_steps}")
            self.corrector_steps = int(corrector_steps)
        if snr is not None:
            if not snr > 0:
                raise ValueError(f"corrector snr must be > 0, got {snr}")
            self.snr = float(snr)
        return self

    def set_jacobian(self, method: str) -> "DiffusionModel":
        """How the exact step Jacobians are computed (the same matrices to rounding, ~1e-15 relative):
        "local" (the score network's own forward-mode Jacobian on the receptive windows, ScoreNet.jacobian),
        "colour" (one torch.func JVP per colour of a colouring of the dofs by the receptive radius),
        "dense" (torch.func.jacrev, one backward pass per dof: the code before issue 14), or "auto":
        local when the network has it, else colour when it needs fewer passes than dense, else dense."""
        if method not in JACOBIANS:
            raise ValueError(f"unknown Jacobian method {method!r}; choose from {', '.join(JACOBIANS)}")
        self.jacobian = method
        return self

    def jacobian_method(self) -> str:
        """The method "auto" resolves to for this model (or the one set)."""
        if self.jacobian != "auto":
            return self.jacobian
        if hasattr(self.net, "local_jacobian"):
            return "local"
        if self._colouring() is not None:
            return "colour"
        return "dense"

    def step_radius(self) -> int | None:
        """R such that Phi_k(x) at site s depends on x only within max-norm distance R of s (on the
        torus): the score network's receptive radius, twice that for Heun (its second score is taken at
        x + k1(x)), at least 1 with a kappa shift (nearest neighbours); None if the network has no
        receptive radius (then nothing local is assumed)."""
        r = getattr(self.net, "receptive_radius", None)
        if r is None:
            return None
        if self.kappa_shift != 0.0:
            r = max(r, 1)
        return 2 * r if self.integrator == "heun" else r

    def _colouring(self):
        """(colour of each dof (d,), number of colours, mask (d, d) of the entries that may be nonzero) for
        the step map, or None when colouring would not save passes. Two dofs share a colour only if they
        sit at different sites whose cyclic distance along some axis exceeds 2 R (R = ``step_radius``):
        then no output depends on both, and the JVP with the sum of their unit tangents gives each of
        their columns exactly on the entries where it can be nonzero (the others are exact zeros)."""
        r = self.step_radius()
        if r is None:
            return None
        sizes = self.config_shape[-2:]
        periods = [colour_period(n, 2 * r + 1) for n in sizes]
        n_comp = self.n_dof // (sizes[0] * sizes[1])
        n_colours = n_comp * periods[0] * periods[1]
        if n_colours >= self.n_dof:
            return None
        key = (r, tuple(sizes), n_comp, str(self._anchor.device))
        if self._colour_cache is None or self._colour_cache[0] != key:
            dev = self._anchor.device
            a0 = torch.arange(sizes[0], device=dev).view(1, -1, 1)
            a1 = torch.arange(sizes[1], device=dev).view(1, 1, -1)
            k = torch.arange(n_comp, device=dev).view(-1, 1, 1)
            colour = ((k * periods[0] + a0 % periods[0]) * periods[1] + a1 % periods[1]).reshape(-1)
            site0 = (a0 + 0 * a1 + 0 * k).reshape(-1)
            site1 = (a1 + 0 * a0 + 0 * k).reshape(-1)

            def near(c, n):  # cyclic distance <= r between the coordinates of rows and columns
                dist = (c[:, None] - c[None, :]).abs()
                return torch.minimum(dist, n - dist) <= r

            mask = near(site0, sizes[0]) & near(site1, sizes[1])
            self._colour_cache = (key, (colour, n_colours, mask))
        return self._colour_cache[1]

    def retarget(self, **params) -> "DiffusionModel":
        """Generate at another coupling: beta=... (u1, xy) or kappa=... (phi4, hopping parameters).
        Sets ``theory`` to the target theory; the trained theory stays in ``base_theory``."""
        import dataclasses

        base = self.base_theory
        if base.name in ("u1", "xy"):
            if set(params) != {"beta"}:
                raise ValueError(f"a {base.name} diffusion model is retargeted by beta only, got {sorted(params)}")
            beta = float(params["beta"])
            if not beta > 0:
                raise ValueError(f"target beta must be > 0, got {beta}")
            self.score_scale = beta / base.beta
            self.theory = dataclasses.replace(base, beta=beta)
        else:
            if set(params) != {"kappa"}:
                raise ValueError(f"a phi4 diffusion model is retargeted by kappa only, got {sorted(params)}")
            if base.parameterization != "hopping":
                raise ValueError("--target-kappa needs a model trained in the hopping parameterization "
                                 "(--kappa, --lam), not m2, g")
            kappa = float(params["kappa"])
            if not kappa > 0:
                raise ValueError(f"target kappa must be > 0, got {kappa}")
            self.kappa_shift = kappa - base.kappa
            self.theory = dataclasses.replace(base, kappa=kappa)
        return self

    def _hopping_jacobian(self) -> torch.Tensor:
        """d _hopping_score(x) / dx, (d, d) in the model's dtype (a constant matrix)."""
        a = self._anchor
        H = self._hopping_matrix
        if H is None or H.dtype != a.dtype or H.device != a.device:
            eye = torch.eye(self.n_dof, dtype=a.dtype, device=a.device).view(self.n_dof, *self.config_shape)
            H = self._hopping_score(eye).reshape(self.n_dof, self.n_dof).T.contiguous()
            self._hopping_matrix = H
        return H

    # ------------------------------------------------------------------ score
    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The model's score s(x, t) (retargeted if ``retarget`` was called); t of shape (N,)."""
        std = self.schedule.std(t)
        s = self.net(x, std)
        if self.score_scale != 1.0:
            s = self.score_scale * s
        if self.kappa_shift != 0.0:
            s = s + self.kappa_shift * self._hopping_score(x) / (1 + std ** 2).view(-1, *[1] * (x.dim() - 1))
        return s

    @staticmethod
    def _hopping_score(x: torch.Tensor) -> torch.Tensor:
        """-d/dphi of -2 sum_{x,mu} phi_x phi_{x+mu} per unit kappa: 2 sum_mu (phi_{x+mu} + phi_{x-mu})."""
        out = torch.zeros_like(x)
        for d in range(1, x.dim()):
            out = out + torch.roll(x, 1, d) + torch.roll(x, -1, d)
        return 2 * out

    # ------------------------------------------------------------------ training
    def dsm_loss(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                 physics_weight: float = 0.0) -> torch.Tensor:
        """Denoising score-matching loss of a batch of configurations x0 (module dtype).

        physics_weight w > 0 adds w * E | std s_theta(x0 + std(t_min) z, t_min) + std grad S(x0') |^2 / n_dof,
        the known target score -grad S at the smallest noise level, evaluated at the slightly noised
        configuration (a physics-informed term; at t_min the noised density is close to exp(-S))."""
        n = x0.shape[0]
        a = self._anchor
        t = self.t_min + (1 - self.t_min) * torch.rand(n, generator=generator, device=a.device, dtype=a.dtype)
        std = self.schedule.std(t)
        view = (-1, *[1] * (x0.dim() - 1))
        z = torch.randn(x0.shape, generator=generator, device=a.device, dtype=a.dtype)
        xt = x0 + std.view(view) * z
        if self.periodic:
            n_images = int(math.ceil(4 * float(std.max()) / (2 * math.pi))) + 1
            target = wrapped_normal_score(xt - x0, std.view(view).expand_as(xt), n_images)
            xt = wrap(xt)
        else:
            target = -z / std.view(view)
        s = self.net(xt, std)
        loss = ((std.view(view) * (s - target)) ** 2).flatten(1).sum(1).mean() / self.n_dof
        if physics_weight > 0:
            t0 = torch.full((n,), self.t_min, device=a.device, dtype=a.dtype)
            std0 = self.schedule.std(t0)
            x_small = x0 + std0.view(view) * torch.randn(x0.shape, generator=generator, device=a.device,
                                                         dtype=a.dtype)
            if self.periodic:
                x_small = wrap(x_small)
            known = -self._action_grad(x_small)
            s0 = self.net(x_small, std0)
            loss = loss + physics_weight * ((std0.view(view) * (s0 - known)) ** 2).flatten(1).sum(1).mean() / self.n_dof
        return loss

    def _action_grad(self, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xr = x.detach().to(torch.float64).requires_grad_(True)
            (g,) = torch.autograd.grad(self.base_theory.torch_action(xr).sum(), xr)
        return g.to(x.dtype)

    # ------------------------------------------------------------------ integration
    def _grid(self) -> list[float]:
        return self.schedule.grid(self.t_min, self.n_steps)

    def _dv(self, t0: float, t1: float) -> float:
        """std(t0)^2 - std(t1)^2: the variance one step from t0 down to t1 removes."""
        v = self.schedule.std(torch.tensor([t0, t1], dtype=torch.float64)) ** 2
        return float(v[0] - v[1])

    def _t(self, t: float, n: int) -> torch.Tensor:
        a = self._anchor
        return torch.full((n,), t, device=a.device, dtype=a.dtype)

    def _ode_increment(self, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        """Phi(x) - x for one PF-ODE step from t0 down to t1 (unwrapped)."""
        half_dv = 0.5 * self._dv(t0, t1)
        n = x.shape[0]
        k1 = half_dv * self.score(x, self._t(t0, n))
        if self.integrator == "euler":
            return k1
        return 0.5 * (k1 + half_dv * self.score(x + k1, self._t(t1, n)))

    def _step_jacobians(self, x: torch.Tensor, t0: float, t1: float):
        """dPhi/dx of one ODE step at each configuration of x, (N, d, d) float64, exact, by the method
        ``jacobian_method`` names (``set_jacobian``). Yields chunks (start, J)."""
        method = self.jacobian_method()
        if method == "local":
            if not hasattr(self.net, "local_jacobian"):
                raise ValueError(f"the score network {type(self.net).__name__} has no local Jacobian; "
                                 f"use the colour or dense Jacobians")
            yield from self._local_step_jacobians(x, t0, t1)
        elif method == "colour":
            yield from self._coloured_step_jacobians(x, t0, t1)
        else:
            yield from self._dense_step_jacobians(x, t0, t1)

    def _dense_step_jacobians(self, x: torch.Tensor, t0: float, t1: float):
        """The full Jacobian by reverse-mode autodiff, one cotangent per degree of freedom
        (torch.func.jacrev, vmapped over configurations; measured faster here than forward mode)."""
        d = self.n_dof

        def step(xi):
            return xi + self._ode_increment(xi.view(1, *self.config_shape), t0, t1)[0].flatten()

        jacobian = torch.func.vmap(torch.func.jacrev(step))
        chunk = max(1, JACOBIAN_CHUNK // d)
        flat = x.reshape(x.shape[0], d)
        for i in range(0, flat.shape[0], chunk):
            with torch.enable_grad():  # reverse mode needs a graph even when the caller disabled it
                J = jacobian(flat[i:i + chunk]).to(torch.float64).detach()
            yield i, J  # outside the grad-enabled block: the caller's grad mode holds while it works

    def _coloured_step_jacobians(self, x: torch.Tensor, t0: float, t1: float):
        """The Jacobian from one forward-mode JVP of the whole step per colour (``_colouring``): column j
        is the JVP of its colour's tangent on the rows within the step radius of j, zero elsewhere."""
        colouring = self._colouring()
        if colouring is None:  # nothing to save (the receptive field covers the lattice)
            yield from self._dense_step_jacobians(x, t0, t1)
            return
        colour, n_colours, mask = colouring
        d = self.n_dof
        a = self._anchor
        seeds = torch.zeros(n_colours, d, dtype=a.dtype, device=a.device)
        seeds[colour, torch.arange(d, device=a.device)] = 1.0

        def step(xi):
            return xi + self._ode_increment(xi.view(1, *self.config_shape), t0, t1)[0].flatten()

        def columns(xi):  # (n_colours, d): JVP of each colour's tangent
            return torch.func.vmap(lambda v: torch.func.jvp(step, (xi,), (v,))[1])(seeds)

        jvps = torch.func.vmap(columns)
        chunk = max(1, JACOBIAN_CHUNK // n_colours)
        flat = x.reshape(x.shape[0], d)
        for i in range(0, flat.shape[0], chunk):
            out = jvps(flat[i:i + chunk]).detach().to(torch.float64)  # (n, n_colours, d): out[n, c, row]
            J = out.transpose(1, 2)[:, :, colour] * mask  # J[n, row, j] = out[n, colour(j), row] near j
            yield i, J

    def _score_jacobian(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """d score(x, t) / dx, (N, d, d) in the model's dtype, exact (the network's local Jacobian, then
        the retargeting factors of ``score``)."""
        n = x.shape[0]
        std = self.schedule.std(self._t(t, n))
        A = self.net.jacobian(x, std)
        if self.score_scale != 1.0:
            A = self.score_scale * A
        if self.kappa_shift != 0.0:
            A = A + (self.kappa_shift / (1 + std ** 2)).view(n, 1, 1) * self._hopping_jacobian()
        return A

    def _local_step_jacobians(self, x: torch.Tensor, t0: float, t1: float):
        """The step Jacobian from the score's exact local Jacobians A(x, t) = ds/dx (ScoreNet.jacobian):
        Euler Phi = x + h s(x, t0) (h = dv / 2): I + h A(x, t0); Heun Phi = x + (k1 + h s(x + k1, t1)) / 2,
        k1 = h s(x, t0): I + h (A1 + A2 (I + h A1)) / 2 with A1 = A(x, t0), A2 = A(x + k1, t1)."""
        d = self.n_dof
        h = 0.5 * self._dv(t0, t1)
        net = self.net
        r = net.receptive_radius
        sizes = self.config_shape[-2:]
        width = min(2 * r + 1, sizes[0]) * min(2 * r + 1, sizes[1])  # of the widest tangent window
        channels = max([c.out_channels for c in getattr(net, "convs", [])] + [1])
        per_sample = max(d * channels * width, 4 * d * d)  # its elements, or those of the dense matrices
        chunk = max(1, LOCAL_CHUNK // per_sample)
        eye = torch.eye(d, dtype=self._anchor.dtype, device=self._anchor.device)
        for i in range(0, x.shape[0], chunk):
            xc = x[i:i + chunk]
            A1 = self._score_jacobian(xc, t0)
            if self.integrator == "euler":
                J = eye + h * A1
            else:
                y = xc + h * self.score(xc, self._t(t0, xc.shape[0]))
                A2 = self._score_jacobian(y, t1)
                J = eye + (0.5 * h) * (A1 + A2 + h * torch.bmm(A2, A1))
            yield i, J.to(torch.float64)

    def _step_logdet(self, x: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
        """log |det dPhi/dx| of one ODE step at each configuration of x, float64, exact (LU of the full
        Jacobian); a non-positive determinant (a folding step) is refused."""
        out = []
        for _, J in self._step_jacobians(x, t0, t1):
            sign, logabs = torch.linalg.slogdet(J)
            if not bool((sign > 0).all()):
                raise ValueError(f"a probability-flow step from t={t0:.4g} to t={t1:.4g} is not invertible "
                                 f"(Jacobian determinant <= 0): use more --diffusion-steps")
            out.append(logabs)
        return torch.cat(out)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random part of the PF-ODE sampler: n draws x_T of the prior at t = 1 (N(0, std(1)^2) per
        dof, wrapped on the torus), so that ``sample_ode(n, g) == push(sample_prior(n, g))`` (the contract
        of ``Flow.sample_prior``; samplers/proposal.py shares one ``push`` among chains)."""
        a = self._anchor
        std1 = float(self.schedule.std(torch.tensor(1.0, dtype=torch.float64)))
        x = std1 * torch.randn((n, *self.config_shape), generator=generator, device=a.device, dtype=a.dtype)
        return wrap(x) if self.periodic else x

    prior_sample = sample_prior  # the same, under the name of issue 14
    _prior_sample = sample_prior  # the former private name

    def prior_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of the prior at t = 1: N(0, std(1)^2) per dof, wrapped on the torus."""
        std1 = float(self.schedule.std(torch.tensor(1.0, dtype=torch.float64)))
        return wrapped_normal_log_prob(x, std1) if self.periodic else normal_log_prob(x, std1)

    def _finish(self, x):
        return wrap(x) if self.periodic else x

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n configurations and log q: exact (PF-ODE, the default) or NaN (reverse SDE)."""
        if self.sampler == "sde":
            return self.sample_sde(n, generator), torch.full((n,), math.nan, dtype=torch.float64,
                                                               device=self._anchor.device)
        return self.sample_ode(n, generator)

    def sample_ode(self, n: int, generator: torch.Generator | None = None,
                   with_density: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Probability-flow ODE samples and their exact log q (float64; NaN if not with_density)."""
        return self.push(self.sample_prior(n, generator), with_density)

    def push(self, z: torch.Tensor, with_density: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The deterministic part of the PF-ODE sampler: x = Phi_{n-1}(... Phi_0(z)) from prior draws z and
        log q(x) = log r(z) - sum_k log |det dPhi_k/dx (x_k)|, exact (float64; NaN if not with_density).
        Row i of the result depends on row i of z alone (every operation acts per configuration), so the
        prior draws of several chains can share one pass. The ODE map whatever ``sampler`` is set to
        (the reverse SDE draws noise at every step: it has no push)."""
        a = self._anchor
        x = z.to(device=a.device, dtype=a.dtype)
        n = x.shape[0]
        log_q = self.prior_log_prob(x) if with_density else torch.full((n,), math.nan, dtype=torch.float64,
                                                                         device=a.device)
        grid = self._grid()
        with torch.no_grad():
            for t0, t1 in zip(grid[:-1], grid[1:]):
                if with_density:
                    log_q = log_q - self._step_logdet(x, t0, t1)
                x = self._finish(x + self._ode_increment(x, t0, t1))
        return x, log_q

    def sample_sde(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reverse-SDE samples (Euler-Maruyama predictor, optional Langevin corrector); no density."""
        a = self._anchor
        x = self._prior_sample(n, generator)
        grid = self._grid()
        with torch.no_grad():
            for t0, t1 in zip(grid[:-1], grid[1:]):
                dv = self._dv(t0, t1)
                z = torch.randn(x.shape, generator=generator, device=a.device, dtype=a.dtype)
                x = self._finish(x + dv * self.score(x, self._t(t0, n)) + math.sqrt(dv) * z)
                for _ in range(self.corrector_steps):
                    x = self._langevin(x, self._t(t1, n), generator)
        return x

    def _langevin(self, x, t, generator):
        """One corrector step x <- x + e s + sqrt(2 e) z with e = 2 (snr |z| / |s|)^2 (Song et al., Alg. 5)."""
        a = self._anchor
        s = self.score(x, t)
        z = torch.randn(x.shape, generator=generator, device=a.device, dtype=a.dtype)
        ratio = z.flatten(1).norm(dim=1) / s.flatten(1).norm(dim=1).clamp_min(1e-30)
        eps = (2 * (self.snr * ratio) ** 2).view(-1, *[1] * len(self.config_shape))
        return self._finish(x + eps * s + torch.sqrt(2 * eps) * z)

    # ------------------------------------------------------------------ densities
    def log_q(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log q of the PF-ODE map at given configurations (steps inverted to INVERSE_TOL)."""
        a = self._anchor
        x = x.to(device=a.device, dtype=a.dtype)
        grid = self._grid()
        log_det = torch.zeros(x.shape[0], dtype=torch.float64, device=a.device)
        with torch.no_grad():
            for t0, t1 in reversed(list(zip(grid[:-1], grid[1:]))):
                x = self._invert_step(x, t0, t1)
                log_det = log_det + self._step_logdet(x, t0, t1)
        return self.prior_log_prob(x) - log_det

    def _residual(self, x: torch.Tensor, y: torch.Tensor, t0: float, t1: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Phi(x) - y (wrapped for angles) and its max norm per configuration."""
        r = x + self._ode_increment(x, t0, t1) - y
        if self.periodic:
            r = wrap(r)
        return r, r.flatten(1).abs().max(1).values

    def _invert_step(self, y: torch.Tensor, t0: float, t1: float, max_iter: int = 50) -> torch.Tensor:
        """x with Phi(x) = y, to INVERSE_TOL in max norm, from the guess x = y - Delta(y): first the
        fixed-point iteration x <- y - Delta(x) (x - r with r = Phi(x) - y, wrapped on the torus), a
        contraction when h Lip(s) < 1, kept while every unconverged configuration's residual falls by
        FIXED_POINT_RATE or more per iteration (it costs one or two score evaluations, a Jacobian d
        of them); then, if needed, damped Newton on r with the exact step Jacobians, where a full step
        that does not lower the residual is halved (up to 30 times). Either way the result is the
        preimage to the tolerance; the log-determinant is then taken there (``log_q``)."""
        view = (-1, *[1] * len(self.config_shape))
        x = y - self._ode_increment(y, t0, t1)
        r, norm = self._residual(x, y, t0, t1)
        for _ in range(FIXED_POINT_ITER):
            active = norm >= INVERSE_TOL
            if not bool(active.any()):
                return self._finish(x)
            x_new = x - r
            r_new, norm_new = self._residual(x_new, y, t0, t1)
            better = norm_new < norm
            contracting = bool((norm_new[active] <= FIXED_POINT_RATE * norm[active]).all())
            x = torch.where(better.view(view), x_new, x)
            r = torch.where(better.view(view), r_new, r)
            norm = torch.where(better, norm_new, norm)
            if not contracting:
                break
        for _ in range(max_iter):
            if float(norm.max()) < INVERSE_TOL:
                return self._finish(x)
            dx = torch.empty_like(x).reshape(x.shape[0], -1)
            flat_r = r.reshape(r.shape[0], -1).to(torch.float64)
            for i, J in self._step_jacobians(x, t0, t1):
                dx[i:i + J.shape[0]] = torch.linalg.solve(J, flat_r[i:i + J.shape[0]]).to(x.dtype)
            dx = dx.view_as(x)
            lam = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            for _ in range(30):
                x_new = x - lam.view(view) * dx
                r_new, norm_new = self._residual(x_new, y, t0, t1)
                worse = (norm_new >= norm) & (norm >= INVERSE_TOL)
                if not bool(worse.any()):
                    break
                lam = torch.where(worse, lam / 2, lam)
            better = norm_new < norm
            if not bool(better.any()):
                break
            x = torch.where(better.view(view), x_new, x)
            r = torch.where(better.view(view), r_new, r)
            norm = torch.where(better, norm_new, norm)
        raise ValueError(f"inverting the probability-flow step t={t0:.4g} -> {t1:.4g} did not converge "
                         f"(residual {float(norm.max()):.2e}); the step map may not be invertible here")

    def log_p(self, x: torch.Tensor) -> torch.Tensor:
        """-S(x) of the target theory (the retargeted one), float64, unnormalized."""
        return -self.theory.torch_action(x.to(torch.float64))
