"""Chain sets (issue 14): per-chain cost of one update against the number of chains K.

For U(1) at L = 8 and 16 (beta = 2), for K = 1, 16, 64, 256 chains run as one set (samplers.chain.run_chains):

    hmc         one trajectory per chain (trajectory length 1, step 0.1: 10 leapfrog steps)
    learned-mh  one independence-MH proposal per chain, gauge flow in float64 (exact), the default
                architecture (16 layers, hidden (8, 8), spline maps; untrained: the cost does not depend
                on the weights); --proposal-batch B = max(1, 256 / K), so every model pass holds 256
                configurations of all chains together (B = 256 per chain at K = 1, as a single chain runs)
    hybrid      one HMC trajectory, then one learned-MH step: per update one pass for the log q of the K
                moved configurations and the shared proposal passes

each as wall time per update per chain divided by the wall time of ONE single-chain HMC trajectory
measured in the same run (the unit). Tuning is off (fixed step) so every K does the same work. One
process, single-threaded torch and Numba, so the ratios compare like with like.

    PYTHONPATH=. python benchmarks/bench_chains.py [--L 8 16] [--chains 1 16 64 256] [--seconds 3]
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lattice import make_theory
from samplers import HMC, Hybrid, LearnedMH
from samplers.chain import ChainState, run_chains
from samplers.flows import build_model
from samplers.training import TrainConfig, train

HMC_SETTINGS = dict(step_size=0.1, traj_length=1.0, jitter=0.0)
PASS = 256  # configurations per model pass


class NullWriter:
    """Keeps nothing: the benchmark times the updates only."""

    def begin(self, state, settings): pass
    def append(self, config, action, info): pass
    def flush(self, state): pass
    def finish(self, summary): pass


def per_update(theory, make, K: int, seconds: float, min_updates: int) -> float:
    """Wall seconds per update per chain of a set of K chains (after a warm-up of 2 updates)."""
    samplers = [make(k) for k in range(K)]
    states = [ChainState.start(theory, 1, chain=k) for k in range(K)]
    run_chains(theory, samplers, states, 2, writers=[NullWriter() for _ in range(K)], tune=False)
    n, t0 = 2, time.perf_counter()
    while True:
        n += max(min_updates, 1)
        run_chains(theory, samplers, states, n, writers=[NullWriter() for _ in range(K)], tune=False)
        wall = time.perf_counter() - t0
        if wall > seconds:
            return wall / ((n - 2) * K)


def hmc_unit(theory, seconds: float) -> float:
    """Seconds of one single-chain HMC trajectory (HMC.update), the unit of every ratio."""
    hmc, q, rng = HMC(**HMC_SETTINGS), theory.random_config(np.random.default_rng(0)), np.random.default_rng(1)
    for _ in range(20):
        hmc.update(theory, q, rng)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            hmc.update(theory, q, rng)
        n += 50
    return (time.perf_counter() - t0) / n


def flow_run(theory, folder: Path) -> Path:
    """A checkpoint of the default gauge flow (2 training steps: only the architecture matters here)."""
    torch.manual_seed(0)
    flow = build_model("gauge-flow", theory)
    train(flow, TrainConfig(model="gauge-flow", hyper=flow.hyper, steps=2, batch_size=8, checkpoint_every=2,
                            eval_batch=8), folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--L", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--chains", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timing per row")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread")
    print("| lattice | K | hmc (batched) | learned-mh proposal | hybrid update | unit: 1 HMC trajectory |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for L in args.L:
            theory = make_theory("u1", (L, L), beta=2.0)
            run = flow_run(theory, Path(tmp) / f"flow{L}")
            unit = hmc_unit(theory, args.seconds)
            for K in args.chains:
                B = max(1, PASS // K)
                proposal = {"path": str(run), "batch_size": B, "seed": 1}
                hmc = per_update(theory, lambda k: HMC(**HMC_SETTINGS), K, args.seconds, 20)
                mh = per_update(theory, lambda k: LearnedMH({**proposal, "chain": k}), K, args.seconds, B)
                hybrid = per_update(theory, lambda k: Hybrid({"algorithm": "hmc", "settings": HMC(**HMC_SETTINGS)
                                                              .settings()}, {**proposal, "chain": k}),
                                    K, args.seconds, B)
                print(f"| u1 {L}x{L} | {K} | {hmc / unit:.3g} | {mh / unit:.3g} | {hybrid / unit:.3g} | "
                      f"{unit * 1e6:.0f} us |", flush=True)


if __name__ == "__main__":
    main()
