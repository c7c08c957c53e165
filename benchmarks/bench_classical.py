"""Classical baselines (issue 8): heat bath, over-relaxation and Wolff clusters beside HMC and Metropolis.

For each case and lattice size L, every algorithm generates a chain through ``python -m generate``
(in process, as bench_learned.py does), and the slow observable is measured with the project's
Gamma method (observables.stats.gamma_method, automatic windowing S = 2, as ``python -m observables``):
Q for U(1) (and the plaquette P, where every update is stored), the energy per site e for XY, |M|
for phi^4 (M at the learned samplers' phi^4 point, as bench_learned.py). Each row reports

    tau_int in updates and in sweep-equivalents (unit below), the wall time per update (the generate run's
    sampling time / updates: the Numba compile / cache load and the thermalization excluded, the writing of
    every k-th configuration to the HDF5 file included, ~10-20 us per stored configuration here), and the
    cost per independent sample = wall x 2 tau_int / N (N updates) = wall per update x 2 tau_int(updates),
    and the same as a ratio to HMC measured in the same run (HMC cost / this: > 1 is cheaper than HMC).

Units of one update: heatbath = 1 sweep; heatbath+ORK (overrelaxation: a heat-bath sweep, then K = 1 or 3
over-relaxation sweeps) = 1 + K sweeps (an over-relaxation sweep counted as a whole sweep); metropolis =
1 sweep; hmc = 1 trajectory (counted as one "sweep-equivalent"; trajectory length 1, step size tuned to
acceptance 0.8 as generate does); wolff (pure clusters, XY) = 1 single cluster = <cluster_fraction>
sweep-equivalents; wolff+metropolis (phi^4) = 1 Metropolis sweep + 1 cluster = 1 + <cluster_fraction>
(samplers/wolff.py; the mean over the run from the sampler's report).

Then the dynamical exponent z from a weighted least-squares fit log tau_int(sweep-eq.) = a + z log L per
algorithm (weights from the Gamma-method errors of tau_int; the error of z scaled by sqrt(chi^2/dof) when
that exceeds 1), the two goals of issue 8 (PASS / MISS), and a plot of the cost per independent sample
against L per algorithm (benchmarks/classical_cost_vs_L.png; needs matplotlib, else skipped).

Everything runs single-threaded (NUMBA_NUM_THREADS = OMP_NUM_THREADS = 1), one chain at a time. Chains
longer than the stored ensemble use --every (stored configurations every k updates; tau_int is then
resolved only down to ~k updates: rows with tau_int < 1 measurement are marked "<="). A chain shorter
than 50 tau_int is marked "(short)": its tau_int is a lower estimate, a result rather than a failure.

    PYTHONPATH=. python benchmarks/bench_classical.py [--cases u1_b2 u1_b4 u1_b6 u1_b7 xy phi4 learned_points]
        [--quick] [--plot benchmarks/classical_cost_vs_L.png] [--json data/bench_classical/results.json]
    PYTHONPATH=. python benchmarks/bench_classical.py --replot data/bench_classical/results.json   # tables + plot again
"""
from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import datetime
import io
import json
import math
import platform
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

import generate
import samplers.chain
from lattice import theory_from_attrs
from observables import theories
from observables.stats import SHORT_CHAIN_FACTOR, gamma_method
from observables.u1 import average_plaquette, topological_charge
from samplers.ensemble import read_ensemble

ALGOS = {  # label -> generate flags, chain-length factor (x the case's n), sweep-equivalents of one update (None: from the run)
    "heatbath": (["--algorithm", "heatbath"], 1.0, 1.0),
    "heatbath+OR1": (["--algorithm", "overrelaxation", "--or-per-sweep", "1"], 0.7, 2.0),
    "heatbath+OR3": (["--algorithm", "overrelaxation", "--or-per-sweep", "3"], 0.5, 4.0),
    "hmc": (["--algorithm", "hmc"], 1.0, 1.0),
    "metropolis": (["--algorithm", "metropolis"], 1.0, 1.0),
    "wolff": (["--algorithm", "wolff", "--metropolis-sweeps", "0", "--clusters-per-sweep", "1"], 1.0, None),
    "wolff+metropolis": (["--algorithm", "wolff", "--metropolis-sweeps", "1", "--clusters-per-sweep", "1"], 1.0, None),
}
U1_ALGOS = ("heatbath", "heatbath+OR1", "heatbath+OR3", "hmc", "metropolis")
XY_ALGOS = ("wolff", "hmc", "metropolis", "heatbath+OR3")
PHI4_ALGOS = ("wolff+metropolis", "hmc", "metropolis")

