"""python -m observables: measure an ensemble, compare ensembles of the same theory, or a trained
model's learned action -ln q against S over an ensemble (learned-action).

    python -m observables measure data/phi4_L32_k0.21.h5    # table; results in phi4_L32_k0.21.observables.json
    python -m observables measure data/u1.h5 --json --select 'W(*'
    python -m observables compare data/u1_hmc.h5 data/u1_flow.h5 --plots runs/u1/compare --strict
    python -m observables compare data/u1_hmc.chain*.h5 data/u1_flow.chain*.h5   # two chain sets
    python -m observables learned-action data/xy_L16_b1.h5 --model runs/xy_L16_ar --plots runs/xy_L16_ar/la

Errors: Gamma method with automatic windowing (Wolff 2004), S = 2 unless --S is given; derived
quantities by Gamma-method propagation. Several files of one setup (analysis.setup_key: a chain
set, or runs with other seeds) are replicas of one ensemble, in measure and in compare alike
(Gamma method with replicas). Bad input ends with one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from lattice.cli import HelpFormatter, run_reporting_errors

from .analysis import (AGREE_Z, RAW_MODEL, analyze, analyze_replicas, check_comparable, comparison, duplicate_names,
                       hidden, replica_comparison, replica_groups, store, strict_json)
from .proposal_diagnostics import lines as proposal_lines
from .stats import format_value_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m observables", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--S", type=float, default=2.0, help="Wolff's S_tau of the automatic window")
    common.add_argument("--skip", type=int, default=0, help="discard this many first configurations")
    common.add_argument("--select", help="only observables whose name matches this glob, e.g. 'W(*'")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--reweight", action="store_true", help="files of raw model samples (generate "
                        "--algorithm model-samples): reweight to the target with w = exp(log p - log q) "
                        "(ratio estimators, ESS reported); without it they give the model's own averages")
    m = sub.add_parser("measure", parents=[common], help="every observable of one file, stored beside it in "
                       "NAME.observables.json",
                       formatter_class=HelpFormatter)
    m.add_argument("file", type=Path, nargs="+", help="one ensemble; several files of one setup (a chain set, or "
                   "separate runs) are measured as replicas of one ensemble (Gamma method with replicas)")
    m.add_argument("--no-store", action="store_true", help="do not write NAME.observables.json")
    c = sub.add_parser("compare", parents=[common], help="ensembles of the same theory side by side, z-scores "
                       "against the first", formatter_class=HelpFormatter)
    c.add_argument("files", type=Path, nargs="+", help="ensembles: files of one setup (a chain set, or runs with "
                   "other seeds) are replicas of one ensemble (Gamma method with replicas), the one of the first "
                   "file is the baseline; when all the files (3 or more) are of one setup, each is compared with "
                   "the others combined")
    c.add_argument("--strict", action="store_true", help="exit 1 if any observable differs")
    c.add_argument("--plots", type=Path, help="write PNG plots into this folder (needs matplotlib)")
    la = sub.add_parser("learned-action", help="a trained model's -ln q against the action S over an ensemble "
                        "(fit, and for XY autoregressive models the vortex map); see observables/learned.py",
                        formatter_class=HelpFormatter)
    la.add_argument("file", type=Path)
    la.add_argument("--model", type=Path, required=True, help="run folder (or checkpoint) of python -m train")
    la.add_argument("--skip", type=int, default=0, help="discard this many first configurations")
    la.add_argument("--max-configs", type=int, help="use at most this many configurations (after --skip)")
    la.add_argument("--json", action="store_true", help="machine-readable output")
    la.add_argument("--plots", type=Path, help="write PNG plots into this folder (needs matplotlib)")
    return p


def _fmt(est) -> str:
    v, e = format_value_error(est.value, est.error)
    return f"{v} ± {e}"


def print_measure(a) -> None:
    """One line per observable: name, then ``value ± error [tau_int = t(dt), N_eff = n]``, then notes."""
    attrs = a.attrs
    print(f"{a.path}: {attrs['theory']} {attrs['params']} on {'x'.join(map(str, attrs['shape']))}, "
          f"{attrs['algorithm']}, N = {a.settings['n']} (every {a.settings['every']}), S = {a.settings['S']}"
          + ("" if attrs.get("status") == "complete" else f"  [file status: {attrs.get('status')}]"))
    shown = [n for n in a.estimates if a.settings.get("select", "*") != "*" or not hidden(n)]
    w = max(12, *(len(n) for n in shown))
    for name in shown:
        notes = ", ".join(a.flags.get(name, []))
        print(f"{name:<{w}}  {a.estimates[name]}" + (f"   <- {notes}" if notes else ""))
    if len(shown) < len(a.estimates):
        print(f"({len(a.estimates) - len(shown)} point products C(x) not shown: --select 'C(*' or --json; "
              f"all are in the stored results)")
    print("tau_int in units of measurements (x every = updates); short: chain < 50 tau_int, error unreliable")
    for line in a.settings.get("notes", []):
        print(f"note: {line}")
    for line in proposal_lines(a.settings.get("proposals", {})):
        print(line)
    print_reweighting(a)


def print_reweighting(a) -> None:
    if a.settings.get("reweighted"):
        n = a.settings["n"]
        print(f"reweighted to exp(-S) with w = exp(log p - log q): ESS/N = {a.settings['ess']:.3f} "
              f"(ESS = {a.settings['ess'] * n:.0f} of {n})")
    elif "reweighted" in a.settings:
        print(f"note: {a.path} holds raw model samples: these are the model's averages, not the target's; "
              "add --reweight")


def files_label(files) -> str:
    """A short name for a set of files: NAME.chain{0..15}.h5, run_s{1,2,3}.h5 (or FIRST +N)."""
    names = [Path(f).name for f in files]
    if len(names) == 1:
        return names[0]
    pre = os.path.commonprefix(names)
    while pre and pre[-1].isdigit():
        pre = pre[:-1]
    rests = [n[len(pre):] for n in names]
    suf = os.path.commonprefix([r[::-1] for r in rests])[::-1]
    while suf and suf[0].isdigit():
        suf = suf[1:]
    mids = [r[:len(r) - len(suf)] for r in rests]
    nums = sorted(int(m) for m in mids) if all(m.isdigit() for m in mids) else []
    if len(nums) >= 3 and nums == list(range(nums[0], nums[0] + len(nums))):
        mid = f"{nums[0]}..{nums[-1]}"
    else:
        mid = ",".join(mids)
    return f"{pre}{{{mid}}}{suf}" if len(mid) <= 24 else f"{names[0]} +{len(names) - 1}"


def label(a) -> str:
    """The name of an ensemble in tables: its file's, or its replicas' (``files_label``)."""
    return files_label([r["file"] for r in a.settings["replicas"]]) if "replicas" in a.settings else Path(a.path).name


def replica_lines(a) -> list[str]:
    """Each replica's N and the tau_int of (up to 4) primaries in it, and its proposal diagnostics."""
    same = duplicate_names(list(a.estimates))  # W(1,1) = P, ...
    primaries = [n for n in a.estimates if a.kinds[n] == "primary" and not hidden(n) and n not in same][:4]
    reps = a.settings["replicas"]
    out = [f"replicas ({len(reps)}; Gamma method with replicas, Wolff 2004 sec. 3.3): "
           + "; ".join(f"{Path(r['file']).name} N = {r['n']}, tau_int " +
                       ", ".join(f"{n} {r['tau_int'][n]:.3g}" for n in primaries if n in r["tau_int"])
                       for r in reps)]
    for r in reps:
        out += [f"{Path(r['file']).name}: {line}" for line in proposal_lines(r.get("proposals", {}))]
    return out


