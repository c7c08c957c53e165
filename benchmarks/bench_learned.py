"""Learned proposals against HMC (issue 5): cost per effectively independent sample.

For each case: train a model from the action (reverse KL) for a CPU-time budget, then generate the
same number of configurations with HMC, learned-mh and hybrid (1 HMC trajectory per proposal)
through ``python -m generate``, measure each with ``python -m observables``, and report

    acceptance, tau_int of the slow observable (Q for U(1), M for phi^4, e for XY) in updates,
    wall time of the generation (model loading, compilation and thermalization included),
    cost per independent sample = wall x 2 tau_int / N, and the same with the training time added
    (amortized over the N configurations),
    and how many observables `observables compare` finds to DIFFER from HMC (|z| >= 3).

Training: Adam, batch 64, lr 3e-3 with the cosine schedule, the step count set to fill the budget.
Everything runs on one core (torch and Numba single-threaded), one process at a time, so the
timings compare like with like.

    PYTHONPATH=. python benchmarks/bench_learned.py [--cases u1_b2 u1_b4 u1_b6 phi4 xy phi4_ar xy_ar xy_b11_ar xy16_ar xy16_b11_ar] [--train-minutes 4] [--chains K]

With --chains K every algorithm runs as a chain set of K chains of N / K configurations each
(``generate --chains K``), analysed as replicas of one ensemble (observables.analysis.analyze_replicas):
the cost per independent sample is then the set's wall time x 2 tau_int / N, N = all configurations.
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

import torch

from benchmarks.common import cost_row, print_cost_table, run_generate, train_reverse_kl_for
from lattice import make_theory
from observables.analysis import analyze, analyze_replicas, check_comparable
from samplers.ensemble import open_ensemble

CASES = {  # name -> theory, model + hyperparameters, configurations, slow observable, extra generate flags
    "u1_b2": dict(theory=("u1", 8, {"beta": 2.0}), model="gauge-flow", hyper={}, n=20000, obs="Q"),
    "u1_b4": dict(theory=("u1", 8, {"beta": 4.0}), model="gauge-flow", hyper={}, n=20000, obs="Q"),
    # HMC's tau_int(Q) is ~10^3 here: a long chain to measure it; hybrid (one model pass per update on a
    # single configuration, ~7 ms) runs a tenth of it
    "u1_b6": dict(theory=("u1", 8, {"beta": 6.0}), model="gauge-flow", hyper={}, n=200000, n_hybrid=20000, obs="Q"),
    "phi4": dict(theory=("phi4", 8, {"m2": -4.0, "g": 8.0}), model="realnvp",
                 hyper={"n_layers": 8, "hidden": (16, 16)}, n=20000, obs="M", flags=["--symmetrize", "z2"]),
    "xy": dict(theory=("xy", 8, {"beta": 1.1}), model="circular-flow", hyper={}, n=20000, obs="e"),
    # issue 6: the autoregressive (PixelCNN, von Mises mixtures) proposal, trained with the VAN estimator
    "phi4_ar": dict(theory=("phi4", 8, {"m2": -4.0, "g": 8.0}), model="autoregressive", hyper={}, n=20000, obs="M",
                    flags=["--symmetrize", "z2"]),
    "xy_ar": dict(theory=("xy", 8, {"beta": 1.0}), model="autoregressive", hyper={}, n=20000, obs="e"),
    "xy_b11_ar": dict(theory=("xy", 8, {"beta": 1.1}), model="autoregressive", hyper={}, n=20000, obs="e"),
    "xy16_ar": dict(theory=("xy", 16, {"beta": 1.0}), model="autoregressive", hyper={}, n=20000, obs="e"),
    "xy16_b11_ar": dict(theory=("xy", 16, {"beta": 1.1}), model="autoregressive", hyper={}, n=20000, obs="e"),
}
ALGORITHMS = ("hmc", "learned-mh", "hybrid")


def train_for(case: dict, minutes: float, run: Path) -> dict:
    """Reverse-KL training of the case's model for about ``minutes`` of CPU time (batch 64, lr 3e-3)."""
    name, L, params = case["theory"]
    return train_reverse_kl_for(case["model"], make_theory(name, (L, L), **params), case["hyper"], minutes, run)


def mean_acceptance(paths: list[Path]) -> float:
    """The acceptance of a chain set: the mean over its chains' files."""
    values = []
    for p in paths:
        with open_ensemble(p) as f:
            values.append(float(f.attrs.get("acceptance", math.nan)))
    return sum(values) / len(values)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--train-minutes", type=float, default=4.0, help="CPU-time budget of each model's training")
    ap.add_argument("--n", type=int, help="configurations per algorithm (default: the case's)")
    ap.add_argument("--out", type=Path, default=Path("data/bench_learned"))
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_learned"))
    ap.add_argument("--chains", type=int, default=1, help="run every algorithm as a set of K chains")
    ap.add_argument("--reuse-model", action="store_true", help="skip training if the run folder holds a model")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"Learned proposals vs HMC (issue 5), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"training budget {args.train_minutes:g} CPU-minutes per model", flush=True)
    rows = []
    for cname in args.cases:
        case = CASES[cname]
        name, L, params = case["theory"]
        n = args.n or case["n"]
        run = args.runs / cname
        summary = (json.loads((run / "summary.json").read_text()) if args.reuse_model and (run / "summary.json").exists()
                   else train_for(case, args.train_minutes, run))
        train_s = summary["train_time_s"]
        print(json.dumps({"case": cname, "train_s": train_s, "steps": summary["steps"], "ess": summary["ess"],
                          "acceptance": summary["acceptance"]}), flush=True)
        theory_flags = ["--theory", name, "--L", str(L), *[f"--{k}={v}" for k, v in params.items()]]
        files = {}
        for algo in ALGORITHMS:
            out = args.out / f"{cname}_{algo}.h5"
            n_algo = case.get("n_hybrid", n) if algo == "hybrid" and not args.n else n
            K = args.chains
            flags = ["--algorithm", algo, "--n-configs", str(n_algo // K), "--seed", "1", "--out", str(out), "--overwrite",
                     "--quiet", "--chains", str(K), *theory_flags]
            if algo != "hmc":
                flags += ["--proposal", str(run), "--threads", "1", *case.get("flags", [])]
            wall = run_generate(flags)
            files[algo] = (out, wall, (n_algo // K) * K)
        chain_files = {algo: [path] if args.chains == 1 else
                       [path.with_name(f"{path.stem}.chain{k}.h5") for k in range(args.chains)]
                       for algo, (path, _, _) in files.items()}
        analyses = {algo: analyze(ps[0]) if len(ps) == 1 else analyze_replicas(ps) for algo, ps in chain_files.items()}
        check_comparable(list(analyses.values()))
        base = analyses["hmc"]
        for algo, a in analyses.items():
            _, wall, n = files[algo]
            rows.append(cost_row(cname, f"{name} L={L} {params}", algo, a, base, case["obs"], wall, n,
                                 train_s=0.0 if algo == "hmc" else train_s, acceptance=mean_acceptance(chain_files[algo]),
                                 model_ess=summary["ess"] if algo != "hmc" else math.nan))
    print_cost_table(rows)

if __name__ == "__main__":
    main()
