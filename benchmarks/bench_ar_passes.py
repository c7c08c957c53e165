"""Cost of the autoregressive models' exact passes and training steps (issue 14 item 5), in units of
one single-chain HMC trajectory of the same theory measured in the same run.

Rows (the ``python -m train --model autoregressive`` defaults: PixelCNN hidden (32, 32, 32), kernel 3,
4 mixture components; MADE hidden (64, 64); weights perturbed so every conditional depends on its
context: the cost does not depend on the values):
    sample of a batch of 256 (one pass over the sites, float64: exact learned-MH proposals), per config;
    log_q of a batch of 256 (one causal pass, float64), per configuration;
    training step (float32, batch 256, reverse KL with the score-function estimator, Adam lr 1e-3).
The unit: samplers.hmc.HMC(step_size=0.1, traj_length=1) ``update`` on one chain of the same theory
(xy beta = 1, phi4 m2 = -4 g = 8). CPU seconds of this process (time.process_time), the minimum over
the repetitions after a warm-up call; one torch thread. It times the code it imports: run it in a
checkout of an older commit for "before" figures.

    PYTHONPATH=. python benchmarks/bench_ar_passes.py [--reps 5]
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import datetime
import json
import platform

import numpy as np
import torch

from benchmarks.common import cpu_times
from lattice import make_theory
from samplers.flows import build_model
from samplers.hmc import HMC
from samplers.training import OBJECTIVES

CASES = [  # theory, L, hyperparameters
    ("xy", 8, {"arch": "pixelcnn"}), ("phi4", 8, {"arch": "pixelcnn"}), ("xy", 16, {"arch": "pixelcnn"}),
    ("xy", 4, {"arch": "made"}),
]
COUPLINGS = {"xy": {"beta": 1.0}, "phi4": {"m2": -4.0, "g": 8.0}}


def best_of(fn, reps: int) -> float:
    return min(cpu_times(fn, reps))


def hmc_trajectory_s(theory, reps: int = 300) -> float:
    hmc, rng = HMC(step_size=0.1, traj_length=1.0), np.random.default_rng(0)
    q = np.array(theory.random_config(rng), dtype=np.float64)
    for _ in range(20):
        hmc.update(theory, q, rng)
    return best_of(lambda: [hmc.update(theory, q, rng) for _ in range(reps)], 3) / reps


def perturbed(theory, hyper: dict, dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("autoregressive", theory, **hyper)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.to(dtype)


def rows_for(tname: str, L: int, hyper: dict, reps: int) -> list[dict]:
    theory = make_theory(tname, (L, L), **COUPLINGS[tname])
    unit = hmc_trajectory_s(theory)
    model = perturbed(theory, hyper, torch.float64).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = model.sample(256, gen)[0]
        times = {"sample, batch 256, float64, per configuration": best_of(lambda: model.sample(256, gen), reps) / 256,
                 "log_q, batch 256, float64, per configuration": best_of(lambda: model.log_q(x), reps) / 256}
    train_model = perturbed(theory, hyper, torch.float32)
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-3)
    objective = OBJECTIVES["reverse-kl-score"]

    def step():
        loss, _ = objective.loss(train_model, 256, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    times["training step, batch 256, float32"] = best_of(step, reps)
    out = []
    for what, s in times.items():
        r = {"case": f"{hyper['arch']} {tname} L={L}", "what": what, "ms": 1e3 * s, "hmc_traj_us": 1e6 * unit,
             "in_hmc_trajectories": s / unit}
        print(json.dumps(r), flush=True)
        out.append(r)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{platform.machine()}, torch {torch.__version__}, 1 thread")
    rows = [r for t, L, h in CASES for r in rows_for(t, L, h, args.reps)]
    print("\n| model | pass | ms | HMC trajectories |\n|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['what']} | {r['ms']:.4g} | {r['in_hmc_trajectories']:.3g} |")


if __name__ == "__main__":
    main()
