"""The one function that runs Markov chains: ``run_chains`` (``run_chain`` is its one-chain case).
The CLI ``python -m generate`` is a thin layer over it, so a notebook gets exactly what the CLI gets.

A chain is (theory, sampler, ChainState). The state holds everything needed to continue:
the current configuration, the numpy Generator (PCG64) that drives all randomness, and the
counters. Saving the state after a stored configuration and loading it later continues the
chain exactly (samplers/ensemble.py stores it at every flush).

A chain set is K chains of one setup, each with its own sampler (its own tuned settings and
stream position), state and writer, advanced together: their configurations are the rows of one
(K, *config_shape) array, and one update of the set is one call of the sampler class's
``update_chains`` (samplers/base.py; a per-chain loop where a sampler has none). Chain k is
defined by (seed, k) alone (``chain_rng``), so what it produces does not depend on K, on which
chains run beside it, or on the thread count.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm



INITS = ("hot", "cold", "ordered")


def chain_seed(seed: int, chain: int = 0) -> np.random.SeedSequence:
    """The seed sequence of chain ``chain`` of a set with seed ``seed``: chain 0 is the plain
    ``SeedSequence(seed)`` of a single chain (so a single chain and chain 0 of any set are the same
    chain); chain k > 0 is its k-th spawned child, ``SeedSequence(seed, spawn_key=(k,))``, whose
    state differs from that of any other (seed, k)."""
    if chain < 0:
        raise ValueError(f"chain numbers are >= 0, got {chain}")
    return np.random.SeedSequence(seed, spawn_key=(chain,) if chain else ())


def chain_rng(seed: int, chain: int = 0) -> np.random.Generator:
    """The generator (PCG64) that drives chain ``chain`` of the set with seed ``seed``."""
    return np.random.Generator(np.random.PCG64(chain_seed(seed, chain)))


@dataclass
class ChainState:
    config: np.ndarray
    rng: np.random.Generator
    n_stored: int = 0
    n_updates: int = 0  # updates since the end of thermalization
    thermalized: bool = False
    sampler_state: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sampler.get_state()

    @classmethod
    def start(cls, theory, seed: int, init: str = "hot", chain: int = 0) -> "ChainState":
        """A fresh chain number ``chain`` of a set: hot (random), cold (zero field / unit links) or
        ordered (the theory's ``ordered_config``: phi4 a uniform broken-phase field of seed-chosen sign,
        xy and u1 cold) start."""
        rng = chain_rng(seed, chain)
        if init == "hot":
            config = theory.random_config(rng)
        elif init == "cold":
            config = np.zeros(theory.config_shape)
        elif init == "ordered":
            config = theory.ordered_config(rng)
        else:
            raise ValueError(f"unknown start {init!r}; choose {', '.join(INITS)}")
        return cls(np.ascontiguousarray(config, dtype=np.float64), rng)


class Writer(Protocol):
    def begin(self, state: ChainState, settings: dict) -> None: ...
    def append(self, config: np.ndarray, action: float, info: dict) -> None: ...
    def flush(self, state: ChainState) -> None: ...
    def finish(self, summary: "RunSummary") -> None: ...


@dataclass
class MemoryWriter:
    """Keeps the chain in memory (for notebooks and tests)."""

    configs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    diagnostics: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def begin(self, state, settings):
        self.settings = dict(settings)

    def append(self, config, action, info):
        self.configs.append(config.copy())
        self.actions.append(action)
        for k, v in info.items():
            self.diagnostics.setdefault(k, []).append(v)

    def flush(self, state):
        pass

    def finish(self, summary):
        pass

    def arrays(self) -> tuple[np.ndarray, np.ndarray, dict]:
        return np.array(self.configs), np.array(self.actions), {k: np.array(v) for k, v in self.diagnostics.items()}


@dataclass
class RunSummary:
    n_configs: int
    n_updates: int
    acceptance: float
    wall_time: float  # seconds of updates, without compile and thermalization
    therm_time: float
    compile_time: float
    settings: dict
    mean_exp_mdH: float = math.nan
    report: dict = field(default_factory=dict)  # the sampler's own figures (sampler.report())

    @property
    def rate(self) -> float:
        return self.n_configs / self.wall_time if self.wall_time > 0 else math.inf

    def lines(self) -> list[str]:
        out = [
            f"configurations: {self.n_configs} stored ({self.n_updates} updates after thermalization)",
            f"acceptance:     {self.acceptance:.3f}",
            f"time:           {self.wall_time:.2f} s sampling, {self.therm_time:.2f} s thermalization, "
            f"{self.compile_time:.2f} s compile/load",
            f"rate:           {self.rate:.1f} configs/s",
            "settings:       " + _format_settings(self.settings),
        ]
        if math.isfinite(self.mean_exp_mdH):
            out.append(f"<exp(-dH)>:     {self.mean_exp_mdH:.4f}")
        for k, v in self.report.items():
            if k != "warning":
                out.append(f"{k + ':':<15} {v:.4g}" if isinstance(v, float) else f"{k + ':':<15} {v}")
        if "warning" in self.report:
            out.append(f"WARNING:        {self.report['warning']}")
        return out


def _format_settings(settings: dict) -> str:
    def fmt(k, v):
        if isinstance(v, dict):
            return f"{k}=({_format_settings(v)})"
        if k == "sha256":
            return f"{k}={v[:12]}"
        return f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
    return ", ".join(fmt(k, v) for k, v in settings.items())


def warm_up(theory, sampler) -> float:
    """Compile (or load from cache) the theory's kernels on a throw-away configuration; seconds taken.
    (A local sampler is warmed up on a copy of itself, through the batched path too; a model-based
    one is left alone: its first update pays its own start-up.)"""
    t0 = time.perf_counter()
    q = np.ascontiguousarray(theory.random_config(np.random.default_rng(0)))
    if not sampler.get_state().size:
        copies = [type(sampler).from_settings(sampler.settings()) for _ in range(2)]
        update_chains(theory, copies, np.stack([q, q]), [np.random.default_rng(k) for k in range(2)])
        copies[0].update(theory, q, np.random.default_rng(0))
    theory.action(q)
    return time.perf_counter() - t0


def update_chains(theory, samplers: list, qs: np.ndarray, rngs: list) -> list:
    """One update of every chain: row i of ``qs`` by ``samplers[i]`` with ``rngs[i]``, in place; the
    sampler class's batched ``update_chains`` where it has one (bitwise the per-chain loop)."""
    batched = getattr(type(samplers[0]), "update_chains", None)
    if batched is not None:
        return batched(theory, samplers, qs, rngs)
    return [s.update(theory, q, rng) for s, q, rng in zip(samplers, qs, rngs)]


