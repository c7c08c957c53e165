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
Samplers see a theory only through its kernels (action, kick, metropolis_sweep).
"""
from __future__ import annotations

import math
from typing import NamedTuple


class UpdateInfo(NamedTuple):
    """accept: acceptance of this update (a rate for a sweep, 0/1 for a trajectory);
    dH: energy violation H_final - H_initial of an HMC trajectory (NaN otherwise)."""

    accept: float
    dH: float = math.nan


def robbins_monro(log_x: float, accept: float, target: float, k: int) -> float:
    """One Robbins-Monro step towards the target acceptance:
    log x += (accept - target) / (k + 1)^0.6 (steps shrink so the tuned value settles)."""
    return log_x + (accept - target) / (k + 1.0) ** 0.6
