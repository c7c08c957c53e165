"""The one function that runs a Markov chain: ``run_chain``. The CLI ``python -m generate``
is a thin layer over it, so a notebook gets exactly what the CLI gets.

A chain is (theory, sampler, ChainState). The state holds everything needed to continue:
the current configuration, the numpy Generator (PCG64) that drives all randomness, and the
counters. Saving the state after a stored configuration and loading it later continues the
chain exactly (samplers/ensemble.py stores it at every flush).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm import tqdm



@dataclass
class ChainState:
    config: np.ndarray
    rng: np.random.Generator
    n_stored: int = 0
    n_updates: int = 0  # updates since the end of thermalization
    thermalized: bool = False
    sampler_state: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sampler.get_state()

    @classmethod
    def start(cls, theory, seed: int, init: str = "hot") -> "ChainState":
        """A fresh chain: hot (random) or cold (zero field / unit links) start."""
        rng = np.random.default_rng(seed)
        if init == "hot":
            config = theory.random_config(rng)
        elif init == "cold":
            config = np.zeros(theory.config_shape)
        else:
            raise ValueError(f"unknown start {init!r}; choose hot or cold")
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
    (A local sampler is warmed up on a copy of itself; a model-based one is left alone: its first
    update pays its own start-up.)"""
    t0 = time.perf_counter()
    q = np.ascontiguousarray(theory.random_config(np.random.default_rng(0)))
    if not sampler.get_state().size:
        type(sampler).from_settings(sampler.settings()).update(theory, q, np.random.default_rng(0))
    theory.action(q)
    return time.perf_counter() - t0


def run_chain(theory, sampler, state: ChainState, n_configs: int, every: int = 1, n_therm: int = 0,
              writer: Writer | None = None, progress: bool = False, flush_seconds: float = 10.0,
              flush_configs: int = 256, tune: bool = True) -> RunSummary:
    """Run the chain until ``state.n_stored == n_configs``, storing every ``every``-th update.

    If the state is not yet thermalized, first ``n_therm`` updates are discarded; with ``tune``
    they also tune the sampler (``sampler.adapt``), whose settings are frozen afterwards. The writer sees the tuned settings (``begin``), every
    stored configuration with its action and diagnostics (``append``), and the state after
    the last stored configuration at every flush: at most ``flush_configs`` configurations or
    ``flush_seconds`` apart, and at the end. ``state`` is advanced in place.
    """
    if every < 1:
        raise ValueError(f"--every must be >= 1, got {every}")
    if n_therm < 0:
        raise ValueError(f"thermalization length must be >= 0, got {n_therm}")
    sampler.check(theory)
    writer = writer if writer is not None else MemoryWriter()
    compile_time = warm_up(theory, sampler)
    q = state.config
    if state.sampler_state.size:
        sampler.set_state(state.sampler_state)

    t0 = time.perf_counter()
    if not state.thermalized:
        bar = tqdm(range(n_therm), desc="thermalizing", disable=not progress, leave=False)
        for k in bar:
            info = sampler.update(theory, q, state.rng)
            if tune:
                sampler.adapt(info, k, theory.compact)
        state.thermalized = True
    therm_time = time.perf_counter() - t0
    state.sampler_state = sampler.get_state()
    writer.begin(state, sampler.settings())

    t0 = time.perf_counter()
    n_start = state.n_stored
    acc_sum, n_acc, exp_mdH = 0.0, 0, []
    last_flush, since_flush = time.perf_counter(), 0
    bar = tqdm(total=n_configs, initial=n_start, desc=f"{theory.name} {sampler.name}", unit="cfg",
               disable=not progress, smoothing=0.1)
    while state.n_stored < n_configs:
        acc = 0.0
        for _ in range(every):
            info = sampler.update(theory, q, state.rng)
            acc += info.accept
            if math.isfinite(info.dH):
                exp_mdH.append(math.exp(-info.dH) if info.dH > -700 else math.inf)
        state.n_updates += every
        state.n_stored += 1
        acc_sum += acc
        n_acc += every
        diag = {"accept": acc / every, **{name: info.diagnostic(name) for name in sampler.diagnostics}}
        writer.append(q, theory.action(q), diag)
        since_flush += 1
        now = time.perf_counter()
        if since_flush >= flush_configs or now - last_flush > flush_seconds or state.n_stored == n_configs:
            state.sampler_state = sampler.get_state()
            writer.flush(state)
            last_flush, since_flush = now, 0
        bar.update(1)
        bar.set_postfix(acc=f"{acc_sum / n_acc:.3f}", refresh=False)
    bar.close()
    wall = time.perf_counter() - t0
    summary = RunSummary(
        n_configs=state.n_stored - n_start,
        n_updates=n_acc,
        acceptance=acc_sum / n_acc if n_acc else math.nan,
        wall_time=wall,
        therm_time=therm_time,
        compile_time=compile_time,
        settings=sampler.settings(),
        mean_exp_mdH=float(np.mean(exp_mdH)) if exp_mdH else math.nan,
        report=sampler.report(),
    )
    writer.finish(summary)
    return summary
