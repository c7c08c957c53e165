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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lattice.rng import new_key

from .base import Stateless, UpdateInfo, robbins_monro
from .metropolis import Metropolis

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
