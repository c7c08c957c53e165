"""Analysis of an ensemble file: every observable of its theory with Gamma-method errors.

``analyze(path)`` is what ``python -m observables measure`` prints and stores; ``compare`` sets
several analyses side by side with z-scores against the first (the baseline).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

from lattice import __version__, theory_from_attrs
from samplers.ensemble import EnsembleError, attrs_of, now, open_ensemble, read_ensemble

from samplers.weights import ess_fraction

from . import theories
from .derived import Derived
from .proposal_diagnostics import block_floor, proposal_diagnostics, unreliable_reason
from .stats import Estimate, ShortChainWarning, gamma_method, gamma_method_derived, stationarity

AGREE_Z = 3.0  # compare: |z| below this agrees


@dataclass
class Analysis:
    """Estimates of one ensemble: primaries and derived quantities, in display order."""

    path: str
    attrs: dict
    estimates: dict[str, Estimate]
    kinds: dict[str, str]  # name -> "primary" / "derived"
    flags: dict[str, list[str]] = field(default_factory=dict)  # name -> ["short", "non-stationary (z=..)"]
    settings: dict = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)  # primaries, for plots

    def rows(self) -> list[dict]:
        out = []
        for name, est in self.estimates.items():
            out.append({**est.as_dict(), "name": name, "kind": self.kinds[name],
                        "flags": self.flags.get(name, [])})
        return out


def _same_theory_key(attrs: dict) -> tuple:
    return attrs["theory"], json.dumps(attrs["params"], sort_keys=True), tuple(attrs["shape"])


WEIGHT = "__w"  # the weight series' key in reweighted estimates
RAW_MODEL = "model-samples"  # the algorithm whose files hold a model's raw samples (reweightable)


def analyze(path: str | Path, S: float = 2.0, skip: int = 0, select: str | None = None,
            reweight: bool = False) -> Analysis:
    """Measure every observable of the file's theory on its configurations [skip:].

    S: Wolff's S_tau for the automatic window. select: a glob on observable names (e.g. "W(*").
    A primary whose first and second half disagree (|z| > 3) is flagged non-stationary; one whose
    chain is shorter than ~50 tau_int is flagged short. reweight: a file of raw model samples
    (``--algorithm model-samples``) is reweighted to the target with w = exp(log p - log q) from its
    diagnostics (see ``estimate_all``); the weights' ESS/N goes into the settings. Other files are
    chains of the target already and are never reweighted.
    """
    _check_S(S)
    return _analyze_ensemble(path, _read_measurable(path, skip), S, skip, select, reweight)


def _analyze_ensemble(path, ens, S: float, skip: int, select: str | None, reweight: bool = False,
                      series: dict | None = None) -> Analysis:
    """``analyze`` of an ensemble already read (``series``: its primaries, if computed already)."""
    n = len(ens.configs)
    theory = theory_from_attrs(ens.attrs)
    every = int(ens.attrs.get("every", 1))
    series = theories.primaries(ens.configs, theory) if series is None else series
    settings = {"S": S, "skip": skip, "n": n, "every": every, "select": select or "*",
                "analysed_at": now(), "version": __version__}
    log_w = None
    if ens.attrs.get("algorithm") == RAW_MODEL:
        settings["reweighted"] = bool(reweight)
        if reweight:
            log_w = ens.diagnostics["log_p"] - ens.diagnostics["log_q"]
            if not np.isfinite(ens.diagnostics["log_q"]).all():
                raise EnsembleError(f"{path}: the model gave no density for its samples (e.g. a diffusion model's "
                                    "reverse SDE); --reweight needs exact log q (--model-sampler ode)")
            settings["ess"] = ess_fraction(log_w)
    elif reweight:
        raise EnsembleError(f"{path} is a chain of the target ({ens.attrs.get('algorithm')}); --reweight applies "
                            f"to files of raw model samples (python -m generate --algorithm {RAW_MODEL})")
    diag = proposal_diagnostics(ens.diagnostics, ens.attrs.get("algorithm", ""), every,
                                report=_json_attr(ens.attrs.get("sampler_report")))
    if diag:
        settings["proposals"] = diag
    estimates, kinds, flags = estimate_all(series, theory, S=S, every=every, select=select, log_w=log_w,
                                           min_block=block_floor(diag))
    for name, est in estimates.items():
        reason = unreliable_reason(est, diag)
        if reason:
            flags.setdefault(name, []).append(reason)
    notes = getattr(theories.module_for(theory), "notes", None)
    if notes is not None and not select and log_w is None:
        settings["notes"] = notes(series, theory, S=S, every=every, min_block=block_floor(diag))
    _check_selected(estimates, series, theory, select)
    return Analysis(str(path), ens.attrs, estimates, kinds, flags, settings, series)


def _check_S(S: float) -> None:
    if not (math.isfinite(S) and S > 0):
        raise ValueError(f"--S must be a finite number > 0, got {S}")


def _read_measurable(path, skip: int):
    """The ensemble [skip:] of ``path``, refused in one line if too short or holding NaN / inf."""
    ens = read_ensemble(path, start=skip)
    n = len(ens.configs)
    if n < 4:
        raise EnsembleError(f"{path}: only {n} configurations after --skip {skip}; need at least 4")
    bad = np.flatnonzero(~np.isfinite(ens.configs.reshape(n, -1)).all(axis=1))
    if bad.size:
        raise EnsembleError(f"{path}: configuration {skip + bad[0]} holds NaN or inf values "
                            f"({bad.size} of {n} configurations do); nothing can be measured on them")
    return ens


def _check_selected(estimates: dict, series: dict, theory, select: str | None) -> None:
    if not estimates:
        names = [*series, *(d.name for d in theories.derived(theory))]
        raise ValueError(f"--select {select!r} matches no observable of {theory.name}; its observables: "
                         f"{', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")


REPLICA_Z = 3.0  # a replica whose mean differs from the other replicas' by this many sigma is flagged


def analyze_replicas(paths: list, S: float = 2.0, skip: int = 0, select: str | None = None) -> Analysis:
    """Several files of one setup (a chain set, or separate runs) as replicas of one ensemble.

    Every estimate is the Gamma method with replicas (Wolff 2004 sec. 3.3, as pyerrors): the mean
    over all configurations, Gamma(t) from each replica about its own mean. settings["replicas"]
    lists each file's N and the tau_int of each primary in it; a primary whose mean in one replica
    differs from that of the others by |z| >= REPLICA_Z is flagged "replica FILE disagrees (z = ..)".
    Files of other theories, parameters or ``every`` are refused, and so are two files of one chain
    (the same seed and chain index: not independent). Files of raw model samples are refused
    (reweight them one at a time). The sticky-chain floor of ``analyze`` applies with the blocks of
    the stickiest replica, pooled over all replicas; for learned chains (learned-mh, hybrid) every
    estimate that ``analyze`` flags unreliable
    in one of the replicas is flagged "unreliable in FILE (..)" here too, and each replica's
    proposal diagnostics are in its settings["replicas"] entry."""
    _check_S(S)
    if len(paths) < 2:
        return analyze(paths[0], S=S, skip=skip, select=select)
    ensembles = _read_replicas(paths, skip)
    theory = theory_from_attrs(ensembles[0].attrs)
    per_file = [theories.primaries(e.configs, theory) for e in ensembles]
    return _combine(paths, ensembles, per_file, S, skip, select)


def _read_replicas(paths: list, skip: int) -> list:
    """The ensembles of ``paths``, refused in one line unless they can be replicas of one ensemble."""
    ensembles = [_read_measurable(p, skip) for p in paths]
    first = ensembles[0].attrs
    for p, e in zip(paths[1:], ensembles[1:]):
        if _same_theory_key(e.attrs) != _same_theory_key(first):
            raise EnsembleError(f"{p} is not a replica of {paths[0]}: {e.attrs['theory']} {e.attrs['params']} on "
                                f"{e.attrs['shape']} against {first['theory']} {first['params']} on {first['shape']}")
        if int(e.attrs.get("every", 1)) != int(first.get("every", 1)):
            raise EnsembleError(f"{p} stores every {e.attrs.get('every')} updates, {paths[0]} every "
                                f"{first.get('every')}: replicas must be measured alike")
    for p, e in zip(paths, ensembles):
        if e.attrs.get("algorithm") == RAW_MODEL:
            raise EnsembleError(f"{p} holds raw model samples, not a chain of the target: measure it alone "
                                "(with --reweight)")
    seen: dict = {}
    for p, e in zip(paths, ensembles):
        key = (setup_key(e.attrs), e.attrs.get("seed"), int(e.attrs.get("chain", 0)))
        if key[1] is None:  # a file that does not say its seed
            continue
        if key in seen:
            raise EnsembleError(f"{seen[key]} and {p} are one chain (seed {e.attrs.get('seed')}, chain "
                                f"{int(e.attrs.get('chain', 0))} of one setup), not independent replicas: "
                                "give each run its own --seed")
        seen[key] = p
    return ensembles


def _combine(paths: list, ensembles: list, per_file: list, S: float, skip: int, select: str | None,
             per_replica: bool = True) -> Analysis:
    """The replicas ``per_file`` (primaries of ``ensembles``) as one ensemble (``analyze_replicas``);
    per_replica=False: only the combined estimates (no per-replica tau_int, flags or diagnostics)."""
    if len(paths) == 1:
        return _analyze_ensemble(paths[0], ensembles[0], S, skip, select, series=per_file[0])
    first = ensembles[0].attrs
    theory = theory_from_attrs(first)
    every = int(first.get("every", 1))
    lengths = [len(e.configs) for e in ensembles]
    series = {k: np.concatenate([f[k] for f in per_file]) for k in per_file[0]}
    diags = [proposal_diagnostics(e.diagnostics, e.attrs.get("algorithm", ""), every,
                                  report=_json_attr(e.attrs.get("sampler_report"))) for e in ensembles]
    floor = max([block_floor(d) for d in diags if d], default=0)  # the stickiest replica's blocks, for all
    estimates, kinds, flags = estimate_all(series, theory, S=S, every=every, select=select, replicas=lengths,
                                           min_block=floor)
    _check_selected(estimates, series, theory, select)
    settings = {"S": S, "skip": skip, "n": sum(lengths), "every": every, "select": select or "*",
                "analysed_at": now(), "version": __version__}
    if not per_replica:
        return Analysis(", ".join(map(str, paths)), first, estimates, kinds, flags, settings, series)
    replicas = []
    for i, (p, f) in enumerate(zip(paths, per_file)):
        taus = {}
        for name in (n for n in estimates if kinds[n] == "primary" and n in f):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mine = gamma_method(f[name], S=S, every=every)
                rest_parts = [g[name] for j, g in enumerate(per_file) if j != i]
                rest = gamma_method(np.concatenate(rest_parts), S=S, every=every,
                                    replicas=[len(x) for x in rest_parts])
            taus[name] = mine.tau_int
            z = z_score(rest, mine)
            if math.isfinite(z) and abs(z) >= REPLICA_Z:
                flags.setdefault(name, []).append(f"replica {Path(p).name} disagrees (z = {z:.1f})")
        replicas.append({"file": str(p), "n": lengths[i], "tau_int": taus})
    for entry, p, e, f, diag in zip(replicas, paths, ensembles, per_file, diags):
        if not diag:
            continue
        entry["proposals"] = diag
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alone = _analyze_ensemble(p, e, S, skip, select, series=f)
        for name in estimates:
            for reason in alone.flags.get(name, []):
                if reason.startswith("unreliable"):
                    flags.setdefault(name, []).append(f"unreliable in {Path(p).name}{reason[len('unreliable'):]}")
    settings["replicas"] = replicas
    return Analysis(", ".join(map(str, paths)), first, estimates, kinds, flags, settings, series)


# ---------------------------------------------------------------- which files are replicas of one ensemble
TUNED = ("step_size", "n_steps", "delta")  # sampler settings tuned in thermalization: each chain has its own
PER_CHAIN = ("seed", "chain")  # a learned proposal's stream: each chain has its own


def _setup_settings(settings: dict, tuned: bool) -> dict:
    s = dict(settings)
    if tuned:
        for k in TUNED:
            s.pop(k, None)
    if isinstance(s.get("local"), dict):  # hybrid: the local sampler's settings
        s["local"] = {**s["local"], "settings": _setup_settings(s["local"].get("settings") or {}, tuned)}
    if isinstance(s.get("proposal"), dict):
        s["proposal"] = {k: v for k, v in s["proposal"].items() if k not in PER_CHAIN}
    return s


def setup_key(attrs: dict) -> str:
    """The setup of a file (its attributes): theory, couplings, lattice, ``every``, algorithm and sampler
    settings, less what differs between chains of one setup (the seed, the chain index, a tuned step
    size or width, a learned proposal's stream). Files with one key are replicas of one ensemble
    (``replica_groups``)."""
    settings = attrs.get("sampler_settings")
    key = {"theory": attrs["theory"], "parameterization": attrs.get("parameterization"), "params": attrs["params"],
           "shape": list(attrs["shape"]), "every": int(attrs.get("every", 1)), "algorithm": attrs.get("algorithm"),
           "sampler_settings": _setup_settings(settings if isinstance(settings, dict) else {},
                                               bool(attrs.get("tuned", 1))),
           "proposal_sha256": attrs.get("proposal_sha256")}
    return json.dumps(key, sort_keys=True, default=str)


def file_attrs(path) -> dict:
    """The attributes of an ensemble file (nothing else is read)."""
    with open_ensemble(path) as f:
        return attrs_of(f)


def replica_groups(paths: list) -> list[list]:
    """``paths`` grouped by ``setup_key``: one list per setup, in the order of first appearance, each
    in the order given. ``compare`` takes each group as one ensemble (``analyze_replicas``). A file of
    raw model samples is a group of its own (reweighted one file at a time)."""
    groups: dict = {}
    for i, p in enumerate(paths):
        attrs = file_attrs(p)
        groups.setdefault(("raw", i) if attrs.get("algorithm") == RAW_MODEL else setup_key(attrs), []).append(p)
    return list(groups.values())


def replica_comparison(paths: list, S: float = 2.0, skip: int = 0, select: str | None = None):
    """Files of one setup, each replica against the others combined (``compare`` of one chain set).

    Returns (combined, singles, names, zs, verdicts): ``analyze_replicas`` of all the files, ``analyze``
    of each file, the observables compared (as ``comparison``), zs[i][name] = z-score of file i
    against the other files combined (Gamma method with replicas), and each observable's verdict
    over all the files (``verdict``)."""
    _check_S(S)
    if len(paths) < 2:
        raise ValueError("replica_comparison needs at least two files")
    ensembles = _read_replicas(paths, skip)
    theory = theory_from_attrs(ensembles[0].attrs)
    per_file = [theories.primaries(e.configs, theory) for e in ensembles]
    combined = _combine(paths, ensembles, per_file, S, skip, select)
    singles = [_analyze_ensemble(p, e, S, skip, select, series=f) for p, e, f in zip(paths, ensembles, per_file)]
    names = compared_names(combined, select)
    zs, rests = [], []
    for i in range(len(paths)):
        others = [j for j in range(len(paths)) if j != i]
        rest = singles[others[0]] if len(others) == 1 else \
            _combine([paths[j] for j in others], [ensembles[j] for j in others], [per_file[j] for j in others],
                     S, skip, select, per_replica=False)
        rests.append(rest)
        zs.append({n: z_score(rest.estimates[n], singles[i].estimates[n])
                   if n in rest.estimates and n in singles[i].estimates else math.nan for n in names})
    every_flags = [combined.flags, *(a.flags for a in singles), *(a.flags for a in rests)]
    verdicts = {n: verdict([z[n] for z in zs], [fl.get(n, []) for fl in every_flags]) for n in names}
    return combined, singles, names, zs, verdicts


def _json_attr(value) -> dict:
    try:
        return json.loads(value) if isinstance(value, str) else {}
    except json.JSONDecodeError:
        return {}


def _reweighted(f, n_inputs: int):
    """g(<w a_1>, ..., <w a_k>, <w>) = f(<w a_1>/<w>, ..., <w a_k>/<w>): f of reweighted means."""
    def g(*means):
        return f(*(m / means[n_inputs] for m in means[:n_inputs]))
    return g


def estimate_all(series: dict[str, np.ndarray], theory, S: float = 2.0, every: int = 1,
                 select: str | None = None, log_w: np.ndarray | None = None,
                 min_block: int = 0, replicas: list[int] | None = None) -> tuple[dict, dict, dict]:
    """Gamma-method estimates of every primary series and every derived quantity of the theory:
    (estimates, kinds, flags) keyed by observable name, in display order.

    With log_w (importance weights w = exp(log_w), e.g. log p - log q of model samples) every
    quantity becomes a ratio estimator: <A>_w = <w A> / <w>, and a derived f(<A>, <B>, ...) is taken
    at the reweighted means; the errors come from Gamma-method propagation through the ratio
    (for independent samples this is the delta-method error of ``stats.weighted_mean``).
    min_block > 0: every error is at least the blocking error with blocks that long (sticky
    chains, ``observables.proposal_diagnostics``). replicas: the lengths of the replicas the series
    hold one after another (``analyze_replicas``).
    """
    wanted = (lambda name: True) if not select else (lambda name: fnmatch(name, select))
    estimates, kinds, flags = {}, {}, {}

    def record(name, compute, kind):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = compute()
        estimates[name], kinds[name] = est, kind
        if any(issubclass(w.category, ShortChainWarning) for w in caught):
            flags.setdefault(name, []).append("short")

    derived = [d for d in theories.derived(theory) if wanted(d.name) and all(k in series for k in d.inputs)]
    data_derived = getattr(theories.module_for(theory), "data_derived", None)  # e.g. the pole-mass fit
    if data_derived is not None:
        derived += [d for d in data_derived(series, theory, S=S, every=every, min_block=min_block)
                    if wanted(d.name) and all(k in series for k in d.inputs)]
    if log_w is not None:
        log_w = np.asarray(log_w, dtype=np.float64)
        data = {name: x * np.exp(log_w - np.max(log_w)) for name, x in series.items()}
        data[WEIGHT] = np.exp(log_w - np.max(log_w))
        for name in filter(wanted, series):
            d = Derived(name, (name, WEIGHT), lambda a, w: a / w)
            record(name, lambda: gamma_method_derived(d, data, S=S, every=every, min_block=min_block,
                                                      replicas=replicas), "primary")
        derived = [Derived(d.name, (*d.inputs, WEIGHT), _reweighted(d.f, len(d.inputs))) for d in derived]
    else:
        data = series
        for name in filter(wanted, series):
            x = series[name]
            record(name, lambda: gamma_method(x, S=S, every=every, name=name, min_block=min_block,
                                              replicas=replicas), "primary")
            if replicas is None and np.std(x) > 0:  # replicas: analyze_replicas compares them instead
                z, bad = stationarity(x, S=S)
                if bad:
                    flags.setdefault(name, []).append(f"non-stationary (halves differ, z = {z:.1f})")
    for d in derived:
        with np.errstate(all="ignore"):
            record(d.name, lambda: gamma_method_derived(d, data, S=S, every=every, min_block=min_block,
                                                        replicas=replicas), "derived")
    return estimates, kinds, flags


def results_path(path: str | Path) -> Path:
    """Where ``store`` puts the results of ``path``: NAME.observables.json beside NAME.h5."""
    path = Path(path)
    return path.with_name(path.stem + ".observables.json")


def store(analysis: Analysis) -> Path:
    """Write the results to the side file ``results_path(analysis.path)`` (settings and rows, strict
    JSON), atomically: a temporary file renamed over the old one. The ensemble itself is never
    opened for writing, so nothing that analyzes can damage it (a killed writer would leave the
    HDF5 file flagged open)."""
    target = results_path(analysis.path)
    doc = {"file": Path(analysis.path).name, "settings": analysis.settings, "results": analysis.rows(),
           "arrays": arrays(analysis)}
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")  # per process: two measures at once
    try:
        tmp.write_text(json.dumps(strict_json(doc), indent=1) + "\n")
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    return target


_SEPARATION = re.compile(r"G_c\(([-\d,]+)\)$")


def arrays(analysis: Analysis) -> dict:
    """The estimates that form an array, as arrays: G_c(x) at its separations (up to lattice
    symmetry, canonical representatives), {"G_c": {"separation", "value", "error", "tau_int"}}."""
    rows = [(tuple(int(v) for v in m[1].split(",")), est) for name, est in analysis.estimates.items()
            if (m := _SEPARATION.match(name))]
    if not rows:
        return {}
    return {"G_c": {"separation": [list(x) for x, _ in rows], "value": [e.value for _, e in rows],
                    "error": [e.error for _, e in rows], "tau_int": [e.tau_int for _, e in rows]}}


def strict_json(value):
    """``value`` with every non-finite float as None: JSON without bare NaN / Infinity."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    return value


def z_score(a: Estimate, b: Estimate) -> float:
    """(b - a) / sqrt(err_a^2 + err_b^2); NaN when both errors vanish and the values differ."""
    err = math.hypot(a.error, b.error)
    if err == 0:
        return 0.0 if a.value == b.value else math.nan
    return (b.value - a.value) / err


def verdict(zs: list[float], flags: list[list[str]]) -> str:
    """compare's word for one observable: its z-scores against the baseline and every file's flags.

    NaN (no value, no error, or missing) never agrees; |z| >= AGREE_Z differs; a match of an
    estimate flagged unreliable (sticky learned chain) or short is no evidence of agreement."""
    if not zs or any(not math.isfinite(z) for z in zs):
        return "NaN"
    if any(abs(z) >= AGREE_Z for z in zs):
        return "DIFFER"
    every_flag = [f for fl in flags for f in fl]
    if any(f.startswith("unreliable") for f in every_flag):
        return "unreliable"
    if "short" in every_flag:
        return "agree (short)"
    return "agree"


_WILSON = re.compile(r"W\((\d+),(\d+)\)$")


def duplicate_names(names: list[str]) -> set[str]:
    """Rows that repeat another by symmetry: W(1,1) = P, and W(T,R) = W(R,T) for T > R."""
    present = set(names)
    out = {"W(1,1)"} & present if "P" in present else set()
    for n in names:
        m = _WILSON.match(n)
        if m and int(m[1]) > int(m[2]) and f"W({m[2]},{m[1]})" in present:
            out.add(n)
    return out


def hidden(name: str) -> bool:
    """Rows the tables leave out unless selected: phi4's point products C(x), the raw inputs of G_c(x)."""
    return name.startswith("C(")


def compared_names(analysis: Analysis, select: str | None = None) -> list[str]:
    """The observables ``compare`` shows: all of ``analysis``, less rows equal by symmetry and, unless
    ``select`` is given, the hidden ones."""
    return [n for n in analysis.estimates if n not in duplicate_names(list(analysis.estimates))
            and (select or not hidden(n))]


def comparison(analyses: list[Analysis], select: str | None = None) -> tuple[list[str], list[dict], dict]:
    """What ``compare`` reports: the observables compared (the baseline's, less rows equal by symmetry
    and, unless ``select`` is given, the hidden ones), z-scores of every file against the first
    (zs[0] is empty) and each observable's verdict."""
    base = analyses[0]
    names = compared_names(base, select)
    zs = [{}] + [{n: z_score(base.estimates[n], a.estimates[n]) if n in a.estimates else math.nan
                  for n in names} for a in analyses[1:]]
    verdicts = {n: verdict([z[n] for z in zs[1:]], [a.flags.get(n, []) for a in analyses]) for n in names}
    return names, zs, verdicts


def check_comparable(analyses: list[Analysis]) -> None:
    """All files must describe the same theory, parameters and lattice."""
    base = _same_theory_key(analyses[0].attrs)
    for a in analyses[1:]:
        key = _same_theory_key(a.attrs)
        if key != base:
            raise EnsembleError(f"{a.path} is {key[0]} {key[1]} on {'x'.join(map(str, key[2]))}, but "
                                f"{analyses[0].path} is {base[0]} {base[1]} on {'x'.join(map(str, base[2]))}")