def _update_some(theory, samplers: list, configs: np.ndarray, rngs: list, chains: list[int]) -> list:
    """``update_chains`` on the chains numbered ``chains`` (rows of ``configs``), the others untouched."""
    if len(chains) == len(samplers):
        return update_chains(theory, samplers, configs, rngs)
    qs = np.ascontiguousarray(configs[chains])
    infos = update_chains(theory, [samplers[k] for k in chains], qs, [rngs[k] for k in chains])
    configs[chains] = qs
    return infos


def run_chain(theory, sampler, state: ChainState, n_configs: int, every: int = 1, n_therm: int = 0,
              writer: Writer | None = None, progress: bool = False, flush_seconds: float = 10.0,
              flush_configs: int = 256, tune: bool = True) -> RunSummary:
    """One chain: ``run_chains`` with K = 1 (see there)."""
    return run_chains(theory, [sampler], [state], n_configs, every, n_therm,
                      None if writer is None else [writer], progress, flush_seconds, flush_configs, tune)[0]


@dataclass
class _Tally:
    """One chain's running totals in one invocation."""

    n_start: int
    acc_sum: float = 0.0
    n_acc: int = 0
    exp_mdH: list = field(default_factory=list)


def run_chains(theory, samplers: list, states: list[ChainState], n_configs: int, every: int = 1,
               n_therm: int = 0, writers: list | None = None, progress: bool = False,
               flush_seconds: float = 10.0, flush_configs: int = 256, tune: bool = True) -> list[RunSummary]:
    """Run every chain until its ``state.n_stored == n_configs``, storing every ``every``-th update.

    Chains that are not yet thermalized first make ``n_therm`` updates, discarded; with ``tune``
    they also tune their samplers (``sampler.adapt``), whose settings are frozen afterwards. Each
    writer sees its chain's tuned settings (``begin``), every stored configuration with its action
    and diagnostics (``append``), and the chain's state after its last stored configuration at every
    flush: at most ``flush_configs`` configurations or ``flush_seconds`` apart, and at its end. The
    states are advanced in place (their configurations become rows of one array); the chains may
    start at different points (a resumed set), each stops at ``n_configs``. One summary per chain.
    """
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if n_therm < 0:
        raise ValueError(f"thermalization length must be >= 0, got {n_therm}")
    if not len(samplers) == len(states) >= 1:
        raise ValueError("run_chains needs one sampler per state, and at least one chain")
    for sampler in samplers:
        sampler.check(theory)
    writers = writers if writers is not None else [MemoryWriter() for _ in states]
    compile_time = warm_up(theory, samplers[0])
    configs = states[0].config[None] if len(states) == 1 else np.stack([s.config for s in states])
    rngs = [s.rng for s in states]
    for k, (state, sampler) in enumerate(zip(states, samplers)):
        state.config = configs[k]
        if state.sampler_state.size:
            sampler.set_state(state.sampler_state)

    t0 = time.perf_counter()
    cold = [k for k, s in enumerate(states) if not s.thermalized]
    if cold:
        for i in tqdm(range(n_therm), desc="thermalizing", disable=not progress, leave=False):
            infos = _update_some(theory, samplers, configs, rngs, cold)
            if tune:
                for k, info in zip(cold, infos):
                    samplers[k].adapt(info, i, theory.compact)
        for k in cold:
            states[k].thermalized = True
    therm_time = time.perf_counter() - t0
    for state, sampler, writer in zip(states, samplers, writers):
        state.sampler_state = sampler.get_state()
        writer.begin(state, sampler.settings())

    t0 = time.perf_counter()
    tallies = [_Tally(s.n_stored) for s in states]
    last_flush, since_flush = time.perf_counter(), 0
    what = f"{theory.name} {samplers[0].name}" + (f", {len(states)} chains" if len(states) > 1 else "")
    bar = tqdm(total=n_configs * len(states), initial=sum(min(s.n_stored, n_configs) for s in states),
               desc=what, unit="cfg", disable=not progress, smoothing=0.1)
    running = [k for k, s in enumerate(states) if s.n_stored < n_configs]
    while running:
        acc = np.zeros(len(running))
        for _ in range(every):
            infos = _update_some(theory, samplers, configs, rngs, running)
            for j, (k, info) in enumerate(zip(running, infos)):
                acc[j] += info.accept
                if math.isfinite(info.dH):
                    tallies[k].exp_mdH.append(math.exp(-info.dH) if info.dH > -700 else math.inf)
        actions = theory.action_batch(configs if len(running) == len(states) else configs[running])
        for j, (k, info) in enumerate(zip(running, infos)):
            state, tally = states[k], tallies[k]
            state.n_updates += every
            state.n_stored += 1
            tally.acc_sum += acc[j]
            tally.n_acc += every
            diag = {"accept": acc[j] / every, **{name: info.diagnostic(name) for name in samplers[k].diagnostics}}
            writers[k].append(configs[k], float(actions[j]), diag)  # action_batch: bitwise ``action`` of each
        since_flush += 1
        now = time.perf_counter()
        due = since_flush >= flush_configs or now - last_flush > flush_seconds
        for k in running:
            if due or states[k].n_stored == n_configs:
                states[k].sampler_state = samplers[k].get_state()
                writers[k].flush(states[k])
        if due:
            last_flush, since_flush = now, 0
        if progress:
            bar.update(len(running))
            acc_all = sum(t.acc_sum for t in tallies) / max(1, sum(t.n_acc for t in tallies))
            bar.set_postfix(acc=f"{acc_all:.3f}", refresh=False)
        running = [k for k in running if states[k].n_stored < n_configs]
    bar.close()
    wall = time.perf_counter() - t0
    summaries = []
    for state, sampler, writer, tally in zip(states, samplers, writers, tallies):
        summary = RunSummary(
            n_configs=state.n_stored - tally.n_start,
            n_updates=tally.n_acc,
            acceptance=tally.acc_sum / tally.n_acc if tally.n_acc else math.nan,
            wall_time=wall,
            therm_time=therm_time,
            compile_time=compile_time,
            settings=sampler.settings(),
            mean_exp_mdH=float(np.mean(tally.exp_mdH)) if tally.exp_mdH else math.nan,
            report=sampler.report(),
        )
        writer.finish(summary)
        summaries.append(summary)
    return summaries


