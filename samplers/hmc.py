"""Hybrid Monte Carlo (Duane, Kennedy, Pendleton, Roweth, PLB 195 (1987) 216).

One trajectory: draw p ~ N(0, 1), integrate Hamilton's equations of H = p^2/2 + S(q) for
n_steps steps of size eps (samplers/integrators.py), accept the end point with probability
min(1, exp(-dH)). During thermalization eps is tuned to a target acceptance with the
trajectory length tau = n_steps eps held near ``traj_length`` (n_steps = round(tau / eps)),
then frozen. Angle fields are wrapped back to [-pi, pi) after each trajectory (S is periodic).

Jitter: each trajectory uses the step eps (1 + jitter (2u - 1)), u uniform, drawn before and
independently of the trajectory, so every trajectory is still reversible and the chain exact
(a mixture of exact kernels). Without it a mode whose period is close to 2 tau / k barely
moves (for the free field q -> -q at omega tau = pi) and its autocorrelation time explodes
(P. B. Mackenzie, Phys. Lett. B 226 (1989) 369).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lattice.fastmath import wrap_angles
from lattice.rng import new_key, normals

from .base import Stateless, UpdateInfo, robbins_monro
from .integrators import INTEGRATORS


@dataclass
class HMC(Stateless):
    step_size: float = 0.1
    traj_length: float = 1.0
    integrator: str = "leapfrog"
    target_accept: float = 0.8
    n_steps: int = 0  # 0: round(traj_length / step_size)
    jitter: float = 0.2  # relative half-width of the per-trajectory step size

    name = "hmc"
    diagnostics = ("dH",)

    def __post_init__(self):
        for name in ("step_size", "traj_length"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"HMC {name.replace('_', ' ')} must be a finite number > 0, got {value}")
        if self.n_steps <= 0:
            self.n_steps = max(1, round(self.traj_length / self.step_size))

    def check(self, theory) -> None:
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r}; choose from {', '.join(INTEGRATORS)}")
        if not self.step_size > 0 or not self.traj_length > 0:
            raise ValueError("HMC step size and trajectory length must be > 0")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target acceptance must lie in (0, 1), got {self.target_accept}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"HMC jitter must lie in [0, 1), got {self.jitter}")

    def trajectory(self, theory, q: np.ndarray, p: np.ndarray, step_size: float | None = None) -> None:
        """Integrate (q, p) in place over one trajectory (of n_steps steps of ``step_size``)."""
        INTEGRATORS[self.integrator](theory, q, p, step_size or self.step_size, self.n_steps)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        p = normals(new_key(rng), np.empty(q.shape))  # exact N(0, 1) by the Ziggurat, keyed by one 64-bit draw
        eps = self.step_size * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))
        q_new = q.copy()
        h_old = 0.5 * float(np.dot(p.reshape(-1), p.reshape(-1))) + theory.action(q)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trajectory gives dH = inf/NaN: rejected
            self.trajectory(theory, q_new, p, eps)
            if theory.compact:
                wrap_angles(q_new)
            h_new = 0.5 * float(np.dot(p.reshape(-1), p.reshape(-1))) + theory.action(q_new)
        dH = h_new - h_old
        u = rng.random()  # drawn on every trajectory, so the stream does not depend on dH
        accept = dH <= 0 or u < math.exp(-dH)  # a NaN dH (blown-up trajectory) is rejected
        if accept:
            q[...] = q_new
        return UpdateInfo(float(accept), dH)

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        p_acc = min(1.0, math.exp(-info.dH)) if math.isfinite(info.dH) else 0.0
        self.step_size = math.exp(robbins_monro(math.log(self.step_size), p_acc, self.target_accept, k))
        self.step_size = min(self.step_size, self.traj_length)
        self.n_steps = max(1, round(self.traj_length / self.step_size))

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "HMC":
        return cls(**settings)
