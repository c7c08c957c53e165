"""plaquette-mh: independence Metropolis-Hastings for 2D U(1) from independent plaquettes (exact).

Each update proposes theta' independently of the current theta: V - 1 plaquettes drawn from the
von Mises density exp(beta cos phi) / (2 pi I_0(beta)), two uniform holonomies and a uniform gauge
transformation, built into links on a maximal tree (lattice/u1_plaquettes.py, where the exact
density q is derived: the map to the links pushes Haar to Haar, so q ~ prod_{x != P_last}
exp(beta cos theta_P(x))). The weight p / q is exp(beta cos theta_P(P_last)) up to a constant, so
theta' is accepted with

    min(1, exp(beta [cos theta_P'(P_last) - cos theta_P(P_last)])),   P_last = (L0 - 1, L1 - 1).

The proposal has the exact plaquette distribution of V - 1 of the V plaquettes and the exact
topology up to the one constrained plaquette; its ESS/N is known in closed form
(``lattice.u1_plaquettes.expected_ess_fraction``: -> I_0(beta)^2 / I_0(2 beta) at large V, independent
of V, ~ 1/sqrt(pi beta) at large beta), so the acceptance does not fall with the volume and
tau_int(Q) stays O(1) where local updates freeze the charge.

Random numbers per update: one 64-bit key from the chain's generator (``lattice.rng.new_key``: the
whole proposal is a function of it), then one uniform ``rng.random()`` for the accept step, both
drawn whatever the outcome. The weight of the current configuration is recomputed from it at every
update, so the sampler carries no chain state (``get_state`` is empty) and any start is valid.
``report()``: the acceptance, the measured ESS/N of this invocation's proposals and the derived one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lattice.rng import new_key
from lattice.u1_plaquettes import expected_ess_fraction, imh_kernel

from .base import Stateless, UpdateInfo


@dataclass
class WeightTally:
    """Running ESS/N = (sum w)^2 / (N sum w^2) of log-weights (samplers.weights.ess_fraction without
    keeping the weights): sums of exp(log w - m) and exp(2 (log w - m)) with m the largest log w so
    far, rescaled when m grows."""

    n: int = 0
    top: float = -math.inf
    s1: float = 0.0
    s2: float = 0.0

    def add(self, log_w: float) -> None:
        if log_w > self.top:
            scale = math.exp(self.top - log_w) if self.n else 0.0
            self.s1 *= scale
            self.s2 *= scale * scale
            self.top = log_w
        e = math.exp(log_w - self.top)
        self.s1 += e
        self.s2 += e * e
        self.n += 1

    def ess_fraction(self) -> float:
        return self.s1 * self.s1 / (self.n * self.s2) if self.n else math.nan


@dataclass
class PlaquetteMH(Stateless):
    """Independence MH with the plaquette proposal (the module docstring); nothing to tune."""

    name = "plaquette-mh"
    diagnostics = ()

    weights: WeightTally = field(default_factory=WeightTally, repr=False, compare=False)
    n_accepted: int = field(default=0, repr=False, compare=False)
    _setup: tuple = field(default=(), repr=False, compare=False)  # (beta, V) of the last update
    _scratch: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def check(self, theory) -> None:
        if getattr(theory, "name", None) != "u1":
            raise ValueError(f"plaquette-mh draws independent U(1) plaquettes: it is for the 2D u1 gauge theory, "
                             f"not {getattr(theory, 'name', theory)}")

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        key = new_key(rng)
        u = rng.random()
        shape = (4,) + q.shape[1:]
        if self._scratch.shape != shape:
            self._scratch = np.empty(shape)
        beta = float(theory.beta)
        self._setup = (beta, shape[1] * shape[2])
        accepted, c_new = imh_kernel(q, beta, key, u, self._scratch)
        self.weights.add(beta * c_new)
        self.n_accepted += int(accepted)
        return UpdateInfo(1.0 if accepted else 0.0)

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        pass

    def settings(self) -> dict:
        return {}

    @classmethod
    def from_settings(cls, settings: dict) -> "PlaquetteMH":
        return cls(**settings)

    def report(self) -> dict:
        """Proposals of this invocation (thermalization included), their MH acceptance, measured ESS/N
        (as samplers.weights.ess_fraction) and the derived ESS/N at this beta and volume."""
        n = self.weights.n
        if not n:
            return {}
        beta, volume = self._setup
        return {"proposals": n, "acceptance_mh": self.n_accepted / n, "proposal_ess": self.weights.ess_fraction(),
                "proposal_ess_expected": expected_ess_fraction(beta, volume)}
