"""What every Markov-chain sampler provides to the chain runner (samplers/chain.py).

A sampler is a small mutable dataclass holding its (tunable) settings, with
    name: str                                   -- the --algorithm value
    diagnostics: tuple[str, ...]                -- per-configuration fields besides action, accept
    check(theory) -> None                       -- raise ValueError if it cannot run this theory
    update(theory, q, rng) -> UpdateInfo        -- one sweep / trajectory, q changed in place
    adapt(info, k, compact) -> None             -- tuning after thermalization update k
                                                   (compact: angle variables, widths <= pi)
    settings() -> dict                          -- its settings, stored in the file's attributes
    from_settings(dict)                         -- (classmethod) the sampler the settings describe
    get_state() -> np.ndarray, set_state(a)     -- what the chain state must carry besides the
                                                   configuration (float64 numbers; empty for most)
    report() -> dict                            -- figures for the run summary (e.g. proposal ESS),
                                                   with an optional "warning" line
and optionally, for chain sets (K chains of one setup advanced together, samplers/chain.py),
    update_chains(theory, samplers, qs, rngs) -> list[UpdateInfo]
                                                -- (staticmethod) one update of every chain: row k of
                                                   qs (C-contiguous float64, (K, *config_shape)) by
                                                   samplers[k] with rngs[k], in place
which must be bit for bit ``[s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]``: the
same configurations, the same UpdateInfo, the same draws from each generator in the same order;
independent of the thread count and of which chains are updated together. It batches what the
loop would do chain by chain (one kernel call for all chains: the theory's ``*_chains`` kernels and
``action_batch``), so the per-update Python overhead is paid once per set, not per chain. HMC,
Metropolis, HeatBath and OverRelaxation have one; the runner loops ``update`` for the others.
Samplers see a theory only through its kernels (action, kick, metropolis_sweep, their ``*_chains``
forms) or, for learned proposals, through samplers/proposal.py.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class UpdateInfo(NamedTuple):
    """accept: acceptance of this update (a rate for a sweep, 0/1 for a trajectory);
    dH: energy violation H_final - H_initial of an HMC trajectory (NaN otherwise);
    extra: further per-update diagnostics, by the names in the sampler's ``diagnostics``."""

    accept: float
    dH: float = math.nan
    extra: dict | None = None

    def diagnostic(self, name: str) -> float:
        return self.dH if name == "dH" else self.extra[name]


class Stateless:
    """For samplers whose settings are all they carry between updates."""

    def get_state(self) -> np.ndarray:
        return np.zeros(0)

    def set_state(self, state: np.ndarray) -> None:
        if len(state):
            raise ValueError(f"{self.name} carries no chain state, got {len(state)} numbers")

    def report(self) -> dict:
        return {}


def robbins_monro(log_x: float, accept: float, target: float, k: int) -> float:
    """One Robbins-Monro step towards the target acceptance:
    log x += (accept - target) / (k + 1)^0.6 (steps shrink so the tuned value settles)."""
    return log_x + (accept - target) / (k + 1.0) ** 0.6