def print_compare(analyses, zs, verdicts) -> None:
    base = analyses[0]
    heads = [label(a) for a in analyses]
    names = list(verdicts)
    w = max(12, *(len(n) for n in names))
    cols = [[_fmt(a.estimates[n]) if n in a.estimates else "-" for n in names] for a in analyses]
    taus = [[f"{a.estimates[n].tau_int:.3g}" if n in a.estimates else "-" for n in names] for a in analyses]
    widths = [max(len(h), *(len(c) for c in col)) for h, col in zip(heads, cols)]
    print(f"baseline: {base.path if 'replicas' not in base.settings else heads[0]}")
    header = f"{'observable':<{w}}  " + "  ".join(f"{h:>{wd}} {'tau_int':>7}" for h, wd in zip(heads, widths))
    print(header + "  " + "  ".join(f"{'z(' + str(i) + ')':>7}" for i in range(1, len(analyses))) + "  verdict")
    for k, n in enumerate(names):
        line = f"{n:<{w}}  " + "  ".join(f"{col[k]:>{wd}} {tau[k]:>7}" for col, tau, wd in zip(cols, taus, widths))
        line += "  " + "  ".join(f"{zs[i][n]:>7.2f}" for i in range(1, len(analyses)))
        notes = sorted({f for a in analyses for f in a.flags.get(n, []) if f != "short"})
        print(line + "  " + verdicts[n] + (f"   <- {'; '.join(notes)}" if notes else ""))
    counts = {v: sum(x == v for x in verdicts.values()) for v in ("DIFFER", "NaN", "unreliable")}
    n_agree = len(names) - sum(counts.values())
    print(f"{n_agree} agree, {counts['DIFFER']} differ (|z| >= {AGREE_Z:g} against {heads[0]}), "
          f"{counts['unreliable']} unreliable (sticky learned chain: no evidence either way), {counts['NaN']} NaN")
    print("tau_int in units of measurements; short: chain < 50 tau_int")
    for a, head in zip(analyses, heads):
        for line in proposal_lines(a.settings.get("proposals", {})):
            print(f"{head}: {line}")
        if "replicas" in a.settings:
            first, *rest = replica_lines(a)
            print(f"{head}: {first}")
            for line in rest:  # each replica's proposals, named by its file
                print(line)


