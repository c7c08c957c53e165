"""Normalizing flows trained from the action (reverse KL) on this CPU (issue 4), within a budget of
CPU time: for each case the step cost is measured on a few steps, the number of steps set to fill
the budget, the model trained with samplers.training.train, and ESS/N and the acceptance of an
independence Metropolis-Hastings chain measured on fresh model samples.

Cases (goals of issue 4, 20 CPU-minutes each):
    phi4  L=8  m2=-4 g=8   realnvp        goal: IMH acceptance >= 50 %
    u1    L=8  beta=2      gauge-flow     goal: IMH acceptance >= 40 %
    xy    L=8  beta=1      circular-flow  goal: ESS/N >= 0.3

    PYTHONPATH=. python benchmarks/bench_flows.py [--minutes 20] [--cases phi4 u1 xy] [--threads 2]
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from lattice import make_theory
from samplers.flows import build_model
from samplers.training import OBJECTIVES, TrainConfig, train

CASES = {
    "phi4": dict(theory=("phi4", (8, 8), {"m2": -4.0, "g": 8.0}), model="realnvp",
                 hyper={"n_layers": 8, "hidden": (16, 16)}, goal=("acceptance", 0.5)),
    "u1": dict(theory=("u1", (8, 8), {"beta": 2.0}), model="gauge-flow", hyper={}, goal=("acceptance", 0.4)),
    "xy": dict(theory=("xy", (8, 8), {"beta": 1.0}), model="circular-flow", hyper={}, goal=("ess", 0.3)),
}


def step_cpu_seconds(model, theory, hyper, batch, n=10, warmup=3) -> float:
    """CPU seconds (all threads) of one reverse-KL step as train() does it (sample, loss, backward,
    gradient clipping, Adam), averaged over n steps after ``warmup`` untimed ones: the first steps
    pay one-off costs (allocator, lazy initialization) that would make the step count too small."""
    torch.manual_seed(0)
    flow = build_model(model, theory, **hyper)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    objective = OBJECTIVES["reverse-kl"]
    for i in range(warmup + n):
        if i == warmup:
            t0 = time.process_time()
        loss, _ = objective.loss(flow, batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
    return (time.process_time() - t0) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="CPU-time budget per case")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"Flow training benchmark (issue 4), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"budget {args.minutes:g} CPU-minutes per case, batch {args.batch_size}, lr {args.lr} (cosine)")
    rows = []
    for name in args.cases:
        case = CASES[name]
        tname, shape, params = case["theory"]
        theory = make_theory(tname, shape, **params)
        per_step = step_cpu_seconds(case["model"], theory, case["hyper"], args.batch_size)
        steps = max(10, int(args.minutes * 60 / per_step))
        torch.manual_seed(0)
        flow = build_model(case["model"], theory, **case["hyper"])
        config = TrainConfig(model=case["model"], hyper=flow.hyper, steps=steps, batch_size=args.batch_size,
                             lr=args.lr, checkpoint_every=max(1, steps // 10), eval_batch=16384)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = train(flow, config, args.runs / name)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        key, goal = case["goal"]
        verdict = "PASS" if summary[key] >= goal else "MISS"
        row = {"case": name, "model": case["model"], "params": params, "L": shape[0], "steps": steps,
               "step_ms_cpu": 1e3 * per_step, "cpu_min": cpu / 60, "wall_min": wall / 60,
               "ess": summary["ess"], "acceptance": summary["acceptance"], "goal": f"{key} >= {goal}",
               "verdict": verdict}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| case | model | steps | CPU ms/step | CPU min (wall min) | ESS/N | IMH acceptance | goal |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['case']} L={r['L']} {r['params']} | {r['model']} | {r['steps']} | {r['step_ms_cpu']:.0f} | "
              f"{r['cpu_min']:.1f} ({r['wall_min']:.1f}) | {r['ess']:.3f} | {r['acceptance']:.3f} | "
              f"{r['goal']}: {r['verdict']} |")


if __name__ == "__main__":
    main()
