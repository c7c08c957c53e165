"""Topological freezing in 2D U(1): tau_int(Q) and cost per independent Q sample of every sampler,
classical and learned, row by row against the best classical method (issue 16).

For each lattice L and coupling beta, every algorithm generates N configurations (one stored per
update, --every 1) through ``python -m generate`` (in process, one at a time, Numba and torch on one
thread), ``observables`` measures Q with the Gamma method, and the row reports

    acceptance, tau_int(Q) in updates (with its error; "frozen" where Q changed fewer than
    MIN_CHANGES times in the N updates: the Gamma method cannot resolve tau_int from a handful of
    jumps (one jump gives tau ~ 1/2), and k jumps in N updates only say tau_int(Q) is of order
    N / (k + 1) or more, so the row prints the rough bound N / (2 (k + 1)) and is never "best"), the sampling wall time (the file's sampling_time_s:
    the N updates, without compilation, model loading and thermalization, which the whole run's
    wall time beside it includes), cost per independent Q sample = sampling wall x 2 tau_int / N, for learned
    samplers also with the training time added (amortized over the stated N), and that cost over the
    best classical cost of the same (L, beta).

Algorithms (the --algorithm flags of each row in ALGORITHMS):
    hmc             HMC, leapfrog, step tuned to 0.8 acceptance, trajectory length 1
    or              heat bath + 3 over-relaxation sweeps (one update = 4 sweeps)
    hmc+winding     HMC with a whole-lattice winding (instanton) move after every trajectory
    tempering       parallel tempering in beta, heat bath per replica, the ladder of ``ladder(beta, L)``
    plaquette-mh    independence MH from independent von Mises plaquettes (exact density)
    learned-mh      the gauge flow (Haar prior) as independence proposal, trained by reverse KL
    learned-mh+pp   the same flow with the plaquette prior (--model-opt prior=plaquette)
    hybrid          HMC trajectories alternating with learned-mh steps of the Haar-prior flow

    PYTHONPATH=. python benchmarks/bench_topology.py [--L 8 16 32] [--beta 2 4 6 8] [--algorithms ...]
        [--learned-L 8] [--train-minutes 2] [--scale 1.0] [--chains K] [--reuse-model] [--quick]

--scale multiplies every N (the defaults in N_BASE); --quick is --scale 0.1 --L 8 --beta 2 6.
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import datetime
import json
import math
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import run_generate, train_reverse_kl_for
from lattice import make_theory
from observables.analysis import analyze, analyze_replicas
from samplers.ensemble import open_ensemble

CLASSICAL = {
    "hmc": ["--algorithm", "hmc"],
    "or": ["--algorithm", "overrelaxation", "--or-per-sweep", "3"],
    "hmc+winding": ["--algorithm", "hmc", "--winding-every", "1"],
    "tempering": ["--algorithm", "tempering", "--replica-algorithm", "heatbath"],  # + --ladder, per row
    "plaquette-mh": ["--algorithm", "plaquette-mh"],
}
LEARNED = {
    "learned-mh": ("haar", ["--algorithm", "learned-mh"]),
    "learned-mh+pp": ("plaquette", ["--algorithm", "learned-mh"]),
    "hybrid": ("haar", ["--algorithm", "hybrid"]),
}
ALGORITHMS = (*CLASSICAL, *LEARNED)
# configurations per algorithm at L = 8 (scaled by 8^2 / L^2 for the local algorithms, whose update
# costs ~ V, so each row takes about the same wall time; the independence samplers keep their N)
N_BASE = {"hmc": 100000, "or": 50000, "hmc+winding": 100000, "tempering": 20000, "plaquette-mh": 20000,
          "learned-mh": 50000, "learned-mh+pp": 50000, "hybrid": 5000}
MIN_CHANGES = 10  # fewer changes of Q than this: tau_int(Q) unresolved ("frozen")
SCALES_WITH_V = ("hmc", "or", "hmc+winding", "tempering", "hybrid")


def ladder(beta: float, L: int) -> str:
    """The tempering ladder of a row: geometric from beta = 2 (1 for a target of 2 or less), where Q
    moves freely at these volumes, to the target, with R ~ 6 (L / 8) ln(beta / low) / ln 3 rungs: the
    swap acceptance of a pair falls like exp(-c V (d beta / beta)^2), so the rung spacing shrinks like
    1 / L (6 rungs from 2 to 6 at L = 8 swap with 0.31-0.35, docs/tempering.md)."""
    low = 2.0 if beta > 2.0 else 1.0
    replicas = max(2, math.ceil(6 * (L / 8) * math.log(beta / low) / math.log(3.0)))
    return f"geometric:{low:g}:{beta:g}:{replicas}"


def n_configs(algo: str, L: int, scale: float) -> int:
    n = N_BASE[algo] * (64 / L**2 if algo in SCALES_WITH_V else 1.0)
    return max(200, int(n * scale))


def train_flow(L: int, beta: float, prior: str, minutes: float, run: Path) -> dict:
    """Reverse-KL training of the gauge flow (default hyperparameters, the given prior) for about
    ``minutes`` of CPU time (benchmarks.common.train_reverse_kl_for)."""
    hyper = {} if prior == "haar" else {"prior": prior}
    return train_reverse_kl_for("gauge-flow", make_theory("u1", (L, L), beta=beta), hyper, minutes, run,
                                eval_batch=4096)


def q_row(L: int, beta: float, algo: str, paths: list[Path], wall: float, n: int, train_s: float = 0.0,
          **extra) -> dict:
    """The figures of one chain, or of a chain set as replicas (N = all configurations): acceptance,
    tau_int(Q) in updates, costs per independent Q sample."""
    a = analyze(paths[0], select="Q") if len(paths) == 1 else analyze_replicas(paths, select="Q")
    q = np.asarray(a.series["Q"])
    est = a.estimates["Q"]
    changes = int(np.count_nonzero(np.diff(q)))
    frozen = changes < MIN_CHANGES
    tau = n / (2 * (changes + 1)) if frozen else est.tau_int_updates
    accepts, sampling = [], 0.0
    for path in paths:  # a chain set's files share its sampling time (each records the set's)
        with open_ensemble(path) as f:
            accepts.append(float(f.attrs.get("acceptance", math.nan)))
            sampling = max(sampling, float(f.attrs["sampling_time_s"]))
    acceptance = float(np.mean(accepts))
    row = {"L": L, "beta": beta, "algorithm": algo, "n": n, "acceptance": acceptance, "tau_int": tau,
           "tau_err": math.nan if frozen else est.tau_int_error * est.every, "frozen": frozen, "changes": changes,
           "short": "short" in a.flags.get("Q", []), "chi_t": float(np.mean(q**2)) / L**2,
           "sampling_s": sampling, "run_s": wall, "train_s": train_s, "cost_ms": 1e3 * sampling * 2 * tau / n,
           "cost_total_ms": 1e3 * (sampling + train_s) * 2 * tau / n, **extra}
    print(json.dumps(row), flush=True)
    return row


def chain_paths(out: Path, chains: int) -> list[Path]:
    return [out] if chains == 1 else [out.with_name(f"{out.stem}.chain{k}.h5") for k in range(chains)]


def out_path(folder: Path, L: int, beta: float, algo: str, chains: int) -> Path:
    return folder / f"u1_L{L}_b{beta:g}_{algo}{'' if chains == 1 else f'_K{chains}'}.h5"


def rescore(row: dict, folder: Path) -> dict:
    """A row of an earlier run measured again from its files (its run and training times kept)."""
    keep = {k: row[k] for k in ("model_ess", "steps") if k in row}
    K = row.get("chains", 1)
    paths = chain_paths(out_path(folder, row["L"], row["beta"], row["algorithm"], K), K)
    return q_row(row["L"], row["beta"], row["algorithm"], paths, row["run_s"], row["n"], row["train_s"], chains=K,
                 **keep)


def run_case(L: int, beta: float, algorithms: list[str], args) -> list[dict]:
    rows, theory = [], ["--theory", "u1", "--L", str(L), "--beta", str(beta)]
    for algo in algorithms:
        if algo in LEARNED and L not in args.learned_L:
            continue
        K = args.chains
        n = max(1, n_configs(algo, L, args.scale) // K) * K
        out = out_path(args.out, L, beta, algo, K)
        paths = chain_paths(out, K)
        flags = [*theory, "--n-configs", str(n // K), "--chains", str(K), "--seed", "1", "--out", str(out),
                 "--overwrite", "--quiet", "--n-therm", str(args.n_therm)]
        train_s, extra = 0.0, {}
        if algo in CLASSICAL:
            flags += CLASSICAL[algo] + (["--ladder", ladder(beta, L)] if algo == "tempering" else [])
        else:
            prior, algo_flags = LEARNED[algo]
            run = args.runs / f"u1_L{L}_b{beta:g}_{prior}"
            if (run / "summary.json").exists() and args.reuse_model:
                summary = json.loads((run / "summary.json").read_text())
            else:
                summary = train_flow(L, beta, prior, args.train_minutes, run)
            train_s = summary["train_time_s"]
            extra = {"model_ess": summary.get("ess"), "steps": summary.get("steps")}
            flags += algo_flags + ["--proposal", str(run), "--threads", "1"]
        try:
            wall = run_generate(flags)
        except RuntimeError as e:
            print(json.dumps({"L": L, "beta": beta, "algorithm": algo, "error": str(e)}), flush=True)
            continue
        rows.append(q_row(L, beta, algo, paths, wall, n, train_s, chains=K, **extra))
    return rows


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def print_table(rows: list[dict]) -> None:
    """The RESULTS.md table: per (L, beta) the best classical cost, and each row's cost over it."""
    print("\n| L | beta | algorithm | N | acceptance | tau_int(Q) (updates) | sampling s (run s) | training s | "
          "cost ms / indep. Q (incl. training) | / best classical |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted({(r["L"], r["beta"]) for r in rows}):
        case = [r for r in rows if (r["L"], r["beta"]) == key]
        classical = [r for r in case if r["algorithm"] in CLASSICAL]
        best = min(classical, key=lambda r: r["cost_total_ms"] if not r["frozen"] else math.inf, default=None)
        for r in case:
            tau = (f">= {r['tau_int']:.0f} (Q frozen: {r['changes']} changes)" if r["frozen"] else
                   f"{fmt(r['tau_int'])} ± {fmt(r['tau_err'], 2)}" + (" (short)" if r["short"] else ""))
            cost = r["cost_total_ms"]
            ratio = cost / best["cost_total_ms"] if best is not None and not r["frozen"] else math.nan
            mark = " **best classical**" if r is best else ""
            chains = f" (K = {r['chains']})" if r.get("chains", 1) > 1 else ""
            bound = ">= " if r["frozen"] else ""
            print(f"| {key[0]} | {key[1]:g} | {r['algorithm']}{chains}{mark} | {r['n']} | {fmt(r['acceptance'])} | {tau} | "
                  f"{r['sampling_s']:.1f} ({r['run_s']:.1f}) | {r['train_s']:.0f} | {bound}{fmt(cost)} | {fmt(ratio)} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--L", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--beta", type=float, nargs="+", default=[2.0, 4.0, 6.0, 8.0])
    ap.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    ap.add_argument("--learned-L", type=int, nargs="+", default=[8], help="lattices with learned rows")
    ap.add_argument("--train-minutes", type=float, default=2.0, help="CPU-time budget of each model's training")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every N")
    ap.add_argument("--n-therm", type=int, default=500)
    ap.add_argument("--chains", type=int, default=1, help="run every algorithm as a set of K chains (N / K each; "
                    "one model pass for all chains' proposals), analysed as replicas")
    ap.add_argument("--quick", action="store_true", help="--scale 0.1 --L 8 --beta 2 6")
    ap.add_argument("--reuse-model", action="store_true", help="skip training where the run folder has a model")
    ap.add_argument("--out", type=Path, default=Path("data/bench_topology"))
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_topology"))
    ap.add_argument("--json", type=Path, help="also write the rows to this file")
    ap.add_argument("--rescore", type=Path, help="generate nothing: measure again the files of the run whose rows "
                    "this JSON file holds (in --out) and print the table")
    args = ap.parse_args(argv)
    if args.quick:
        args.scale, args.L, args.beta = 0.1, [8], [2.0, 6.0]
    torch.set_num_threads(1)
    print(f"Topology in 2D U(1) (issue 16), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"1 thread; scale {args.scale:g}, training {args.train_minutes:g} CPU-min per model", flush=True)
    if args.rescore:
        rows = [rescore(r, args.out) for r in json.loads(args.rescore.read_text()) if "error" not in r]
        print_table(rows)
        return
    rows = []
    for L in args.L:
        for beta in args.beta:
            rows += run_case(L, beta, args.algorithms, args)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