# case -> theory, parameters, observable, algorithms, start (init; cold at beta >= 6: Q = 0, the likeliest sector, so
# that the thermalization need not wait for a tunnelling), and per L: (updates per chain, store every k, thermalization)
CASES = {
    "u1_b2": dict(theory="u1", params={"beta": 2.0}, obs="Q", algos=U1_ALGOS,
                  sizes={8: (20000, 1, 500), 16: (20000, 1, 500), 32: (20000, 1, 500)}),
    "u1_b4": dict(theory="u1", params={"beta": 4.0}, obs="Q", algos=U1_ALGOS,
                  sizes={8: (100000, 2, 2000), 16: (100000, 2, 2000), 32: (40000, 2, 2000)}),
    # tau_int(Q) of every local algorithm is ~10^3 updates and more here
    "u1_b6": dict(theory="u1", params={"beta": 6.0}, obs="Q", algos=U1_ALGOS, init="cold",
                  sizes={8: (1000000, 50, 5000), 16: (400000, 20, 5000)}),
    "u1_b7": dict(theory="u1", params={"beta": 7.0}, obs="Q", algos=U1_ALGOS, init="cold",
                  sizes={8: (1000000, 50, 5000)}),
    "xy": dict(theory="xy", params={"beta": 1.12}, obs="e", algos=XY_ALGOS,
               sizes={8: (50000, 1, 1000), 16: (50000, 1, 1000), 32: (50000, 2, 1000), 64: (40000, 4, 2000)}),
    "phi4": dict(theory="phi4", params={"kappa": 0.27, "lam": 0.022}, obs="|M|", algos=PHI4_ALGOS,
                 sizes={8: (50000, 1, 1000), 16: (50000, 1, 1000), 32: (50000, 2, 1000), 64: (40000, 4, 2000)}),
    # the points at which bench_learned.py measured the learned samplers (issues 5, 6), for the comparison
    "learned_points": dict(points=[
        dict(theory="xy", params={"beta": 1.0}, obs="e", algos=XY_ALGOS, L=8, n=(20000, 1, 500)),
        dict(theory="xy", params={"beta": 1.1}, obs="e", algos=XY_ALGOS, L=8, n=(20000, 1, 500)),
        dict(theory="xy", params={"beta": 1.0}, obs="e", algos=XY_ALGOS, L=16, n=(20000, 1, 500)),
        dict(theory="xy", params={"beta": 1.1}, obs="e", algos=XY_ALGOS, L=16, n=(20000, 1, 500)),
        dict(theory="phi4", params={"m2": -4.0, "g": 8.0}, obs="M", algos=PHI4_ALGOS, L=8, n=(20000, 1, 500)),
    ]),
}

# Learned samplers, quoted from benchmarks/RESULTS.md (issue 5 and 6 sections; bench_learned.py, 4-6 CPU-minutes
# of reverse-KL training, NOT re-run here): point -> [(sampler, tau_int in updates, cost ms / indep. without and
# with the training amortized over N = 20000)]. Their wall time is the whole generate run (model load,
# compilation, 500 thermalization updates included), a small overestimate next to the sampling-only figures here.
LEARNED = {
    ("u1", "beta=2", 8): [("gauge-flow learned-mh", 2.45, 5.89, 81.6), ("gauge-flow hybrid", 1.32, 17.2, 58.0)],
    ("u1", "beta=4", 8): [("gauge-flow learned-mh", 80, 93.8, 2110), ("gauge-flow hybrid", 7.8, 98, 294)],
    ("u1", "beta=6", 8): [("gauge-flow learned-mh (short)", 6500, 7850, 24100), ("gauge-flow hybrid", 85, 1140, 3260)],
    ("xy", "beta=1.0", 8): [("autoregressive learned-mh", 6.35, 6.56, 193), ("autoregressive hybrid", 1.88, 3.41, 58.8)],
    ("xy", "beta=1.1", 8): [("circular-flow learned-mh (2 DIFFER)", 46, 144, 1290), ("circular-flow hybrid", 2.29, 20.6, 77.5),
                            ("autoregressive learned-mh", 22.6, 20.3, 574), ("autoregressive hybrid", 1.48, 2.35, 38.8)],
    ("xy", "beta=1.0", 16): [("autoregressive learned-mh", 50, 376, 2400), ("autoregressive hybrid", 8.4, 73.5, 413)],
    ("xy", "beta=1.1", 16): [("autoregressive learned-mh", 84, 1100, 6350), ("autoregressive hybrid", 4.5, 48.9, 329)],
    ("phi4", "m2=-4.0 g=8.0", 8): [("realnvp learned-mh (z2)", 1.41, 2.19, 32.3), ("realnvp hybrid (z2)", 0.87, 3.51, 22.1),
                                   ("autoregressive learned-mh (z2)", 1.22, 2.63, 35.6),
                                   ("autoregressive hybrid (z2)", 0.77, 2.83, 23.7)],
}


