"""Parallel tempering (replica exchange) over a ladder of couplings, with any local sampler per replica.

R replicas of the theory at couplings c_0 < c_1 < ... < c_{R-1} (beta for u1 and xy, kappa for phi^4
in the hopping parameterization, lambda held fixed); the chain's own theory is one rung, the target,
and its configuration is what the chain stores. One update:

1. one local update of every replica r = 0 .. R-1 in that order, each by its own sampler (hmc,
   metropolis, heatbath, overrelaxation, wolff; its own settings, tuned during thermalization like
   any chain's) at its own coupling, drawing from the chain's generator;
2. every ``swap_every``-th update, swap attempts between the adjacent pairs (i, i + 1) with i even
   on even swap rounds and i odd on odd ones (deterministic even-odd, "DEO": H. Okabe et al., Chem.
   Phys. Lett. 335 (2001) 435; S. Syed et al., "Non-reversible parallel tempering", J. R. Stat. Soc.
   B 84 (2022) 321: walkers then cross the ladder in O(R) rounds, not the O(R^2) of random pairs).
   One uniform u per attempted pair is drawn (in pair order) whatever happens, so the stream never
   depends on outcomes; the pair swaps configurations if u < exp(log r) with

       log r = S_i(x_i) + S_j(x_j) - S_i(x_j) - S_j(x_i)

   (S_i the action at coupling c_i, the theories' own float64 actions): the Metropolis rule for the
   product target prod_r exp(-S_r(x_r)), whose marginal at the target rung is exp(-S_target).

Each local update leaves the product invariant, and so does each swap; the chain at the target rung
is exact. Diagnostics per stored configuration: ``accept`` is the target replica's local acceptance
(as a plain chain of its sampler would report), ``swap_accept`` the fraction of the swap attempts
of the update before it that were accepted (NaN in updates without swaps), and the target
replica's own (``dH`` for hmc, ``cluster_fraction`` for wolff). ``report()``: the acceptance of
each adjacent pair and the replica round trips (a walker, i.e. a configuration followed through its
swaps, going from rung 0 to rung R-1 and back), counted over the chain's whole life (thermalization
included, across resumes).

Chain state (``get_state``, /state/sampler of the file): the non-target replicas' configurations,
which walker sits on each rung, the swap counters, so a resumed chain continues bit for bit. The
non-target replicas start at the chain's first update, each hot (``theory.random_config`` from the
chain's generator, rung order), cold or ordered (``theory.ordered_config``) as ``init`` says, so
``--init`` applies to every replica.

Files: the chain's file holds the target rung; with ``store = "all"`` (``--store-replicas all``) the
``ReplicaWriter`` also writes every other rung r to NAME.replica{r}.h5, an ensemble of that rung's coupling.
Guide and measurements: docs/tempering.md.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np

from .base import UpdateInfo
from .chain import INITS, ChainState
from .heatbath import HeatBath, OverRelaxation
from .hmc import HMC
from .metropolis import Metropolis
from .wolff import Wolff

REPLICA_SAMPLERS = {"hmc": HMC, "heatbath": HeatBath, "overrelaxation": OverRelaxation, "metropolis": Metropolis,
                    "wolff": Wolff}
PARAMETER = {"u1": "beta", "xy": "beta", "phi4": "kappa"}  # the coupling a ladder runs over
STORE = ("target", "all")  # what the chain writes: the target rung, or every rung (one file each)
LOW_ACCEPTANCE = 0.05  # a pair swapping less often than this splits the ladder: report() warns
_HEADER = 4  # get_state: [initialized, updates, round trips, swap rounds], then the rest (Tempering.get_state)


def parse_ladder(spec: str) -> tuple[float, ...]:
    """The couplings a --ladder SPEC names: ``linear:LOW:HIGH:R`` (R equally spaced values),
    ``geometric:LOW:HIGH:R`` (R values in a constant ratio) or explicit ``v1,v2,...``; both
    ends are exactly LOW and HIGH. Raises ValueError (one line) for anything else."""
    spec = str(spec).strip()
    usage = f"--ladder {spec!r}: give linear:LOW:HIGH:R, geometric:LOW:HIGH:R or v1,v2,..."
    m = re.fullmatch(r"(linear|geometric):([^:]+):([^:]+):([^:]+)", spec)
    try:
        if m:
            kind, low, high, n = m.group(1), float(m.group(2)), float(m.group(3)), int(m.group(4))
        else:
            ladder = tuple(float(v) for v in spec.split(","))
    except ValueError:
        raise ValueError(usage) from None
    if m:
        if n < 2:
            raise ValueError(f"--ladder {spec}: a ladder needs R >= 2 replicas, got R = {n}")
        if kind == "geometric" and not (low > 0 and high > 0):
            raise ValueError(f"--ladder {spec}: ladder couplings must be finite and > 0")
        values = np.linspace(low, high, n) if kind == "linear" else np.geomspace(low, high, n)
        values[0], values[-1] = low, high
        ladder = tuple(float(v) for v in values)
    try:
        return validate_ladder(ladder)
    except ValueError as e:
        raise ValueError(f"--ladder {spec}: {e}") from None


def validate_ladder(ladder, allow_ties: bool = False) -> tuple[float, ...]:
    """The ladder as floats, or a one-line ValueError: at least 2 finite values > 0, strictly increasing."""
    values = tuple(float(v) for v in ladder)
    if len(values) < 2:
        raise ValueError(f"a ladder needs R >= 2 replicas, got {len(values)}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"ladder couplings must be finite and > 0, got {_fmt(values)}")
    if not all(b > a or (allow_ties and b == a) for a, b in zip(values, values[1:])):
        raise ValueError(f"ladder couplings must be strictly increasing, got {_fmt(values)}")
    return values


def swap_log_ratio(s_ii: float, s_jj: float, s_ij: float, s_ji: float) -> float:
    """log r of swapping x_i and x_j between rungs i and j; s_ab = S_a(x_b):
    r = exp(-S_i(x_j) - S_j(x_i)) / exp(-S_i(x_i) - S_j(x_j))."""
    return (s_ii + s_jj) - (s_ij + s_ji)


def _fmt(values) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


class Tempering:
    """Parallel tempering over ``ladder`` (the module docstring).

    ladder:     the couplings, strictly increasing; the theory's own coupling must be one of them
    replica:    {"algorithm": one of REPLICA_SAMPLERS, "settings": one settings dict for every
                replica, or a list of R (rung order; what ``settings()`` stores once tuned)}
    swap_every: swap rounds after every this many local updates of the replicas
    init:       "hot", "cold" or "ordered" (samplers.chain.INITS): how the non-target replicas start
    parameter:  the coupling's name; None: the theory's (beta for u1 / xy, kappa for phi4)
    store:      "target": the chain's file holds the target rung only; "all": every other rung r is
                also written to its own ensemble file NAME.replica{r}.h5 (``make_writer``, ReplicaWriter)
    """

    name = "tempering"
    _swap_rule = staticmethod(swap_log_ratio)  # tests replace it by a wrong rule to see the exact tests fail

    def __init__(self, ladder, replica: dict, swap_every: int = 1, init: str = "hot", parameter: str | None = None,
                 store: str = "target", _allow_ties: bool = False):
        self.ladder = validate_ladder(ladder, _allow_ties)
        self._allow_ties = _allow_ties
        R = len(self.ladder)
        algorithm = replica.get("algorithm") if isinstance(replica, dict) else None
        if algorithm not in REPLICA_SAMPLERS:
            raise ValueError(f"tempering: the replica algorithm must be one of {', '.join(REPLICA_SAMPLERS)}, "
                             f"not {algorithm!r}")
        settings = replica.get("settings", {})
        settings = [dict(settings) for _ in range(R)] if isinstance(settings, dict) else list(settings)
        if len(settings) != R:
            raise ValueError(f"tempering: {len(settings)} replica settings for a ladder of {R} couplings")
        if not (isinstance(swap_every, (int, np.integer)) and not isinstance(swap_every, bool) and swap_every >= 1):
            raise ValueError(f"--swap-every must be an integer >= 1, got {swap_every}")
        if init not in INITS:
            raise ValueError(f"unknown start {init!r}; choose {', '.join(INITS)}")
        if store not in STORE:
            raise ValueError(f"--store-replicas must be one of {', '.join(STORE)}, got {store!r}")
        self.store = store
        cls = REPLICA_SAMPLERS[algorithm]
        self.replicas = [cls.from_settings(s) for s in settings]
        self.swap_every, self.init, self.parameter = int(swap_every), init, parameter
        self.diagnostics = ("swap_accept", *cls.diagnostics)
        self.target: int | None = None  # the target rung, once check() has seen the theory
        self._theory = None
        self._theories: list = []
        self._configs: np.ndarray | None = None  # (R, *config_shape); the target's row is a scratch copy
        self._last_infos: list = []
        self._initialized = False
        self._n_updates = 0  # local update rounds so far (all of them: sets the swap schedule)
        self._n_rounds = 0  # swap rounds so far (their parity picks the pairs)
        self._round_trips = 0
        self._walker = np.arange(R)  # walker on rung r
        self._last_end = np.full(R, -1)  # per walker: -1 no end yet, 0 last at rung 0, 1 last at rung R-1
        self._last_end[0], self._last_end[R - 1] = 0, 1
        self._attempts = np.zeros(R - 1, dtype=np.int64)
        self._accepts = np.zeros(R - 1, dtype=np.int64)
        self._pending: np.ndarray | None = None  # a state given before check(): applied there

    # ------------------------------------------------------------------ setup
    def check(self, theory) -> None:
        """Refuse (one line) what cannot run, and build the replicas' theories: ``dataclasses.replace``
        of the theory with the ladder's couplings."""
        parameter = PARAMETER.get(theory.name)
        if theory.name == "phi4" and theory.parameterization != "hopping":
            hop = theory.as_hopping()
            raise ValueError(f"tempering phi4 runs a kappa ladder at fixed lambda: give the theory as --kappa/--lam "
                             f"(m2 = {theory.m2}, g = {theory.g} is kappa = {hop.kappa:.10g}, lam = {hop.lam:.10g})")
        if parameter is None:
            raise ValueError(f"tempering has no coupling to run a ladder over for {theory.name}")
        if self.parameter is not None and self.parameter != parameter:
            raise ValueError(f"tempering: this ladder is in {self.parameter}, but {theory.name} tempers in {parameter}")
        value = float(getattr(theory, parameter))
        matches = [r for r, v in enumerate(self.ladder) if math.isclose(v, value, rel_tol=1e-12, abs_tol=0.0)]
        if not matches or len(matches) > 1 and not self._allow_ties:
            raise ValueError(f"tempering: the target {parameter} = {value:.6g} (--{parameter}) must be one of the "
                             f"ladder's couplings ({_fmt(self.ladder)})")
        target = matches[-1]
        ladder = list(self.ladder)
        ladder[target] = value  # the theory's own value, bit for bit
        theories = []
        for r, c in enumerate(ladder):
            try:
                theories.append(theory if r == target else dataclasses.replace(theory, **{parameter: c}))
            except ValueError as e:
                raise ValueError(f"tempering: the ladder's {parameter} = {c:.6g}: {e}") from None
        for r, (sampler, th) in enumerate(zip(self.replicas, theories)):
            sampler.check(th)
            if sampler.get_state().size:
                raise ValueError(f"tempering: {sampler.name} carries a chain state; replicas must not")
        config_shape = tuple(theory.config_shape)
        if self._configs is not None and self._configs.shape[1:] != config_shape:
            raise ValueError(f"tempering: this sampler ran configurations of shape {self._configs.shape[1:]}, "
                             f"not {config_shape}")
        self.ladder, self.parameter, self.target = tuple(ladder), parameter, target
        self._theory, self._theories = theory, theories
        if self._configs is None:
            self._configs = np.zeros((len(ladder), *config_shape))
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.set_state(pending)

    def _ready(self, theory) -> None:
        if theory is not self._theory and theory != self._theory:
            self.check(theory)

    def _start_replicas(self, rng: np.random.Generator) -> None:
        for r, th in enumerate(self._theories):
            if r != self.target:
                self._configs[r] = {"hot": th.random_config, "cold": lambda _: 0.0,
                                    "ordered": th.ordered_config}[self.init](rng)
        self._initialized = True

    # ------------------------------------------------------------------ one update
    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        self._ready(theory)
        if not self._initialized:
            self._start_replicas(rng)
        xs, t = self._configs, self.target
        xs[t] = q
        self._last_infos = [s.update(th, xs[r], rng) for r, (s, th) in enumerate(zip(self.replicas, self._theories))]
        self._n_updates += 1
        swap = math.nan
        if self._n_updates % self.swap_every == 0:
            swap = self._swap_round(rng)
        q[...] = xs[t]
        info = self._last_infos[t]
        return UpdateInfo(info.accept, info.dH, {**(info.extra or {}), "swap_accept": swap})

    def _swap_round(self, rng: np.random.Generator) -> float:
        """Swap attempts between the pairs (i, i + 1), i of the round's parity; returns the fraction accepted."""
        xs, S, R = self._configs, self._theories, len(self.ladder)
        pairs = range(self._n_rounds % 2, R - 1, 2)
        self._n_rounds += 1
        u = rng.random(len(pairs))
        accepted = 0
        for i, u_i in zip(pairs, u):
            j = i + 1
            log_r = self._swap_rule(S[i].action(xs[i]), S[j].action(xs[j]), S[i].action(xs[j]), S[j].action(xs[i]))
            self._attempts[i] += 1
            if log_r >= 0 or u_i < math.exp(log_r):
                xs[[i, j]] = xs[[j, i]]
                self._walker[[i, j]] = self._walker[[j, i]]
                self._accepts[i] += 1
                accepted += 1
        bottom, top = self._walker[0], self._walker[R - 1]
        if self._last_end[bottom] == 1:
            self._round_trips += 1
        self._last_end[bottom], self._last_end[top] = 0, 1
        return accepted / len(pairs) if len(pairs) else math.nan

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        for sampler, own in zip(self.replicas, self._last_infos):
            sampler.adapt(own, k, compact)

    # ------------------------------------------------------------------ settings and state
    def settings(self) -> dict:
        return {"ladder": list(self.ladder), "parameter": self.parameter, "swap_every": self.swap_every,
                "init": self.init, "store": self.store, "replica": {"algorithm": self.replicas[0].name,
                                               "settings": [s.settings() for s in self.replicas]}}

    @classmethod
    def from_settings(cls, settings: dict) -> "Tempering":
        if "replica_of" in settings:  # the settings of a rung's file (ReplicaWriter), not of a chain
            raise ValueError(f"this file holds one rung of the tempering chain in {settings['replica_of']}, "
                             "not a chain: --resume that file")
        return cls(**settings)

    def get_state(self) -> np.ndarray:
        """[initialized, updates, round trips, swap rounds, walker on each rung (R), each walker's last end
        (R), attempts (R - 1) and accepts (R - 1) per pair, the non-target configurations (rung order)];
        exact in float64 (integers < 2^53). Needs check() first (the configurations' size)."""
        if self._configs is None:
            raise ValueError("tempering: get_state() before check(theory): the replicas' shape is not known yet")
        others = np.delete(self._configs, self.target, axis=0).reshape(-1)
        head = [float(self._initialized), self._n_updates, self._round_trips, self._n_rounds]
        return np.concatenate([np.array(head, dtype=np.float64), self._walker, self._last_end, self._attempts,
                               self._accepts, others]).astype(np.float64)

    def set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        if self._configs is None:
            self._pending = state.copy()
            return
        R = len(self.ladder)
        n = _HEADER + 2 * R + 2 * (R - 1)
        size = n + (R - 1) * int(np.prod(self._configs.shape[1:]))
        if state.size != size:
            raise ValueError(f"tempering: a chain state of {state.size} numbers, expected {size} for {R} replicas "
                             f"of shape {self._configs.shape[1:]}")
        self._initialized, self._n_updates, self._round_trips, self._n_rounds = \
            bool(state[0]), int(state[1]), int(state[2]), int(state[3])
        rest = state[_HEADER:]
        self._walker = rest[:R].astype(np.int64)
        self._last_end = rest[R:2 * R].astype(np.int64)
        self._attempts = rest[2 * R:3 * R - 1].astype(np.int64)
        self._accepts = rest[3 * R - 1:4 * R - 2].astype(np.int64)
        others = rest[4 * R - 2:].reshape((R - 1, *self._configs.shape[1:]))
        self._configs[[r for r in range(R) if r != self.target]] = others

    def make_writer(self, writer):
        """The writer of this chain given the target's (an EnsembleWriter): itself, or with store = "all"
        a ReplicaWriter that also writes every other rung to NAME.replica{r}.h5."""
        return ReplicaWriter(writer, self) if self.store == "all" else writer

    # ------------------------------------------------------------------ figures
    def pair_acceptance(self) -> np.ndarray:
        """Accepted / attempted swaps of each adjacent pair (i, i + 1) over the chain's life (NaN: none yet)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self._attempts > 0, self._accepts / np.maximum(self._attempts, 1), math.nan)

    def replica_configs(self) -> np.ndarray:
        """The current configuration of every rung, (R, *config_shape) (a copy; the target's as of the last update)."""
        return self._configs.copy()

    def report(self) -> dict:
        acc = self.pair_acceptance()
        out = {"swap_acceptance": [round(float(a), 4) for a in acc],
               "round_trips": int(self._round_trips),
               "swap_rounds": int(self._n_rounds)}
        low = [i for i, a in enumerate(acc) if self._attempts[i] >= 100 and a < LOW_ACCEPTANCE]
        if low:
            i = low[0]
            out["warning"] = (f"swaps between {self.parameter} = {self.ladder[i]:.6g} and {self.ladder[i + 1]:.6g} "
                              f"were accepted in {100 * acc[i]:.1f}% of attempts: the ladder is split there; "
                              f"add couplings between them")
        return out


def replica_path(path: Path, rung: int) -> Path:
    """The ensemble file of rung ``rung`` of the tempering chain whose file is ``path``: NAME.replica{r}.h5."""
    path = Path(path)
    return path.with_name(f"{path.stem}.replica{rung}{path.suffix}")


_NOT_COPIED = ("format", "format_version", "status", "end_time", "sampler_report", "acceptance", "compile_time_s",
               "sampling_time_s", "resumed")


class ReplicaWriter:
    """The Writer (samplers/chain.py) of a tempering chain with store = "all": the target's file as
    usual, and every other rung r in its own ensemble file ``replica_path(path, r)``, whose attributes
    are the chain's with that rung's couplings (``params``) and ``replica`` = r, ``replica_of`` = the
    chain's file name, so ``observables measure`` reads it as an ensemble of that coupling. Its
    ``accept`` is the rung's local acceptance of the update before each stored configuration.

    The rungs' files are data, not chains: the chain's state (all rungs) is in the target's file, which
    is the one to --resume. They are flushed before the target's file, so a killed run leaves them at
    least as long as the target; resuming cuts them back to the target's length and continues them
    bit for bit with the chain. The target's lock (generate) covers them."""

    def __init__(self, target, sampler: Tempering):
        self.target, self.sampler = target, sampler
        self.rungs = [r for r in range(len(sampler.ladder)) if r != sampler.target]
        self.writers: dict = {}

    def _state(self, state: ChainState, r: int) -> ChainState:
        return ChainState(config=self.sampler._configs[r].copy(), rng=state.rng, n_stored=state.n_stored,
                          n_updates=state.n_updates, thermalized=state.thermalized)

    def begin(self, state: ChainState, settings: dict) -> None:
        from .ensemble import EnsembleWriter, attrs_of, create_ensemble, make_clean, n_stored, open_ensemble

        with open_ensemble(self.target.path) as f:
            attrs = {k: v for k, v in attrs_of(f).items() if k not in _NOT_COPIED}
        marked = {**settings, "replica_of": self.target.path.name}  # resuming a rung's file is refused
        attrs["sampler_settings"] = marked
        for r in self.rungs:
            path, own = replica_path(self.target.path, r), self._state(state, r)
            if path.exists():
                make_clean(path)
                with open_ensemble(path) as f:
                    held = n_stored(f)
                if held < state.n_stored:
                    raise ValueError(f"{path} holds {held} configurations, fewer than the {state.n_stored} of "
                                     f"{self.target.path.name}: it is not this chain's rung {r}")
            elif state.n_stored:
                raise ValueError(f"{path} (rung {r} of {self.target.path.name}) is missing")
            else:
                theory = self.sampler._theories[r]
                create_ensemble(path, {**attrs, "params": theory.params(), "replica": r,
                                       "replica_of": self.target.path.name}, theory.config_shape, (), own)
            self.writers[r] = EnsembleWriter(path)
            self.writers[r].begin(own, marked)
        self.target.begin(state, settings)

    def append(self, config: np.ndarray, action: float, info: dict) -> None:
        xs, theories, infos = self.sampler._configs, self.sampler._theories, self.sampler._last_infos
        for r in self.rungs:
            self.writers[r].append(xs[r], float(theories[r].action(xs[r])), {"accept": infos[r].accept})
        self.target.append(config, action, info)

    def flush(self, state: ChainState) -> None:
        for r in self.rungs:
            self.writers[r].flush(self._state(state, r))
        self.target.flush(state)

    def finish(self, summary) -> None:
        for r in self.rungs:
            self.writers[r].finish(summary)
        self.target.finish(summary)
