"""Independence Metropolis-Hastings with a learned proposal, and raw model samples.

learned-mh (e.g. Albergo, Kanwar, Shanahan, PRD 100 (2019) 034515, sec. II C): the proposal x' is
drawn from the model independently of the current x and accepted with probability

    min(1, p(x') q(x) / (p(x) q(x'))) = min(1, exp(log w(x') - log w(x))),   log w = log p - log q,

log p = -S (float64 Numba action), log q exact in float64 (samplers/proposal.py). The chain is
exact whatever the model; a poor model only makes it stick. Proposals come in batches from a
deterministic stream (one model pass per batch), the chain is sequential. One uniform is drawn
from the chain's generator for every proposal, so the random stream does not depend on the
outcome.

model-samples: every update replaces the configuration by the next model sample (accept = 1): the
raw, *biased* model distribution, for reweighting with w = p / q (``observables measure --reweight``).

Per stored configuration the file gets log_q and log_p of that configuration and ``proposal``, the
index of the proposal it came from (-1: not from the model, e.g. the start or a local update).
A fresh chain starts at proposal 0 (``_start``), whatever --init says. The chain state adds three numbers (``get_state``): the next proposal's index, log q of the current
configuration, and its proposal index, so a resumed chain continues bit for bit.

A chain set (``update_chains``) draws the proposal batches its chains need in one model pass
(samplers/proposal.py ``sample_batches``) and the log q of current configurations that are not yet
known (a fresh or resumed chain, or one moved by a local update in a hybrid) in one more; then
each chain makes its own accept step, exactly as ``update`` would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .base import UpdateInfo
from .weights import ess_fraction

# heavy-tail warning: the largest proposal weight w / mean(w) above which a chain that reaches that
# configuration stays there for about that many updates
STICK_RATIO = 100.0


@dataclass
class ProposalStats:
    """What the run summary reports about the proposals of one invocation."""

    log_w: list = field(default_factory=list)
    n_accepted: int = 0
    run: int = 0  # current run of consecutive rejections
    longest_run: int = 0

    def add(self, log_w: float, accepted: bool) -> None:
        self.log_w.append(log_w)
        if accepted:
            self.n_accepted += 1
            self.run = 0
        else:
            self.run += 1
            self.longest_run = max(self.longest_run, self.run)

    def report(self, mh: bool = True, remedy: str = "train longer, or use --algorithm hybrid") -> dict:
        lw = np.asarray(self.log_w, dtype=np.float64)
        out: dict = {"proposals": int(lw.size)}
        if lw.size == 0:
            return out
        if mh:
            out["acceptance_mh"] = self.n_accepted / lw.size
            out["longest_rejection_run"] = self.longest_run
        if np.isnan(lw).all():
            out["note"] = "the model gives no density for its samples (no weights, no proposal ESS)"
            return out
        finite = lw[np.isfinite(lw)]
        out["proposal_ess"] = ess_fraction(lw)
        out["var_log_w"] = float(np.var(finite)) if finite.size else math.nan
        w = np.exp(finite - finite.max()) if finite.size else np.zeros(0)
        ratio = float(w.max() / w.mean()) if w.size else math.inf
        out["max_w_over_mean"] = ratio
        if ratio > STICK_RATIO:
            what = (f"a chain that reaches such a configuration sticks there for ~{ratio:.0f} updates"
                    if mh else "a few samples dominate reweighted averages")
            out["warning"] = (f"heavy tail of log w: the largest proposal weight is {ratio:.3g} x the mean "
                              f"(var log w = {out['var_log_w']:.3g}); {what}: the model rarely proposes a "
                              f"region the target weights heavily. Check tau_int and the ESS; {remedy}")
        return out


class _ModelStream:
    """The part learned-mh and model-samples share: the proposal, its stream position, stats."""

    diagnostics = ("log_q", "log_p", "proposal")

    needs_density = True  # learned-mh and hybrid; model-samples stores whatever log q the model gives

    def _init_stream(self, proposal: dict) -> None:
        from .proposal import ModelProposal  # torch is imported only by chains that use a model

        self.proposal = ModelProposal.from_settings(proposal)
        if self.needs_density and not self.proposal.has_density:
            raise ValueError(f"{self.name} needs the model's exact log q of each proposal; this model samples "
                             "without a density (a diffusion model's reverse SDE: use --model-sampler ode)")
        self.next_index = 0
        self.log_q_current = math.nan  # NaN: unknown, computed from the configuration when needed
        self.log_p_current = math.nan  # -S of the current configuration (not stored: recomputed exactly)
        self.origin = -1
        self.stats = ProposalStats()

    def check(self, theory) -> None:
        self.proposal.check_theory(theory)

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        pass  # nothing to tune

    def settings(self) -> dict:
        return {"proposal": self.proposal.settings()}

    def get_state(self) -> np.ndarray:
        return np.array([self.next_index, self.log_q_current, self.origin], dtype=np.float64)

    def set_state(self, state: np.ndarray) -> None:
        self.next_index, self.log_q_current, self.origin = int(state[0]), float(state[1]), int(state[2])
        self.log_p_current = math.nan

    def invalidate(self) -> None:
        """The configuration was changed by something else (a local update): log q is unknown."""
        self.log_q_current, self.log_p_current, self.origin = math.nan, math.nan, -1

    def _start(self, q: np.ndarray) -> None:
        """A fresh chain starts at proposal 0, whatever configuration it was given: a start in a
        region the model rarely reaches (e.g. a hot start) could hold an independence chain for
        very long, since its weight p / q there can be huge."""
        _, x, self.log_q_current = self._next_proposal()
        q[...] = x
        self.log_p_current, self.origin = math.nan, 0

    def _next_proposal(self):
        i = self.next_index
        x, log_q = self.proposal.proposal(i)
        self.next_index += 1
        return i, x, log_q


def prepare_chains(streams: list[_ModelStream], qs: np.ndarray, known_log_q: bool = True) -> None:
    """Make the next ``update`` of every stream in a chain set need no model pass of its own: one
    pass for the proposal batches the streams are about to enter (a fresh chain also needs proposal
    0 for its start, ``_start``, and then proposal 1, both in batch 0), and, with ``known_log_q``, one
    for the log q of the current configurations that are unknown (NaN). Only when each stream is
    served as ``update`` would serve it alone (the same batches, the same log q)."""
    from .proposal import sample_batches

    need, batches = [], []
    for s in streams:
        b = s.proposal.needs_batch(s.next_index + (1 if s.next_index == 0 and s.needs_start else 0))
        if b is not None and b == s.proposal.needs_batch(s.next_index):
            need.append(s)
            batches.append(b)
    for s, content, b in zip(need, sample_batches([s.proposal for s in need], batches), batches):
        s.proposal.hold_batch(b, content)
    if known_log_q:
        unknown = [k for k, s in enumerate(streams) if s.next_index > 0 and math.isnan(s.log_q_current)]
        if unknown:
            lq = streams[unknown[0]].proposal.log_q_batch(np.ascontiguousarray(qs[unknown]))
            for k, value in zip(unknown, lq):
                streams[k].log_q_current = float(value)


class LearnedMH(_ModelStream):
    """Independence Metropolis-Hastings with a trained model as the proposal."""

    name = "learned-mh"
    needs_start = True

    def __init__(self, proposal: dict):
        self._init_stream(proposal)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        if self.next_index == 0:
            self._start(q)
        if math.isnan(self.log_q_current):
            self.log_q_current = self.proposal.log_q(q)
        if math.isnan(self.log_p_current):
            self.log_p_current = -theory.action(q)
        log_w_current = self.log_p_current - self.log_q_current
        i, x, log_q = self._next_proposal()
        log_p = -theory.action(x)
        log_ratio = (log_p - log_q) - log_w_current
        u = rng.random()
        accept = log_ratio >= 0 or u < math.exp(log_ratio)  # NaN (a broken proposal) is rejected
        self.stats.add(log_p - log_q, accept)
        if accept:
            q[...] = x
            self.log_q_current, self.log_p_current, self.origin = log_q, log_p, i
        return UpdateInfo(float(accept), extra={"log_q": self.log_q_current, "log_p": self.log_p_current,
                                                "proposal": self.origin})

    def report(self) -> dict:
        return self.stats.report(mh=True)

    @staticmethod
    def update_chains(theory, samplers: list["LearnedMH"], qs: np.ndarray, rngs: list) -> list[UpdateInfo]:
        """``update`` of every chain of a set, with shared model passes (``prepare_chains``)."""
        prepare_chains(samplers, qs)
        return [s.update(theory, q, rng) for s, q, rng in zip(samplers, qs, rngs)]

    @classmethod
    def from_settings(cls, settings: dict) -> "LearnedMH":
        return cls(settings["proposal"])


class ModelSamples(_ModelStream):
    """Independent draws of the model itself (not an exact chain: reweight with log w)."""

    name = "model-samples"
    needs_density = False
    needs_start = False

    def __init__(self, proposal: dict):
        self._init_stream(proposal)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        i, x, log_q = self._next_proposal()
        q[...] = x
        log_p = -theory.action(q)
        self.log_q_current, self.origin = log_q, i
        self.stats.add(log_p - log_q, True)
        return UpdateInfo(1.0, extra={"log_q": log_q, "log_p": log_p, "proposal": i})

    def report(self) -> dict:
        return self.stats.report(mh=False, remedy="train longer (reweighted averages rest on a few samples)")

    @staticmethod
    def update_chains(theory, samplers: list["ModelSamples"], qs: np.ndarray, rngs: list) -> list[UpdateInfo]:
        """``update`` of every chain of a set, the proposal batches drawn in one model pass."""
        prepare_chains(samplers, qs, known_log_q=False)
        return [s.update(theory, q, rng) for s, q, rng in zip(samplers, qs, rngs)]

    @classmethod
    def from_settings(cls, settings: dict) -> "ModelSamples":
        return cls(settings["proposal"])
