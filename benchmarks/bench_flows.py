"""Normalizing flows trained from the action (reverse KL) on this CPU (issue 4), within a budget of
CPU time: for each case the step cost is measured (median of 30 steps after 5 untimed warm-up
steps), the number of steps set to fill the budget, the model trained with
samplers.training.train, and ESS/N and the acceptance of an independence Metropolis-Hastings
chain measured on 16,384 fresh model samples. Batch size and learning rate are per case (--batch-size / --lr override them).

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
import statistics
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
    "xy": dict(theory=("xy", (8, 8), {"beta": 1.0}), model="circular-flow",
               hyper={"n_layers": 8, "hidden": (16, 16), "kernel_size": 5, "head_kernel": 1, "frame": True},
               goal=("ess", 0.3)),
}


def step_cpu_seconds(model, theory, hyper, batch, n=30, warmup=5) -> float:
    """CPU seconds (all threads) of one reverse-KL step as train() does it (sample, loss, backward,
    gradient clipping, Adam): the median over n steps after ``warmup`` untimed ones. The first steps
    pay one-off costs (allocator, lazy initialization) and single steps can be slowed by other work
    on a shared machine; either would make the step count too small for the budget."""
    torch.manual_seed(0)
    flow = build_model(model, theory, **hyper)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    objective = OBJECTIVES["reverse-kl"]
    times = []
    for i in range(warmup + n):
        t0 = time.process_time()
        loss, _ = objective.loss(flow, batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        if i >= warmup:
            times.append(time.process_time() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="CPU-time budget per case")
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--batch-size", type=int, default=None, help="default: the case's (256)")
    ap.add_argument("--lr", type=float, default=None, help="default: the case's (1e-3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=Path("runs/bench"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"Flow training benchmark (issue 4), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"budget {args.minutes:g} CPU-minutes per case, Adam with cosine schedule")
    rows = []
    for name in args.cases:
        case = CASES[name]
        tname, shape, params = case["theory"]
        theory = make_theory(tname, shape, **params)
        batch = args.batch_size or case.get("batch_size", 256)
        lr = args.lr or case.get("lr", 1e-3)
        per_step = step_cpu_seconds(case["model"], theory, case["hyper"], batch)
        steps = max(10, int(args.minutes * 60 / per_step))
        torch.manual_seed(0)
        flow = build_model(case["model"], theory, **case["hyper"])
        config = TrainConfig(model=case["model"], hyper=flow.hyper, steps=steps, batch_size=batch,
                             lr=lr, checkpoint_every=max(1, steps // 10), eval_batch=16384)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = train(flow, config, args.runs / name)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        key, goal = case["goal"]
        verdict = "PASS" if summary[key] >= goal else "MISS"
        row = {"case": name, "model": case["model"], "params": params, "L": shape[0], "hyper": flow.hyper,
               "batch_size": batch, "lr": lr, "steps": steps,
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
