"""Wolff single-cluster updates mixed with local Metropolis sweeps.

XY: Wolff's embedding (U. Wolff, PRL 62 (1989) 361): a random reflection axis r, bonds between
neighbours with probability 1 - exp(min(0, -2 beta (s_x . r)(s_y . r))), the cluster's spins
reflected s -> s - 2 (s . r) r. phi^4: Brower-Tamayo embedded Ising clusters (PRL 62 (1989) 1087)
on the signs of phi, bond probability 1 - exp(min(0, -2 A phi_x phi_y)) with A the hopping
coefficient of S = sum_x [-A sum_mu phi phi_{x+mu} + B phi^2 + C phi^4] (A = 2 kappa, or 2 for the
flow-paper form), the cluster's signs flipped. Kernels: lattice/cluster.py, lattice/xy.py,
lattice/phi4.py (``theory.wolff_update(q, key)``, one fresh 64-bit key per cluster).

One chain update = ``metropolis_sweeps`` Metropolis sweeps (samplers/metropolis.py, the same kernel
and width tuning) followed by ``clusters_per_sweep`` single-cluster updates. Every piece leaves
exp(-S) invariant, so their composition does. phi^4 needs >= 1 sweep (the clusters do not change
|phi|); XY may run pure clusters (``metropolis_sweeps = 0``), which are ergodic on their own.

Units: tau_int is measured in these updates. The per-configuration diagnostic ``cluster_fraction``
is the total size of the clusters of the update before the stored configuration divided by V, so
one update costs about

    sweep-equivalents per update = metropolis_sweeps + <cluster_fraction>

(a cluster update touches each of its sites about as often as a sweep does), and
tau_int in sweeps = tau_int in updates x that number. ``accept`` is the Metropolis acceptance of the
update (1 for pure clusters: cluster moves are never rejected). During thermalization the Metropolis
width is tuned to ``target_accept`` (Robbins-Monro, as samplers/metropolis.py), then frozen.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from lattice.rng import new_key

from .base import Stateless, UpdateInfo, robbins_monro


@dataclass
class Wolff(Stateless):
    clusters_per_sweep: int = 1
    metropolis_sweeps: int = 1
    delta: float = 0.5
    target_accept: float = 0.5

    name = "wolff"
    diagnostics = ("cluster_fraction",)

    def __post_init__(self):
        self._updates, self._cluster_sites = 0, 0.0  # for report(): not settings, not chain state

    def check(self, theory) -> None:
        if not hasattr(theory, "check_wolff"):
            raise ValueError(f"the Wolff cluster update is not available for {theory.name}")
        if int(self.clusters_per_sweep) != self.clusters_per_sweep or self.clusters_per_sweep < 1:
            raise ValueError(f"--clusters-per-sweep must be an integer >= 1, got {self.clusters_per_sweep}")
        if int(self.metropolis_sweeps) != self.metropolis_sweeps or self.metropolis_sweeps < 0:
            raise ValueError(f"--metropolis-sweeps must be an integer >= 0, got {self.metropolis_sweeps}")
        theory.check_wolff(self.metropolis_sweeps)
        if not self.delta > 0:
            raise ValueError(f"Metropolis step width must be > 0, got {self.delta}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target acceptance must lie in (0, 1), got {self.target_accept}")

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        accepted = 0
        for _ in range(self.metropolis_sweeps):
            accepted += theory.metropolis_sweep(q, self.delta, new_key(rng))
        size = 0
        for _ in range(self.clusters_per_sweep):
            size += theory.wolff_update(q, new_key(rng))
        self._updates += 1
        self._cluster_sites += size / theory.n_dof
        accept = accepted / (self.metropolis_sweeps * theory.n_dof) if self.metropolis_sweeps else 1.0
        return UpdateInfo(accept, extra={"cluster_fraction": size / theory.n_dof})

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        self._updates, self._cluster_sites = 0, 0.0  # report() covers the updates after tuning
        if not self.metropolis_sweeps:
            return
        self.delta = math.exp(robbins_monro(math.log(self.delta), info.accept, self.target_accept, k))
        if compact:
            self.delta = min(self.delta, math.pi)

    def report(self) -> dict:
        """Mean cluster_fraction over this run's updates (after tuning) and the sweep-equivalents of one update."""
        if not self._updates:
            return {}
        fraction = self._cluster_sites / self._updates
        return {"cluster_fraction": fraction, "sweeps/update": self.metropolis_sweeps + fraction}

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "Wolff":
        return cls(**settings)
