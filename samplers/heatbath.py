"""Heat bath and over-relaxation for the XY model and 2D U(1) gauge theory.

``heatbath``: one update = one sweep in which every spin (link) is drawn exactly from its
conditional distribution given the others, a von Mises density exp(beta |h| cos(theta - arg h))
with h the local field (XY: the sum of the neighbouring spins; U(1): the sum of the link's two
staples). Draws by the Best-Fisher algorithm (lattice/vonmises.py) from the sweep's counter
stream, keyed by one 64-bit draw of the chain's generator; checkerboard order (lattice/xy.py,
lattice/u1.py heatbath_kernel). Nothing to tune; acceptance is 1.

``overrelaxation``: one update = one heat-bath (``or_with = "heatbath"``, default) or Metropolis
(``or_with = "metropolis"``, width tuned as in samplers/metropolis.py) sweep followed by
``or_per_sweep`` = K over-relaxation sweeps theta -> 2 arg h - theta (default K = 3). The
reflection keeps S exactly and is its own inverse, so it leaves exp(-S) invariant but moves the
chain far along the surface of constant action (F. R. Brown and T. J. Woch, PRL 58 (1987) 2394;
M. Creutz, PRD 36 (1987) 515); the heat-bath / Metropolis sweep makes the mixture ergodic. K = 0
is plain heat bath (or Metropolis). The stored acceptance is that of the heat-bath / Metropolis
sweep (1 for heat bath). Compare costs per update: an update is 1 + K sweeps.

Chain sets: ``update_chains`` of both samplers updates K chains (rows of one array, each with its
own generator) with one kernel call per kind of sweep (the theory's ``heatbath_sweep_chains``,
``metropolis_sweep_chains``, ``overrelax_sweep_chains``: each chain by the single-configuration
sweep, the chains in parallel when the work pays for it), bit for bit ``update`` on each chain.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lattice.rng import new_key, new_keys

from .base import Stateless, UpdateInfo, robbins_monro
from .metropolis import Metropolis, sweep_chains

OR_WITH = ("heatbath", "metropolis")


def check_local_theory(theory, algorithm: str) -> None:
    """Refuse (one line) a theory without von Mises conditionals or with an odd extent."""
    check = getattr(theory, "check_heatbath", None)
    if check is None:
        raise ValueError(f"{algorithm} is for compact theories with a von Mises conditional (xy, u1), "
                         f"not {theory.name}")
    check()


@dataclass
class HeatBath(Stateless):
    """Exact heat-bath sweeps (the module docstring)."""

    name = "heatbath"
    diagnostics = ()

    def check(self, theory) -> None:
        check_local_theory(theory, self.name)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        theory.heatbath_sweep(q, new_key(rng))
        return UpdateInfo(1.0)

    @staticmethod
    def update_chains(theory, samplers: list[HeatBath], qs: np.ndarray,
                      rngs: list[np.random.Generator]) -> list[UpdateInfo]:
        """One heat-bath sweep of every chain: row k of ``qs`` (C-contiguous float64) with one key from
        ``rngs[k]``, in place, one kernel call; bit for bit ``[s.update(theory, q, r) for ...]``."""
        if len(samplers) == 1 or not hasattr(theory, "heatbath_sweep_chains"):
            return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]
        if len(rngs) != len(qs):
            raise ValueError(f"update_chains: {len(rngs)} generators for {len(qs)} chains")
        theory.heatbath_sweep_chains(qs, new_keys(rngs))
        return [UpdateInfo(1.0) for _ in samplers]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        pass

    def settings(self) -> dict:
        return {}

    @classmethod
    def from_settings(cls, settings: dict) -> "HeatBath":
        return cls(**settings)


@dataclass
class OverRelaxation(Stateless):
    """One heat-bath or Metropolis sweep, then ``or_per_sweep`` over-relaxation sweeps (the module docstring)."""

    or_per_sweep: int = 3
    or_with: str = "heatbath"
    delta: float = 0.5  # or_with = "metropolis": proposal width, tuned during thermalization
    target_accept: float = 0.5

    name = "overrelaxation"
    diagnostics = ()

    def check(self, theory) -> None:
        check_local_theory(theory, self.name)
        if self.or_with not in OR_WITH:
            raise ValueError(f"--or-with must be one of {', '.join(OR_WITH)}, got {self.or_with!r}")
        if not (isinstance(self.or_per_sweep, (int, np.integer)) and self.or_per_sweep >= 0):
            raise ValueError(f"--or-per-sweep must be an integer >= 0, got {self.or_per_sweep}")
        if self.or_with == "metropolis":
            Metropolis(self.delta, self.target_accept).check(theory)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        key = new_key(rng)
        if self.or_with == "metropolis":
            accept = theory.metropolis_sweep(q, self.delta, key) / theory.n_dof
        else:
            theory.heatbath_sweep(q, key)
            accept = 1.0
        for _ in range(self.or_per_sweep):
            theory.overrelax_sweep(q)
        return UpdateInfo(accept)

    @staticmethod
    def update_chains(theory, samplers: list[OverRelaxation], qs: np.ndarray,
                      rngs: list[np.random.Generator]) -> list[UpdateInfo]:
        """One update of every chain: row k of ``qs`` (C-contiguous float64) by ``samplers[k]`` with
        ``rngs[k]``, in place; bit for bit ``[s.update(theory, q, r) for ...]``. Batched: the K
        heat-bath (or Metropolis, each chain with its own width) sweeps in one kernel call, then the
        or_per_sweep over-relaxation sweeps of all chains in one. One chain, or samplers that differ
        in or_with / or_per_sweep: the per-chain loop."""
        first = samplers[0]
        if (len(samplers) == 1 or not hasattr(theory, "overrelax_sweep_chains")
                or any((s.or_with, s.or_per_sweep) != (first.or_with, first.or_per_sweep) for s in samplers)):
            return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]
        if len(rngs) != len(qs):
            raise ValueError(f"update_chains: {len(rngs)} generators for {len(qs)} chains")
        keys = new_keys(rngs)
        if first.or_with == "metropolis":
            accepts = sweep_chains(theory, qs, [s.delta for s in samplers], keys)
        else:
            theory.heatbath_sweep_chains(qs, keys)
            accepts = [1.0] * len(samplers)
        if first.or_per_sweep:
            theory.overrelax_sweep_chains(qs, first.or_per_sweep)
        return [UpdateInfo(a) for a in accepts]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        if self.or_with == "metropolis":  # as samplers/metropolis.py
            self.delta = math.exp(robbins_monro(math.log(self.delta), info.accept, self.target_accept, k))
            if compact:
                self.delta = min(self.delta, math.pi)

    def settings(self) -> dict:
        out = {"or_per_sweep": int(self.or_per_sweep), "or_with": self.or_with}
        if self.or_with == "metropolis":
            out.update(delta=self.delta, target_accept=self.target_accept)
        return out

    @classmethod
    def from_settings(cls, settings: dict) -> "OverRelaxation":
        return cls(**settings)
