"""Local Metropolis: sweeps of single-variable updates x' = x + delta (2u - 1).

Each sweep visits every site (link) once through the theory's ``metropolis_sweep`` kernel
(a checkerboard order, so one colour is updated in parallel), with the random numbers of
the sweep drawn from the counter stream keyed by one 64-bit draw of the chain's generator
(lattice/rng.py). The width delta is tuned during thermalization to a target acceptance,
then frozen; for angle variables delta <= pi.

Chain sets: ``Metropolis.update_chains`` sweeps K chains (rows of one array, each with its own
width and generator) in one call of the theory's ``metropolis_sweep_chains`` (each chain by the
single-configuration sweep; the chains in parallel when the work pays for it), bit for bit
``update`` on each chain.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lattice.rng import new_key, new_keys

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

    @staticmethod
    def update_chains(theory, samplers: list[Metropolis], qs: np.ndarray,
                      rngs: list[np.random.Generator]) -> list[UpdateInfo]:
        """One sweep of every chain: row k of ``qs`` (C-contiguous float64, (K, *config_shape)) with
        width ``samplers[k].delta`` and one key from ``rngs[k]``, in place; bit for bit
        ``[s.update(theory, q, r) for ...]``. Batched: the K sweeps, one kernel call. One chain, or a
        theory without chain kernels: the per-chain loop."""
        if len(samplers) == 1 or not hasattr(theory, "metropolis_sweep_chains"):
            return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]
        accepted = sweep_chains(theory, qs, [s.delta for s in samplers], new_keys(rngs))
        return [UpdateInfo(a) for a in accepted]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        self.delta = math.exp(robbins_monro(math.log(self.delta), info.accept, self.target_accept, k))
        if compact:
            self.delta = min(self.delta, math.pi)

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "Metropolis":
        return cls(**settings)


def sweep_chains(theory, qs: np.ndarray, deltas: list[float], keys: np.ndarray) -> list[float]:
    """One Metropolis sweep of each row of qs (width deltas[k], key keys[k]); the acceptance rate of
    each, as ``update`` computes it (accepted count / n_dof)."""
    if len(deltas) != len(qs) or len(keys) != len(qs):
        raise ValueError(f"update_chains: {len(deltas)} samplers and {len(keys)} generators for {len(qs)} chains")
    n = theory.n_dof
    return [a / n for a in theory.metropolis_sweep_chains(qs, np.array(deltas, dtype=np.float64), keys).tolist()]
