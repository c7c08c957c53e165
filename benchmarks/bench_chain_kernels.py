"""Chain-set kernels: the cost per chain of one batched update (``update_chains`` on K chains) against
one single-chain ``update``, measured in the same run.

    python benchmarks/bench_chain_kernels.py            # about 25 s on the 2-core VM
    python benchmarks/bench_chain_kernels.py --quick    # fewer repeats

Prints, for HMC (leapfrog, fixed step 0.15 at trajectory length 1: 7 steps, jitter 0.2) on U(1)
L = 8 and 16 (beta = 2) and phi^4 L = 8 (m2 = -4, g = 8), and for Metropolis, heat-bath and
over-relaxation sweeps of U(1) L = 8, the single-chain time of one update and, for K = 1, 16, 64,
256, (wall time of one update_chains on K chains / K) / (single-chain time). Each time is the best of
a few timed blocks, the blocks of the single chain and of each K taken in turn (the machine is
shared: a change of its load hits them alike). The goal of issue 14 item 6: HMC on U(1)
L = 8 at K = 64 costs at most 1/4 of a single-chain trajectory per chain.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lattice import U1, Phi4  # noqa: E402
from samplers.heatbath import HeatBath, OverRelaxation  # noqa: E402
from samplers.hmc import HMC  # noqa: E402
from samplers.metropolis import Metropolis  # noqa: E402

KS = (1, 16, 64, 256)


def block_time(fn, min_seconds: float) -> float:
    """Mean wall seconds of one fn() call over a block of calls lasting >= min_seconds."""
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            return elapsed / n


def interleaved_best(fns: list, min_seconds: float, repeats: int) -> list[float]:
    """Best block time of each fn, the blocks of all fns taken in turn ``repeats`` times (so a change of
    the machine's load hits them alike)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], block_time(fn, min_seconds))
    return best


def configs(theory, K: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    qs = np.stack([theory.random_config(rng) for _ in range(K)])
    return np.ascontiguousarray(qs if theory.compact else 0.5 * qs)


def measure(label: str, theory, make_sampler, min_seconds: float, repeats: int) -> None:
    """One line: the single-chain time and the per-chain ratio of update_chains at each K."""
    sampler = make_sampler()
    q, rng = configs(theory, 1)[0], np.random.default_rng(0)
    fns = [lambda: sampler.update(theory, q, rng)]
    for K in KS:
        samplers = [make_sampler() for _ in range(K)]
        rngs = [np.random.default_rng(k) for k in range(K)]
        qs = configs(theory, K)
        fns.append(lambda s=samplers, x=qs, r=rngs: type(sampler).update_chains(theory, s, x, r))
    single, *batched = interleaved_best(fns, min_seconds, repeats)
    cells = " | ".join(f"{t / K / single:.3f}" for t, K in zip(batched, KS))
    print(f"| {label} | {1e6 * single:.1f} | {cells} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timed blocks")
    args = parser.parse_args(argv)
    min_seconds, repeats = (0.1, 2) if args.quick else (0.25, 3)
    print(f"numba threads: {numba.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    print("| case | single-chain update (us) | " + " | ".join(f"per chain / single, K = {K}" for K in KS) + " |")
    print("|---|---:|" + "---:|" * len(KS))
    hmc = lambda: HMC(step_size=0.15, traj_length=1.0)  # noqa: E731
    measure("HMC u1 L=8 beta=2", U1((8, 8), 2.0), hmc, min_seconds, repeats)
    measure("HMC u1 L=16 beta=2", U1((16, 16), 2.0), hmc, min_seconds, repeats)
    measure("HMC phi4 L=8 m2=-4 g=8", Phi4((8, 8), m2=-4.0, g=8.0), hmc, min_seconds, repeats)
    u1 = U1((8, 8), 2.0)
    measure("metropolis u1 L=8 beta=2", u1, lambda: Metropolis(delta=1.0), min_seconds, repeats)
    measure("heatbath u1 L=8 beta=2", u1, HeatBath, min_seconds, repeats)
    measure("overrelaxation (1 + 3 sweeps) u1 L=8 beta=2", u1, OverRelaxation, min_seconds, repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