@contextmanager
def capture_summary():
    """The RunSummary of the generate run inside the block (full-precision sampling time, sampler report)."""
    box = {}
    original = samplers.chain.run_chain

    def spy(*args, **kwargs):
        box["summary"] = original(*args, **kwargs)
        return box["summary"]

    samplers.chain.run_chain = spy
    try:
        yield box
    finally:
        samplers.chain.run_chain = original


def run_generate(args: list[str]):
    """One `python -m generate` run in process (its printout silenced): (total wall s, RunSummary)."""
    t0 = time.perf_counter()
    with capture_summary() as box, redirect_stdout(io.StringIO()):
        code = generate.main(args)
    if code != 0:
        raise RuntimeError(f"generate failed: {' '.join(args)}")
    return time.perf_counter() - t0, box["summary"]


def measure(path: Path, names: list[str]) -> dict:
    """Gamma-method estimates of the named observables of an ensemble file (U(1): only P and Q are computed,
    the Wilson loops of the full analysis would dominate the benchmark's time)."""
    ens = read_ensemble(path)
    theory = theory_from_attrs(ens.attrs)
    every = int(ens.attrs.get("every", 1))
    if theory.name == "u1":
        series = {}
        P, Q = [], []
        for i in range(0, len(ens.configs), 4096):
            c = ens.configs[i:i + 4096]
            P.append(average_plaquette(c))
            Q.append(topological_charge(c))
        series = {"P": np.concatenate(P), "Q": np.concatenate(Q).astype(np.float64)}
    else:
        series = theories.primaries(ens.configs, theory)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ShortChainWarning: recorded in the row instead
        for name in names:
            x = series[name]
            if np.ptp(x) == 0:  # e.g. Q frozen in one sector for the whole chain: no autocorrelation measurable
                out[name] = None
                continue
            out[name] = gamma_method(x, S=2.0, every=every, name=name)
    return out


