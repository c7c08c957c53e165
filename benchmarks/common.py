"""What the learned-sampler benchmarks share: running the CLI in process, one row per chain of the
cost comparison against HMC, the table of those rows, and CPU timings of a callable."""
from __future__ import annotations

import io
import json
import math
import time
from contextlib import redirect_stdout

import generate
from observables.analysis import AGREE_Z, z_score


def cpu_times(fn, reps: int, warmup: int = 1) -> list[float]:
    """CPU seconds of this process (time.process_time, all threads) of ``reps`` calls of fn after
    ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return times


def run_generate(args: list[str]) -> float:
    """Wall seconds of one `python -m generate` run (in process, its summary silenced)."""
    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        code = generate.main(args)
    if code != 0:
        raise RuntimeError(f"generate failed: {' '.join(args)}")
    return time.perf_counter() - t0


def cost_row(case: str, theory: str, algorithm: str, analysis, hmc, obs: str, wall_s: float, n: int,
             train_s: float = 0.0, acceptance: float | None = None, **extra) -> dict:
    """One chain's (or chain set's) figures: acceptance (the file's, unless given: a set's mean), tau_int of ``obs`` (updates), cost per independent sample
    wall x 2 tau_int / N (ms) with and without the training time, and how many observables differ
    from the HMC analysis ``hmc`` (|z| >= AGREE_Z); printed as a JSON line as it is made."""
    est = analysis.estimates[obs]
    tau = est.tau_int_updates
    differ = 0 if analysis is hmc else sum(abs(z_score(hmc.estimates[k], analysis.estimates[k])) >= AGREE_Z
                                           for k in hmc.estimates if k in analysis.estimates)
    row = {"case": case, "theory": theory, "algorithm": algorithm, "n": n,
           "acceptance": float(analysis.attrs.get("acceptance", math.nan)) if acceptance is None else acceptance,
           "obs": obs, "tau_int": tau,
           "tau_err": est.tau_int_error * est.every, "short": "short" in analysis.flags.get(obs, []),
           "wall_s": wall_s, "train_s": train_s, "cost_ms": 1e3 * wall_s * 2 * tau / n,
           "cost_total_ms": 1e3 * (wall_s + train_s) * 2 * tau / n, "differ": differ, **extra}
    print(json.dumps(row), flush=True)
    return row


def print_cost_table(rows: list[dict]) -> None:
    """The markdown table of RESULTS.md, each row's cost also as HMC's cost over it (same case)."""
    print("\n| case (observable) | algorithm | N | acceptance | tau_int (updates) | wall s | cost ms / indep. | "
          "training s | cost incl. training ms / indep. | HMC cost / this (incl. training) | DIFFER vs HMC |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    hmc_cost = {r["case"]: r["cost_total_ms"] for r in rows if r["algorithm"] == "hmc"}
    for r in rows:
        tau = f"{r['tau_int']:.3g} ± {r['tau_err']:.2g}" + (" (short)" if r["short"] else "")
        print(f"| {r['theory']} ({r['obs']}) | {r['algorithm']} | {r['n']} | {r['acceptance']:.3f} | {tau} | "
              f"{r['wall_s']:.1f} | {r['cost_ms']:.3g} | {r['train_s']:.0f} | {r['cost_total_ms']:.3g} | "
              f"{hmc_cost[r['case']] / r['cost_total_ms']:.2g} | {r['differ']} |")


def train_reverse_kl_for(model: str, theory, hyper: dict, minutes: float, run, batch: int = 64, lr: float = 3e-3,
                         eval_batch: int = 8192) -> dict:
    """Reverse-KL training of ``model`` for about ``minutes`` of CPU time: the cost of a step measured
    on 5 steps after 2 warm-up ones, then the step count fixed so the cosine schedule spans the budget.
    Returns the run's summary (samplers.training.train), with ``train_cpu_s``."""
    import torch

    from samplers.flows import build_model
    from samplers.training import OBJECTIVES, TrainConfig, train

    torch.manual_seed(0)
    probe = build_model(model, theory, **hyper)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(7):
        if i == 2:
            t0 = time.process_time()
        loss, _ = OBJECTIVES["reverse-kl"].loss(probe, batch, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    steps = max(20, int(minutes * 60 / ((time.process_time() - t0) / 5)))
    torch.manual_seed(0)
    flow = build_model(model, theory, **hyper)
    config = TrainConfig(model=model, hyper=flow.hyper, steps=steps, batch_size=batch, lr=lr,
                         checkpoint_every=steps, eval_batch=eval_batch)
    cpu0 = time.process_time()
    summary = train(flow, config, run)
    summary["train_cpu_s"] = time.process_time() - cpu0
    return summary