def print_replica_compare(combined, names, zs, verdicts) -> None:
    """compare of one setup: the combined estimate, and the largest |z| of a replica against the others."""
    head = label(combined)
    files = [Path(r["file"]).name for r in combined.settings["replicas"]]
    a = combined.attrs
    print(f"{len(files)} files are replicas of one setup ({a['theory']} {a['params']} on "
          f"{'x'.join(map(str, a['shape']))}, {a['algorithm']}): each against the other {len(files) - 1} combined")
    w = max(12, *(len(n) for n in names))
    col = [_fmt(combined.estimates[n]) for n in names]
    wd, fw = max(len(head), *(len(c) for c in col)), max(len(f) for f in files)
    print(f"{'observable':<{w}}  {head:>{wd}} {'tau_int':>7}  {'max|z|':>6}  {'at':<{fw}}  verdict")
    for k, n in enumerate(names):
        i = max(range(len(zs)), key=lambda j: abs(zs[j][n]) if zs[j][n] == zs[j][n] else float("inf"))
        flags = sorted({f for f in combined.flags.get(n, []) if f != "short"})
        print(f"{n:<{w}}  {col[k]:>{wd}} {combined.estimates[n].tau_int:>7.3g}  {abs(zs[i][n]):>6.2f}  "
              f"{files[i]:<{fw}}  {verdicts[n]}" + (f"   <- {'; '.join(flags)}" if flags else ""))
    counts = {v: sum(x == v for x in verdicts.values()) for v in ("DIFFER", "NaN", "unreliable")}
    print(f"{len(names) - sum(counts.values())} agree, {counts['DIFFER']} differ (|z| >= {AGREE_Z:g} of a replica "
          f"against the others combined), {counts['unreliable']} unreliable (sticky learned chain: no evidence "
          f"either way), {counts['NaN']} NaN")
    print("tau_int (of the combined estimate) in units of measurements; short: chain < 50 tau_int")
    first, *rest = replica_lines(combined)
    print(f"{head}: {first}")
    for line in rest:
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def body() -> int:
        if args.skip < 0:
            raise ValueError(f"--skip must be >= 0, got {args.skip}")
        if args.command == "learned-action":
            return learned_action(args)
        return measure(args) if args.command == "measure" else compare(args)

    return run_reporting_errors(parser.prog, body, "nothing was stored", errors=(ValueError, OSError, KeyError))


