"""Cost of the diffusion model's exact passes (issue 14 item 5): an exact PF-ODE proposal and log q of one
configuration, before and after the lean passes, measured in the same run.

Model: ``build_model("diffusion", theory)`` at the defaults of ``python -m train --model diffusion``
(score network of 3 circular 3x3 convolutions of 32 channels and a 3x3 head, time embedding 32, VE
schedule sigma = 25, 16 Heun steps of the probability-flow ODE), float64 (the proposal's default dtype),
untrained but with its parameters perturbed (N(0, 0.05^2) added, seed 1), so that the score and the map
are not trivial. Theories of benchmarks/bench_diffusion.py's exact cases: phi^4 m2 = -4, g = 8 and U(1)
beta = 2, on L = 8 and 16.

Rows (CPU seconds of this process, time.process_time, torch single-threaded; median of --reps after a
warm-up call, one call for the slow reference rows):
    step      one PF-ODE step's exact Jacobian and log-determinant, per configuration (batch --batch)
    proposal  ``push`` of a batch of prior draws (what learned-mh draws: 16 steps, exact log q), per
              configuration
    log_q     ``log_q`` of ONE configuration (invert the 16 steps, the same log-determinants)
    dsm step  one float32 DSM training step, batch 64 (the padding's backward)
Implementations (``--impl``): "reference" (the code before issue 14 item 5: nn.Conv2d's circular
padding, full Jacobians by torch.func.jacrev, steps inverted by Newton with a Jacobian per iteration),
"padding" (only the faster circular padding), "fast" (the default: fast padding, the network's local
forward-mode Jacobians, fixed-point inversion). The reference proposal and log_q at L = 16 take
minutes; without --full they are given as 16 x their measured step row (marked "est.").

    PYTHONPATH=. python benchmarks/bench_diffusion_passes.py [--cases phi4 u1] [--sizes 8 16] [--full]
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import statistics

import torch

from benchmarks.common import cpu_times
from lattice import make_theory
from samplers.diffusion import model as dm_model
from samplers.flows import build_model

THEORIES = {"phi4": {"m2": -4.0, "g": 8.0}, "u1": {"beta": 2.0}}
IMPLS = ("reference", "padding", "fast")


def make_model(name: str, L: int):
    theory = make_theory(name, (L, L), **THEORIES[name])
    torch.manual_seed(0)
    model = build_model("diffusion", theory, dtype="float64")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


@contextlib.contextmanager
def implementation(model, impl: str):
    """Switch the model to an implementation (see the module docstring); restores the defaults."""
    saved = dm_model.FIXED_POINT_ITER
    model.net.legacy_padding = impl == "reference"
    model.set_jacobian("auto" if impl == "fast" else "dense")
    if impl != "fast":
        dm_model.FIXED_POINT_ITER = 0
    try:
        yield
    finally:
        model.net.legacy_padding = False
        model.set_jacobian("auto")
        dm_model.FIXED_POINT_ITER = saved


def cpu_median(fn, reps: int, warmup: int = 1) -> float:
    return statistics.median(cpu_times(fn, reps, warmup))


def row(rows: list, case: str, impl: str, seconds: float, note: str = "") -> None:
    r = {"case": case, "impl": impl, "s": seconds, "note": note}
    rows.append(r)
    print(json.dumps(r), flush=True)


def pass_rows(name: str, L: int, impl: str, args, rows: list) -> None:
    model = make_model(name, L)
    slow = impl != "fast"
    batch = args.batch if not slow else max(1, args.batch // (4 if L > 8 else 2))
    gen = torch.Generator().manual_seed(2)
    z = model.sample_prior(batch, gen)
    grid = model._grid()
    t0, t1 = grid[len(grid) // 2 - 1], grid[len(grid) // 2]
    label = f"{name} L={L}"
    with torch.no_grad(), implementation(model, impl):
        reps = 1 if (slow and L > 8) else args.reps
        step = cpu_median(lambda: model._step_logdet(z, t0, t1), reps) / batch
        row(rows, f"{label} step (Jacobian + log det) per config", impl, step, f"batch {batch}")
        if slow and L > 8 and not args.full:
            row(rows, f"{label} proposal per config", impl, model.n_steps * step, "est. 16 x step")
            row(rows, f"{label} log_q of one config", impl, model.n_steps * step, "est. >= 16 x step")
            return
        prop = cpu_median(lambda: model.push(z), 1 if slow else args.reps, warmup=0 if slow else 1) / batch
        row(rows, f"{label} proposal per config", impl, prop, f"push of {batch}")
        x, _ = model.push(z[:1])
        lq = cpu_median(lambda: model.log_q(x), 1 if slow else args.reps, warmup=0 if slow else 1)
        row(rows, f"{label} log_q of one config", impl, lq)


def dsm_rows(name: str, L: int, impl: str, rows: list) -> None:
    model = make_model(name, L).to(torch.float32).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x0 = model.sample_prior(64, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)

    def step():
        loss = model.dsm_loss(x0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with implementation(model, impl):
        row(rows, f"{name} L={L} dsm step float32 batch 64", impl, cpu_median(step, 5, warmup=2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(THEORIES), choices=list(THEORIES))
    ap.add_argument("--sizes", nargs="+", type=int, default=[8, 16])
    ap.add_argument("--impl", nargs="+", default=["reference", "fast"], choices=IMPLS)
    ap.add_argument("--batch", type=int, default=8, help="configurations per timed push (fast; reference: fewer)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="time the reference proposal and log_q at L > 8 too (minutes)")
    ap.add_argument("--no-dsm", action="store_true", help="skip the training-step rows")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"Diffusion passes (issue 14 item 5), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread", flush=True)
    rows: list = []
    for name in args.cases:
        for L in args.sizes:
            for impl in args.impl:
                pass_rows(name, L, impl, args, rows)
            if not args.no_dsm:
                for impl in [i for i in args.impl if i != "padding"] or args.impl:
                    dsm_rows(name, L, "reference" if impl == "reference" else "fast", rows)
    print("\n| case | impl | s | note |")
    print("|---|---|---:|---|")
    for r in rows:
        print(f"| {r['case']} | {r['impl']} | {r['s']:.4g} | {r['note']} |")
    ref = {r["case"]: r["s"] for r in rows if r["impl"] == "reference"}
    fast = {r["case"]: r["s"] for r in rows if r["impl"] == "fast"}
    if ref and fast:
        print("\n| case | reference / fast |")
        print("|---|---:|")
        for case, s in fast.items():
            if case in ref:
                print(f"| {case} | {ref[case] / s:.3g}x |")
        for name in args.cases:
            small, big = f"{name} L=8 proposal per config", f"{name} L=16 proposal per config"
            if small in ref and big in fast:
                print(f"\n{name}: exact proposal at 16 x 16 (fast) {fast[big]:.3g} s vs 8 x 8 (reference) "
                      f"{ref[small]:.3g} s: {'reached' if fast[big] < ref[small] else 'NOT reached'}")


if __name__ == "__main__":
    main()