def jobs(cases: list[str], quick: bool):
    """(case, theory, params, obs, L, algos, n, every, n_therm, init) for the selected cases."""
    for cname in cases:
        case = CASES[cname]
        points = case.get("points") or [dict(case, L=L, n=n) for L, n in case["sizes"].items()]
        for p in points:
            n, every, n_therm = p["n"]
            if quick:
                n, n_therm = max(2000 * every, n // 10), min(n_therm, 500)
                if p["L"] > 16 and cname.startswith("u1") or p["L"] > 32:
                    continue
            yield cname, p["theory"], p["params"], p["obs"], p["L"], p["algos"], n, every, n_therm, p.get("init", "hot")


def run_all(args) -> list[dict]:
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)
    for cname, tname, params, obs, L, algos, n, every, n_therm, init in jobs(args.cases, args.quick):
        theory_flags = ["--theory", tname, "--L", str(L), *[f"--{k}={v}" for k, v in params.items()]]
        pstr = " ".join(f"{k}={v}" for k, v in params.items())
        for algo in algos:
            flags, factor, sweeps = ALGOS[algo]
            n_algo = int(round(n * factor / every)) * every
            out = args.out / f"{cname}_{tname}_L{L}_{pstr.replace(' ', '_')}_{algo}.h5"
            total, summary = run_generate([*flags, *theory_flags, "--n-configs", str(n_algo // every),
                                           "--every", str(every), "--n-therm", str(n_therm), "--init", init, "--seed", "1",
                                           "--out", str(out), "--overwrite", "--quiet"])
            t0 = time.perf_counter()
            names = [obs, "P"] if tname == "u1" else [obs]
            est = measure(out, names)
            t_measure = time.perf_counter() - t0
            if not args.keep:
                out.unlink()
            if sweeps is None:
                sweeps = float(summary.report.get("sweeps/update", math.nan))
            wall_update = summary.wall_time / summary.n_updates
            row = {"case": cname, "theory": tname, "params": pstr, "L": L, "algorithm": algo, "obs": obs,
                   "n_updates": summary.n_updates, "every": every, "acceptance": summary.acceptance,
                   "sweeps_per_update": sweeps, "wall_us_update": 1e6 * wall_update, "wall_total_s": total,
                   "measure_s": t_measure}
            for name, e in est.items():
                key = "" if name == obs else f"_{name}"
                if e is None:
                    row.update({f"tau{key}": math.nan, f"tau_err{key}": math.nan, f"short{key}": True,
                                f"resolved{key}": False, f"frozen{key}": True})
                    continue
                row.update({f"tau{key}": e.tau_int_updates, f"tau_err{key}": e.tau_int_error * every,
                            f"short{key}": bool(e.n < SHORT_CHAIN_FACTOR * e.tau_int),
                            f"resolved{key}": bool(every == 1 or e.tau_int >= 1.0), f"frozen{key}": False,
                            f"n_over_tau{key}": e.n / e.tau_int,
                            f"cost_us{key}": 1e6 * wall_update * 2 * e.tau_int_updates})
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------------------------------------- report
def fmt_tau(r: dict, key: str = "") -> str:
    if r.get(f"frozen{key}"):
        return "frozen (one Q sector)"
    tau, err = r[f"tau{key}"], r[f"tau_err{key}"]
    s = f"{tau:.3g} ± {err:.2g}"
    if not r[f"resolved{key}"]:
        s = "<= " + s
    if r[f"short{key}"]:
        s += " (short)"
    return s


def point_key(r: dict) -> tuple:
    return r["case"], r["theory"], r["params"], r["L"]


def table(rows: list[dict]) -> list[str]:
    """Markdown table of the rows; the plaquette columns only where some row measured P at every update."""
    with_p = any("cost_us_P" in r and r["every"] == 1 for r in rows)
    out = ["| case | L | algorithm | updates N | sweep-eq. / update | acceptance | tau_int (updates) |"
           " tau_int (sweep-eq.) | N / tau_int | wall us / update | cost us / indep. | HMC cost / this |"
           + (" tau_int(P) (updates) | cost us / indep. P | HMC cost(P) / this |" if with_p else ""),
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if with_p else "")]
    hmc = {point_key(r): r for r in rows if r["algorithm"] == "hmc"}
    for r in rows:
        h = hmc.get(point_key(r))
        tau_sw = r["tau"] * r["sweeps_per_update"]
        ratio = h["cost_us"] / r["cost_us"] if h and "cost_us" in r else math.nan
        if not with_p:
            pcol = ""
        elif r["every"] == 1 and "cost_us_P" in r and h:
            pcol = f" {fmt_tau(r, '_P')} | {r['cost_us_P']:.3g} | {h['cost_us_P'] / r['cost_us_P']:.2g}x |"
        else:
            pcol = " — | — | — |"
        cost = f"{r['cost_us']:.3g}" if "cost_us" in r else "—"
        ntau = f"{r['n_over_tau']:.0f}" if "n_over_tau" in r else "—"
        out.append(f"| {r['theory']} {r['params']} ({r['obs']}) | {r['L']} | {r['algorithm']} | {r['n_updates']} | "
                   f"{r['sweeps_per_update']:.3g} | {r['acceptance']:.3f} | {fmt_tau(r)} | {tau_sw:.3g} | {ntau} | "
                   f"{r['wall_us_update']:.3g} | {cost} | {ratio:.2g}x |{pcol}")
    return out


def fit_z(Ls, taus, errs):
    """Weighted least squares log tau = a + z log L: (z, dz, chi2/dof or nan, n points)."""
    x, y = np.log(np.asarray(Ls, float)), np.log(np.asarray(taus, float))
    s = np.asarray(errs, float) / np.asarray(taus, float)
    w = 1.0 / s**2
    A = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(A.T @ (A * w[:, None]))
    a, z = cov @ (A.T @ (w * y))
    dof = len(x) - 2
    chi2 = float(np.sum(w * (y - a - z * x) ** 2))
    dz = math.sqrt(cov[1, 1])
    red = chi2 / dof if dof > 0 else math.nan
    if dof > 0 and red > 1:
        dz *= math.sqrt(red)
    return float(z), dz, red, len(x)


