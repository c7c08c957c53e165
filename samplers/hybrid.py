"""Hybrid chain: local updates (HMC trajectories or Metropolis sweeps) alternating with
independence Metropolis-Hastings proposals of a learned model.

One update = ``local_per_proposal`` local updates, then one learned-MH step (samplers/learned_mh.py).
Each step leaves the target exp(-S) invariant, so their composition does too: the chain is exact
whatever the model. The local updates explore where the model is poor; the model's proposals
make the large moves local updates cannot (e.g. between topological sectors). After a local update
has moved the configuration, log q of the new configuration is recomputed exactly (one model pass
on one configuration) before the MH step.

A chain set (``update_chains``) makes the local updates of all chains together (the local
sampler's own ``update_chains``), then computes the log q of every moved configuration in one model
pass and makes the learned-MH steps with shared proposal passes (samplers/learned_mh.py).

Tuning (thermalization only) adapts the local sampler to its target acceptance; the learned-MH
step has nothing to tune. Diagnostics per stored configuration: those of learned-mh plus
``local_accept``, the mean acceptance of the local updates of that update.
"""
from __future__ import annotations

import math

import numpy as np

from .base import UpdateInfo
from .chain import update_chains as update_each_chain
from .hmc import HMC
from .learned_mh import LearnedMH, prepare_chains
from .metropolis import Metropolis

LOCAL = {"hmc": HMC, "metropolis": Metropolis}


class Hybrid:
    name = "hybrid"
    diagnostics = LearnedMH.diagnostics + ("local_accept",)

    def __init__(self, local: dict, proposal: dict, local_per_proposal: int = 1):
        if local.get("algorithm") not in LOCAL:
            raise ValueError(f"hybrid: the local update must be one of {', '.join(LOCAL)}, "
                             f"not {local.get('algorithm')!r}")
        if int(local_per_proposal) < 1:
            raise ValueError(f"--local-per-proposal must be >= 1, got {local_per_proposal}")
        self.local = LOCAL[local["algorithm"]].from_settings(local["settings"])
        self.mh = LearnedMH(proposal)
        self.proposal = self.mh.proposal
        self.local_per_proposal = int(local_per_proposal)
        self._last_local = UpdateInfo(math.nan)

    def check(self, theory) -> None:
        self.local.check(theory)
        self.mh.check(theory)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        accepted = 0.0
        for _ in range(self.local_per_proposal):
            self._last_local = self.local.update(theory, q, rng)
            accepted += self._last_local.accept
        if accepted > 0:
            self.mh.invalidate()
        info = self.mh.update(theory, q, rng)
        return UpdateInfo(info.accept, extra={**info.extra, "local_accept": accepted / self.local_per_proposal})

    @staticmethod
    def update_chains(theory, samplers: list["Hybrid"], qs: np.ndarray, rngs: list) -> list[UpdateInfo]:
        """``update`` of every chain of a set: batched local updates, then one model pass for the log q
        of the moved configurations and shared proposal passes; bitwise what each ``update`` gives
        where the model's batched passes are (samplers/proposal.py)."""
        accepted = np.zeros(len(samplers))
        for _ in range(samplers[0].local_per_proposal):
            infos = update_each_chain(theory, [s.local for s in samplers], qs, rngs)
            for k, (s, info) in enumerate(zip(samplers, infos)):
                s._last_local = info
                accepted[k] += info.accept
        for s, a in zip(samplers, accepted):
            if a > 0:
                s.mh.invalidate()
        mhs = [s.mh for s in samplers]
        prepare_chains(mhs, qs)
        return [UpdateInfo(info.accept, extra={**info.extra, "local_accept": a / s.local_per_proposal})
                for s, a, info in zip(samplers, accepted, (m.update(theory, q, r) for m, q, r in zip(mhs, qs, rngs)))]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        self.local.adapt(self._last_local, k, compact)

    def settings(self) -> dict:
        return {"local": {"algorithm": self.local.name, "settings": self.local.settings()},
                "local_per_proposal": self.local_per_proposal, **self.mh.settings()}

    @classmethod
    def from_settings(cls, settings: dict) -> "Hybrid":
        return cls(settings["local"], settings["proposal"], settings["local_per_proposal"])

    def get_state(self) -> np.ndarray:
        return self.mh.get_state()

    def set_state(self, state: np.ndarray) -> None:
        self.mh.set_state(state)

    def report(self) -> dict:
        return self.mh.stats.report(mh=True, remedy="train longer, or run more local updates per proposal "
                                    "(--local-per-proposal)")