def set_lines(summaries: list[RunSummary], names: list[str], files: list | None = None,
              workers: tuple[int, float] | None = None) -> list[str]:
    """The run summary of a chain set: the totals, then one line per chain (and its warnings).
    workers = (W, wall seconds of the whole run): the set ran in W worker processes (the rate is
    then of the whole run, start-up, compilation and thermalization included)."""
    first = summaries[0]
    n_total = sum(s.n_configs for s in summaries)
    wall = first.wall_time if workers is None else workers[1]
    out = [
        f"chains:         {len(summaries)}, {n_total} configurations stored in total "
        f"({sum(s.n_updates for s in summaries)} updates after thermalization)",
        f"acceptance:     {np.mean([s.acceptance for s in summaries]):.3f} (mean over chains)",
        f"time:           {wall:.2f} s sampling, {first.therm_time:.2f} s thermalization, "
        f"{first.compile_time:.2f} s compile/load" if workers is None else
        f"time:           {wall:.2f} s in all, over {workers[0]} worker processes (start-up included)",
        f"rate:           {n_total / wall if wall > 0 else math.inf:.1f} configs/s (all chains)",
        f"settings ({names[0]}): " + _format_settings(first.settings),
    ]
    for i, (name, s) in enumerate(zip(names, summaries)):
        figures = [f"{s.n_configs} stored", f"acceptance {s.acceptance:.3f}"]
        if math.isfinite(s.mean_exp_mdH):
            figures.append(f"<exp(-dH)> {s.mean_exp_mdH:.4f}")
        figures += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in s.report.items()
                    if k not in ("warning", "note")]
        out.append(f"{name + ':':<15} " + ", ".join(figures) + (f" -> {files[i]}" if files else ""))
    for name, s in zip(names, summaries):
        for key in ("note", "warning"):
            if key in s.report:
                out.append(f"{'WARNING' if key == 'warning' else 'note'} ({name}): {s.report[key]}")
    return out