def z_table(rows: list[dict]) -> tuple[list[str], dict]:
    out = ["| case | algorithm | L values | z (tau_int in sweep-eq. ~ L^z) | chi^2/dof | note |",
           "|---|---|---|---:|---:|---|"]
    zs = {}
    groups = {}
    for r in rows:
        if r["case"] == "learned_points":
            continue
        groups.setdefault((r["case"], r["theory"], r["params"], r["obs"], r["algorithm"]), []).append(r)
    for (cname, tname, params, obs, algo), rs in groups.items():
        good = [r for r in rs if not r.get("frozen") and r["tau"] > 0 and r["tau_err"] > 0]
        if len(good) < 2:
            continue
        Ls = [r["L"] for r in good]
        taus = [r["tau"] * r["sweeps_per_update"] for r in good]
        errs = [r["tau_err"] * r["sweeps_per_update"] for r in good]
        z, dz, red, npts = fit_z(Ls, taus, errs)
        notes = []
        if any(r["short"] for r in good):
            notes.append("short chain(s) at L = " + ", ".join(str(r["L"]) for r in good if r["short"]))
        if any(not r["resolved"] for r in good):
            notes.append("tau below the storage interval at L = " + ", ".join(str(r["L"]) for r in good if not r["resolved"]))
        if npts == 2:
            notes.append("2 points: exact fit")
        zs[(cname, algo)] = (z, dz)
        chi = f"{red:.2g}" if math.isfinite(red) else "—"
        out.append(f"| {tname} {params} ({obs}) | {algo} | {', '.join(map(str, Ls))} | {z:.2f} ± {dz:.2f} | {chi} | "
                   f"{'; '.join(notes)} |")
    return out, zs


def goals(rows: list[dict]) -> list[str]:
    out = []
    w = [r for r in rows if r["case"] == "xy" and r["L"] == 32 and r["algorithm"] == "wolff"]
    if w:
        r = w[0]
        tau_sw = r["tau"] * r["sweeps_per_update"]
        err_sw = r["tau_err"] * r["sweeps_per_update"]
        out.append(f"- Wolff on XY, L = 32, beta = 1.12: tau_int(e) = {tau_sw:.3g} ± {err_sw:.2g} sweep-equivalents "
                   f"({r['tau']:.3g} single-cluster updates of {r['sweeps_per_update']:.3f} V sites) (goal < 5): "
                   f"**{'PASS' if tau_sw < 5 else 'MISS'}**")
    else:
        out.append("- Wolff on XY, L = 32: not run (case xy)")
    hmc = {point_key(r): r for r in rows if r["algorithm"] == "hmc"}
    for r in rows:
        if r["case"] != "u1_b2" or not r["algorithm"].startswith("heatbath+OR") or "cost_us_P" not in r:
            continue
        h = hmc[point_key(r)]
        ok = r["cost_us_P"] < h["cost_us_P"]
        out.append(f"- {r['algorithm']} vs HMC, U(1) L = {r['L']}, beta = 2, per independent plaquette sample: "
                   f"{r['cost_us_P']:.3g} us (tau_int(P) {r['tau_P']:.3g} ± {r['tau_err_P']:.2g} updates, "
                   f"{r['wall_us_update']:.3g} us/update) vs HMC {h['cost_us_P']:.3g} us (tau_int(P) "
                   f"{h['tau_P']:.3g} ± {h['tau_err_P']:.2g} trajectories, {h['wall_us_update']:.3g} us/trajectory), "
                   f"ratio {h['cost_us_P'] / r['cost_us_P']:.2g}x: **{'PASS' if ok else 'MISS'}**")
    return out


def learned_table(rows: list[dict]) -> list[str]:
    """The learned samplers' quoted costs beside the best classical algorithm at the same point."""
    out = ["| point | sampler | tau_int (updates) | cost ms / indep. | incl. training ms / indep. | "
           "best classical here (cost ms / indep.) | learned / best classical |",
           "|---|---|---:|---:|---:|---|---:|"]
    for (tname, pstr, L), entries in LEARNED.items():
        cands = [r for r in rows if r["theory"] == tname and r["L"] == L and "cost_us" in r and
                 _same_params(r["params"], pstr)]
        if cands:
            best = min(cands, key=lambda r: r["cost_us"])
            bstr = f"{best['algorithm']} ({best['cost_us'] / 1e3:.3g})" + (" (short)" if best["short"] else "")
        else:
            best, bstr = None, "not run"
        for name, tau, cost, total in entries:
            ratio = f"{cost / (best['cost_us'] / 1e3):.3g}x" if best else "—"
            out.append(f"| {tname} L={L} {pstr} | {name} | {tau:g} | {cost:g} | {total:g} | {bstr} | {ratio} |")
    return out


