"""Cost of the normalizing flows' exact model passes and training steps (issue 14 item 5), in units of
one single-chain HMC trajectory of the same theory measured in the same run.

Rows (float64 unless said otherwise; per configuration = time of the pass / batch size):
    gauge-flow (defaults: 16 layers, hidden (8, 8), spline maps, passive_sum) on U(1) L = 8, 16:
        sample of a batch of 256 and of 16384 (one learned-MH proposal each; 16384 = 64 chains x 256
        proposals sharing a pass), log_q of a batch of 256, log_q of ONE configuration (what a hybrid
        chain needs after each local update);
    realnvp (8 layers, hidden (16, 16)) on phi^4 L = 8: sample of 256 and 16384;
    training steps at the defaults of ``python -m train`` (float32, batch 256, reverse KL, Adam lr 1e-3,
        gradient clipping 10): gauge-flow L = 8, 16 (U(1) beta = 2), realnvp on phi^4 L = 8 (m2 = -4, g = 8).
The unit: samplers.hmc.HMC(step_size=0.1, traj_length=1) (10 leapfrog steps), ``update`` on one chain of
the same theory and lattice (u1 beta = 2, phi4 m2 = -4 g = 8).

Each row runs the code paths ``--impl`` names: "fast" (the default, lean passes), "reference" (the code
before issue 14: F.conv2d with circular padding, masked clones; samplers.flows.nets.reference_passes()),
or both, in the same run, their repetitions interleaved (this machine is shared: the other engineers'
jobs slow single repetitions by up to 2x), so the speed-ups are measured under the same conditions.
Times: CPU seconds of this process (time.process_time, all threads), the minimum and the median over the
repetitions after untimed warm-up calls; --threads torch threads (default 1, like the Numba HMC).
``--malloc default`` leaves glibc's malloc as it is (LATTICEML_KEEP_FREED_MEMORY=0); by default the lean
passes make it keep freed memory (nets.keep_freed_memory) and this script does so for both paths, so
the ratio is of the code alone. --compile adds torch.compile rows (nets.compiled; compile time apart).

    PYTHONPATH=. python benchmarks/bench_flow_passes.py [--impl both] [--threads 1] [--quick] [--compile] [--malloc keep]
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import contextlib
import datetime
import json
import platform
import statistics
import time

import numpy as np
import torch

from lattice import make_theory
from samplers.flows import build_model, nets
from samplers.hmc import HMC
from samplers.training import OBJECTIVES

THEORIES = {"u1": {"beta": 2.0}, "phi4": {"m2": -4.0, "g": 8.0}}


def implementation(name: str):
    return nets.reference_passes() if name == "reference" else contextlib.nullcontext()


def interleaved(fns: dict, reps: int, warmup: int = 1) -> dict:
    """{name: (min, median) CPU seconds} of the callables, their repetitions interleaved."""
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for k, (ctx, fn) in fns.items():
            with ctx():
                fn()
    for _ in range(reps):
        for k, (ctx, fn) in fns.items():
            with ctx():
                t0 = time.process_time()
                fn()
                times[k].append(time.process_time() - t0)
    return {k: (min(v), statistics.median(v)) for k, v in times.items()}


def hmc_trajectory_s(theory, reps: int = 300) -> float:
    """CPU seconds of one HMC trajectory (step 0.1, length 1) on one chain: the best of 3 blocks of reps."""
    hmc = HMC(step_size=0.1, traj_length=1.0)
    rng = np.random.default_rng(0)
    q = np.array(theory.random_config(rng), dtype=np.float64)
    for _ in range(20):  # compile (Numba) and move off the start
        hmc.update(theory, q, rng)
    best = []
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(reps):
            hmc.update(theory, q, rng)
        best.append((time.process_time() - t0) / reps)
    return min(best)


def perturbed(model: str, theory, dtype=torch.float64):
    torch.manual_seed(0)
    flow = build_model(model, theory)
    with torch.no_grad():  # a trained-looking flow (a fresh one is the identity)
        g = torch.Generator().manual_seed(1)
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow.to(dtype).eval()


def row(name: str, impl: str, seconds: tuple[float, float], hmc_s: float, unit: str, n: int = 1, **extra) -> dict:
    lo, med = seconds[0] / n, seconds[1] / n
    r = {"case": name, "impl": impl, "ms": 1e3 * lo, "ms_median": 1e3 * med, "hmc_traj_ms": 1e3 * hmc_s,
         "in_hmc_trajectories": lo / hmc_s, "unit": unit, **extra}
    print(json.dumps(r), flush=True)
    return r


def pass_rows(model: str, L: int, hmc_s: float, impls, quick: bool, compile_: bool, big: int) -> list[dict]:
    tname = "u1" if model == "gauge-flow" else "phi4"
    flow = perturbed(model, make_theory(tname, (L, L), **THEORIES[tname]))
    gen = torch.Generator().manual_seed(0)
    big = big or (4096 if quick else 16384)
    rows = []
    with torch.no_grad():
        one = flow.sample(1, gen)[0]
        b256 = flow.sample(256, gen)[0]
        cases = [("sample", 256, lambda: flow.sample(256, gen), 9, 1),
                 ("sample", big, lambda: flow.sample(big, gen), 1 if L > 8 or quick else 2, 0)]
        if model == "gauge-flow":
            cases += [("log_q", 256, lambda: flow.log_q(b256), 9, 1), ("log_q", 1, lambda: flow.log_q(one), 30, 3)]
        for what, n, fn, reps, warm in cases:
            res = interleaved({impl: (lambda impl=impl: implementation(impl), fn) for impl in impls}, reps, warm)
            for impl in impls:
                rows.append(row(f"{model} L={L} {what} batch {n} float64", impl, res[impl], hmc_s,
                                "per configuration", n))
        if compile_:
            for what, n, fn in (("log_q", 1, flow.log_q), ("sample(push)", 256, flow.push)):
                if what == "log_q" and model != "gauge-flow":
                    continue
                arg = one if what == "log_q" else flow.sample_prior(256, gen)
                t0 = time.process_time()
                c = nets.compiled(fn)
                c(arg)
                t_compile = time.process_time() - t0
                res = interleaved({"eager": (contextlib.nullcontext, lambda: fn(arg)),
                                   "compiled": (contextlib.nullcontext, lambda: c(arg))}, 20 if n == 1 else 5)
                for k in ("eager", "compiled"):
                    rows.append(row(f"{model} L={L} {what} batch {n} float64 [{k}]", "fast", res[k], hmc_s,
                                    "per configuration", n, compile_s=t_compile if k == "compiled" else None))
    return rows


def train_rows(model: str, L: int, hmc_s: float, impls, reps: int) -> list[dict]:
    tname = "u1" if model == "gauge-flow" else "phi4"
    theory = make_theory(tname, (L, L), **THEORIES[tname])
    objective = OBJECTIVES["reverse-kl"]

    def make():
        torch.manual_seed(0)
        flow = build_model(model, theory).to(torch.float32)
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(0)

        def step():
            loss, _ = objective.loss(flow, 256, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
        return step

    res = interleaved({impl: (lambda impl=impl: implementation(impl), make()) for impl in impls}, reps, warmup=2)
    return [row(f"{model} L={L} training step (float32, batch 256)", impl, res[impl], hmc_s, "per step")
            for impl in impls]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=["fast", "reference", "both"], default="both")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="batch 4096 instead of 16384, fewer repetitions")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (log_q of one, sample of 256)")
    ap.add_argument("--malloc", choices=["keep", "default"], default="keep")
    ap.add_argument("--parts", nargs="+", default=["passes", "training"], choices=["passes", "training"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[8, 16])
    ap.add_argument("--big", type=int, default=0, help="the large batch (default 16384; 4096 with --quick)")
    ap.add_argument("--models", nargs="+", default=["gauge-flow", "realnvp"], choices=["gauge-flow", "realnvp"])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.malloc == "default":
        os.environ["LATTICEML_KEEP_FREED_MEMORY"] = "0"
    kept = nets.keep_freed_memory()
    impls = ["reference", "fast"] if args.impl == "both" else [args.impl]
    print(f"Flow passes (issue 14), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"malloc {'keeps freed memory' if kept else 'default'}; times: min (median) over interleaved repetitions")
    hmc = {("u1", L): hmc_trajectory_s(make_theory("u1", (L, L), **THEORIES["u1"])) for L in args.sizes}
    hmc[("phi4", 8)] = hmc_trajectory_s(make_theory("phi4", (8, 8), **THEORIES["phi4"]))
    for k, v in hmc.items():
        print(f"HMC trajectory {k[0]} L={k[1]}: {1e6 * v:.1f} us", flush=True)
    rows = []
    if "passes" in args.parts:
        if "gauge-flow" in args.models:
            for L in args.sizes:
                rows += pass_rows("gauge-flow", L, hmc[("u1", L)], impls, args.quick, args.compile, args.big)
        if "realnvp" in args.models:
            rows += pass_rows("realnvp", 8, hmc[("phi4", 8)], impls, args.quick, False, args.big)
    if "training" in args.parts:
        reps = 3 if args.quick else 6
        if "gauge-flow" in args.models:
            for L in args.sizes:
                rows += train_rows("gauge-flow", L, hmc[("u1", L)], impls, reps if L <= 8 else max(3, reps // 2))
        if "realnvp" in args.models:
            rows += train_rows("realnvp", 8, hmc[("phi4", 8)], impls, reps)
    print("\n| case | impl | ms (min) | ms (median) | HMC trajectories (min) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        extra = f" (compile {r['compile_s']:.0f} CPU s)" if r.get("compile_s") else ""
        print(f"| {r['case']}{extra} | {r['impl']} | {r['ms']:.4g} | {r['ms_median']:.4g} | {r['in_hmc_trajectories']:.3g} |")
    if len(impls) == 2:
        print("\n| case | reference / fast (min) | (median) |")
        print("|---|---:|---:|")
        ref = {r["case"]: r for r in rows if r["impl"] == "reference"}
        for r in rows:
            if r["impl"] == "fast" and r["case"] in ref:
                print(f"| {r['case']} | {ref[r['case']]['ms'] / r['ms']:.2f}x | "
                      f"{ref[r['case']]['ms_median'] / r['ms_median']:.2f}x |")


if __name__ == "__main__":
    main()