def measure(args) -> int:
    if len(args.file) > 1:
        return measure_replicas(args)
    args.file = args.file[0]
    a = analyze(args.file, S=args.S, skip=args.skip, select=args.select, reweight=args.reweight)
    note = ""
    if not args.no_store:
        if a.attrs.get("status") == "complete":
            note = f"results stored in {store(a)}"
        else:
            note = "results not stored: the file is still being written (or its writer was killed)"
    if args.json:
        print(json.dumps(strict_json({"file": str(args.file), "settings": a.settings, "results": a.rows()})))
    else:
        print_measure(a)
        if note:
            print(note)
    return 0


def measure_replicas(args) -> int:
    """measure FILE FILE ...: the files as replicas of one ensemble (not stored: each file's own
    NAME.observables.json stays that of the file alone)."""
    if args.reweight:
        raise ValueError("--reweight takes one file of raw model samples, not replicas")
    a = analyze_replicas([str(f) for f in args.file], S=args.S, skip=args.skip, select=args.select)
    if args.json:
        print(json.dumps(strict_json({"files": [str(f) for f in args.file], "settings": a.settings,
                                      "results": a.rows()})))
        return 0
    print_measure(a)
    for line in replica_lines(a):
        print(line)
    setups = replica_groups(args.file)
    if len(setups) > 1:
        print(f"note: these files are {len(setups)} setups (algorithm or sampler settings differ): measured "
              f"together here; compare takes them as {len(setups)} ensembles")
    print("results of replicas are not stored (each file's NAME.observables.json is that of the file alone)")
    return 0


def _is_raw_model(path) -> bool:
    from samplers.ensemble import attrs_of, open_ensemble

    with open_ensemble(path) as f:
        return attrs_of(f).get("algorithm") == RAW_MODEL


def compare(args) -> int:
    """compare FILE...: the files grouped by setup (``replica_groups``), each group one ensemble
    (``analyze_replicas``; a single file is an ensemble of one replica), z-scores against the first.
    All files of one setup: two are compared file against file (as two setups are); three or more,
    each against the others combined (``replica_comparison``)."""
    if len(args.files) < 2:
        raise ValueError("compare needs at least two files")
    if args.plots is not None:
        from .plots import require_matplotlib
        require_matplotlib()
    groups = replica_groups(args.files)
    if len(groups) == 1 and len(args.files) > 2:
        return compare_replicas(args)
    if len(groups) == 1:
        groups = [[f] for f in args.files]
    analyses = [analyze(g[0], S=args.S, skip=args.skip, select=args.select,
                        reweight=args.reweight and _is_raw_model(g[0])) if len(g) == 1 else
                analyze_replicas(g, S=args.S, skip=args.skip, select=args.select) for g in groups]
    check_comparable(analyses)
    names, zs, verdicts = comparison(analyses, args.select)
    if args.json:
        print(json.dumps(strict_json({"baseline": analyses[0].path,
                                      "files": [{"file": a.path, "files": [str(f) for f in g],
                                                 "settings": a.settings, "results": a.rows()}
                                                for a, g in zip(analyses, groups)],
                                      "z": {n: [zs[i][n] for i in range(1, len(analyses))] for n in names},
                                      "verdict": verdicts})))
    else:
        print_compare(analyses, zs, verdicts)
        for a in analyses:
            print_reweighting(a)
    _compare_plots(args, analyses)
    if args.strict and any(v in ("DIFFER", "NaN") for v in verdicts.values()):
        return 1
    return 0