def _same_params(a: str, b: str) -> bool:
    def parse(s):
        return {k: float(v) for k, v in (kv.split("=") for kv in s.split())}
    return parse(a) == parse(b)


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install -e '.[plot]')")
        return
    cases = [c for c in dict.fromkeys(r["case"] for r in rows) if c != "learned_points"]
    cases = [c for c in cases if len({r["L"] for r in rows if r["case"] == c}) > 1]
    if not cases:
        print("no case with more than one L: no plot")
        return
    colours = {a: f"C{i}" for i, a in enumerate(ALGOS)}
    ncol = min(3, len(cases))
    nrow = -(-len(cases) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    for ax in axes.flat[len(cases):]:
        ax.set_visible(False)
    for ax, cname in zip(axes.flat, cases):
        rs = [r for r in rows if r["case"] == cname and "cost_us" in r]
        for algo in dict.fromkeys(r["algorithm"] for r in rs):
            pts = sorted((r for r in rs if r["algorithm"] == algo), key=lambda r: r["L"])
            L = [r["L"] for r in pts]
            c = [r["cost_us"] for r in pts]
            e = [r["cost_us"] * r["tau_err"] / r["tau"] for r in pts]
            ax.errorbar(L, c, yerr=e, marker="o", ms=3, capsize=2, lw=1, label=algo, color=colours.get(algo))
            for r in pts:
                if r["short"]:
                    ax.plot([r["L"]], [r["cost_us"]], marker="o", ms=8, mfc="none", mec="gray")
        r0 = rs[0]
        ax.set(xscale="log", yscale="log", xlabel="L", title=f"{r0['theory']} {r0['params']} ({r0['obs']})")
        ax.set_xticks(sorted({r["L"] for r in rs}))
        ax.set_xticklabels([str(x) for x in sorted({r["L"] for r in rs})])
        ax.minorticks_off()
        ax.legend(fontsize=6)
    for row in axes:
        row[0].set_ylabel("cost per indep. sample (us)")
    fig.suptitle("wall x 2 tau_int / N, one core (open circles: chain < 50 tau_int)", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    print(f"plot: {path}")


def report(rows: list[dict], args) -> None:
    groups = {}
    for r in rows:  # one table per theory; the learned samplers' points apart
        groups.setdefault("learned_points" if r["case"] == "learned_points" else r["theory"], []).append(r)
    for name, rs in groups.items():
        print(f"\n{name}:\n\n" + "\n".join(table(rs)))
    zl, _ = z_table(rows)
    print("\nDynamical exponents (weighted fit of log tau_int in sweep-equivalents against log L):\n")
    print("\n".join(zl))
    print("\nGoals (issue 8):\n")
    print("\n".join(goals(rows)))
    print("\nLearned samplers, quoted from RESULTS.md (issues 5, 6; not re-run), beside the best classical "
          "algorithm measured here at the same point:\n")
    print("\n".join(learned_table(rows)))
    if args.plot:
        plot(rows, args.plot)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--quick", action="store_true", help="chains a tenth as long, no L = 64 (nor U(1) L = 32)")
    ap.add_argument("--out", type=Path, default=Path("data/bench_classical"), help="folder of the ensemble files")
    ap.add_argument("--keep", action="store_true", help="keep the ensemble files (deleted after measuring otherwise)")
    ap.add_argument("--json", type=Path, help="write the rows here (default: OUT/results.json)")
    ap.add_argument("--plot", type=Path, default=Path("benchmarks/classical_cost_vs_L.png"),
                    help="cost-vs-L plot ('' for none)")
    ap.add_argument("--replot", type=Path, help="print the tables and plot from a results JSON, run nothing")
    args = ap.parse_args(argv)
    if args.plot is not None and str(args.plot) in ("", "."):
        args.plot = None
    if args.replot:
        rows = json.loads(args.replot.read_text())["rows"]
        report(rows, args)
        return
    t0 = time.perf_counter()
    header = (f"Classical baselines (issue 8), {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Numba single-threaded, "
              f"one chain at a time; cases {' '.join(args.cases)}{' (quick)' if args.quick else ''}")
    print(header, flush=True)
    rows = run_all(args)
    elapsed = time.perf_counter() - t0
    print(f"\ntotal wall time {elapsed:.0f} s")
    path = args.json or args.out / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"header": header, "elapsed_s": elapsed, "rows": rows}, indent=1))
    print(f"rows: {path}")
    report(rows, args)


if __name__ == "__main__":
    main()
