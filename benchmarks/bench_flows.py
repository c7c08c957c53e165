"""Normalizing flows trained from the action (reverse KL) on this CPU (issue 4), within a budget of
CPU time: for each case the step cost is measured (median of 30 steps after 5 untimed warm-up
steps), the model trained with samplers.training.train for a probe of about 5 % of the budget at
the constant initial learning rate, the step cost re-measured on that probe (the conditions the
training really runs in: on this shared machine they differed from the quick measurement by ~10 %),
the step count set to fill the rest of the budget and the training resumed with the cosine
schedule over that count; then ESS/N and the acceptance of an independence Metropolis-Hastings
chain measured on 16,384 fresh model samples (their CPU time counts in "CPU min", not in the
budget's step count). Batch size and learning rate are per case (--batch-size / --lr override them).

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
from dataclasses import replace
from pathlib import Path

import torch

from lattice import make_theory
from samplers.flows import build_model
from samplers.flows.nets import keep_freed_memory
from samplers.training import CHECKPOINT, METRICS, OBJECTIVES, SUMMARY, TrainConfig, train

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
    ap.add_argument("--no-probe", action="store_true",
                    help="set the step count from the pre-training measurement alone (no timed probe phase)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as train() does: the step cost measured here is the one training pays
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
        budget = args.minutes * 60
        per_step = step_cpu_seconds(case["model"], theory, case["hyper"], batch)
        torch.manual_seed(0)
        flow = build_model(case["model"], theory, **case["hyper"])
        config = TrainConfig(model=case["model"], hyper=flow.hyper, steps=10, batch_size=batch,
                             lr=lr, eval_batch=16384)
        for old in (CHECKPOINT, METRICS, SUMMARY):  # a fresh run (train() appends to an existing log)
            (args.runs / name / old).unlink(missing_ok=True)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if not args.no_probe:
            # probe: the first ~5 % of the budget at the constant initial lr (the cosine factor is 1 there),
            # timed under the conditions the training really runs in; then resume with the step count set
            # from that cost, which stretches the cosine schedule from where the probe stopped
            probe = max(10, int(0.05 * budget / per_step))
            train(flow, replace(config, steps=probe, lr_schedule="constant", checkpoint_every=probe,
                                eval_batch=batch), args.runs / name)
            per_step = (time.process_time() - cpu0) / probe
        used = time.process_time() - cpu0
        steps = max(10, (probe if not args.no_probe else 0) + int((budget - used) / per_step))
        config = replace(config, steps=steps, checkpoint_every=max(1, steps // 10))
        summary = train(flow, config, args.runs / name, resume=not args.no_probe)
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