def compare_replicas(args) -> int:
    """compare of three or more files of one setup: each replica against the others combined."""
    files = [str(f) for f in args.files]
    combined, singles, names, zs, verdicts = replica_comparison(files, S=args.S, skip=args.skip, select=args.select)
    if args.json:
        print(json.dumps(strict_json({"replicas_of_one_setup": True, "files": files,
                                      "combined": {"settings": combined.settings, "results": combined.rows()},
                                      "replicas": [{"file": a.path, "settings": a.settings, "results": a.rows()}
                                                   for a in singles],
                                      "z": {n: [z[n] for z in zs] for n in names}, "verdict": verdicts})))
    else:
        print_replica_compare(combined, names, zs, verdicts)
    _compare_plots(args, singles)
    if args.strict and any(v in ("DIFFER", "NaN") for v in verdicts.values()):
        return 1
    return 0


def _compare_plots(args, analyses) -> None:
    if args.plots is None:
        return
    from .plots import comparison_plots
    written = comparison_plots([dataclasses.replace(a, path=label(a)) for a in analyses], args.plots)
    if not args.json:
        print(f"plots: {', '.join(str(p) for p in written)}")


def learned_action(args) -> int:
    """-ln q of the model against S over the file's configurations (observables/learned.py)."""
    from lattice import theory_from_attrs
    from samplers.ensemble import read_ensemble
    from samplers.training import load_model

    from . import learned

    if args.max_configs is not None and args.max_configs < 3:
        raise ValueError(f"--max-configs must be >= 3, got {args.max_configs}")
    if args.plots is not None:
        from .plots import require_matplotlib
        require_matplotlib()
    stop = None if args.max_configs is None else args.skip + args.max_configs
    ens = read_ensemble(args.file, start=args.skip, stop=stop)
    theory = theory_from_attrs(ens.attrs)
    model, _ = load_model(args.model)
    if model.theory != theory:
        mt = model.theory
        raise ValueError(f"the model {args.model} is for {mt.name} {mt.params()} on {'x'.join(map(str, mt.shape))}, "
                         f"but {args.file} holds {theory.name} {theory.params()} on {'x'.join(map(str, theory.shape))}")
    if len(ens.configs) < 3:
        raise ValueError(f"{args.file}: only {len(ens.configs)} configurations after --skip {args.skip}; "
                         "need at least 3")
    res = learned.learned_action(ens.configs, theory, model)
    fit, vortex = res["fit"], res.get("vortex")
    if args.json:
        doc = {"file": str(args.file), "model": str(args.model), "model_name": model.name,
               "theory": theory.name, "params": theory.params(), "shape": list(theory.shape),
               "skip": args.skip, "fit": fit.as_dict()}
        if vortex is not None:
            doc["vortex_map"] = {"model": vortex["model"].as_dict(), "reference": vortex["reference"].as_dict()}
        if "vortex_note" in res:
            doc["note"] = res["vortex_note"]
    else:
        print(f"{args.file}: {theory.name} {theory.params()} on {'x'.join(map(str, theory.shape))}, "
              f"model {args.model} ({model.name}), N = {fit.n} configurations (skip {args.skip})")
        print(f"fit -ln q = slope * S + offset:  slope = {fit.slope:.6g}  offset = {fit.offset:.6g}  "
              f"R^2 = {fit.r2:.6g}  residual std = {fit.residual_std:.4g}")
        print("(an exact model q = exp(-S)/Z gives slope 1, offset ln Z, R^2 1, residual std 0)")
        if vortex is not None:
            m, r = vortex["model"], vortex["reference"]
            print(f"vortex map (top-k plaquettes of the conditional surprise, k = vortices + antivortices): "
                  f"found {m.fraction_found:.3f} of the vortices (pooled {m.pooled_fraction_found:.3f}); "
                  f"random guess {m.random_baseline:.3f}; target's local conditional {r.fraction_found:.3f}  "
                  f"[{m.n_configs} configurations with vortices, {m.n_vortices} vortices + antivortices]")
        if "vortex_note" in res:
            print(f"note: {res['vortex_note']}")
    if args.plots is not None:
        from .plots import learned_action_plots
        written = learned_action_plots(res, ens.configs, args.plots, title=f"{Path(args.model).name} on "
                                       f"{Path(args.file).name}")
        if args.json:
            doc["plots"] = [str(p) for p in written]
        else:
            print(f"plots: {', '.join(str(p) for p in written)}")
    if args.json:
        print(json.dumps(doc, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
