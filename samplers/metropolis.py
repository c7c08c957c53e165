"""Local Metropolis: sweeps of single-variable updates x' = x + delta (2u - 1).

Each sweep visits every site (link) once through the theory's ``metropolis_sweep`` kernel
(a checkerboard order, so one colour is updated in parallel), with the random numbers of
the sweep drawn from the counter stream keyed by one 64-bit draw of the chain's generator
(lattice/rng.py). The width delta is tuned during thermalization to a target acceptance,
then frozen; for angle variables delta <= pi.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lattice.rng import new_key

from .base import Stateless, UpdateInfo, robbins_monro


@dataclass
class Metropolis(Stateless):
    delta: float = 0.5
    target_accept: float = 0.5

    name = "metropolis"
    diagnostics = ()

    def check(self, theory) -> None:
        theory.check_metropolis()
        if not (self.delta > 0 and math.isfinite(self.delta)):
            raise ValueError(f"Metropolis step width must be > 0, got {self.delta}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target acceptance must lie in (0, 1), got {self.target_accept}")

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        accepted = theory.metropolis_sweep(q, self.delta, new_key(rng))
        return UpdateInfo(accepted / theory.n_dof)

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        self.delta = math.exp(robbins_monro(math.log(self.delta), info.accept, self.target_accept, k))
        if compact:
            self.delta = min(self.delta, math.pi)

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "Metropolis":
        return cls(**settings)
