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

  exactly, with every Jacobian computed in full by forward-mode autodiff (torch.func.jacfwd, one
  tangent per degree of freedom) and its log-determinant by an LU factorization, in float64 when
  the model is float64. This is the density of the discrete map that made x, not an estimate of
  the continuous flow's density: it holds whatever the step count, provided every Phi_k is a
  diffeomorphism (a step with h * Lip(drift) < 1 is; on the torus Phi_k is a degree-one map, so a
  positive Jacobian determinant everywhere makes it a bijection). A non-positive determinant is
  detected and refused (ValueError: take more steps).
  Cost: n_dof forward-mode passes of the network per step and sample, plus an n_dof^3 LU: practical
  here for n_dof up to a few hundred (8 x 8 lattices); see docs/diffusion.md for measured costs.
- ``log_q(x)`` of a given x inverts each step by damped Newton with the exact step Jacobians
  (from the fixed-point guess x_k = x_{k+1} - Delta_k(x_{k+1})), converged to ``INVERSE_TOL`` in max
  norm, then sums the same exact log-determinants; it is exact to that tolerance (used by hybrid
  chains and reweighting; learned-mh uses the log q returned with each sample).

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
INVERSE_TOL = 1e-12
JACOBIAN_CHUNK = 8192  # cotangents per vmapped Jacobian batch (sample chunk = this // n_dof)


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
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

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
        """dPhi/dx of one ODE step at each configuration of x, (N, d, d) float64, exact: the full Jacobian
        by reverse-mode autodiff, one cotangent per degree of freedom (torch.func.jacrev, vmapped over
        configurations; measured faster here than forward mode). Yields chunks (start, J)."""
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

    def _prior_sample(self, n: int, generator) -> torch.Tensor:
        a = self._anchor
        std1 = float(self.schedule.std(torch.tensor(1.0, dtype=torch.float64)))
        x = std1 * torch.randn((n, *self.config_shape), generator=generator, device=a.device, dtype=a.dtype)
        return wrap(x) if self.periodic else x

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
        x = self._prior_sample(n, generator)
        log_q = self.prior_log_prob(x) if with_density else torch.full((n,), math.nan, dtype=torch.float64)
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
        """x with Phi(x) = y: damped Newton on r(x) = Phi(x) - y with the exact step Jacobians, from the
        fixed-point guess x = y - Delta(y); where a full step does not lower the residual it is halved
        (up to 30 times); to INVERSE_TOL in max norm."""
        view = (-1, *[1] * len(self.config_shape))
        x = y - self._ode_increment(y, t0, t1)
        r, norm = self._residual(x, y, t0, t1)
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
