"""Winding moves against plain HMC: tau_int(Q) of 2D U(1) at beta = 6 (samplers/winding.py, docs/winding.md).

For each lattice (L = 8, 16) a set of K chains (``samplers.chain.run_chains``, in process, cold start,
HMC step tuned to acceptance 0.8 during thermalization as generate does, trajectory length 1) of

    plain HMC                       (stored every ``--hmc-every`` trajectories), and
    HMC + winding moves (wHMC)      one update = N trajectories + one winding move on an Lw x Lw square,
                                    for the (N, Lw) pairs of ``--winding`` (stored every update),

keeps only the topological charge Q of each stored configuration and measures tau_int(Q) with the
project's Gamma method over the K chains as replicas (observables.stats.gamma_method, S = 2), in units of
HMC trajectories (N trajectories per wHMC update). Per row: winding-move acceptance, tau_int(Q) with its
error, N_traj / tau_int (how well tau_int is resolved: the Gamma-method error of tau_int is ~
tau_int sqrt(2 (2W + 1) / N)), <Q^2> against the exact torus value (lattice/exact.py), the wall time per
trajectory per chain (the set's sampling time / (K x trajectories per chain): thermalization and
compilation excluded, the per-configuration Q measurement included) and the CPU time per trajectory
(process time of the whole set, thermalization included, the Q measurement excluded, over all its
trajectories: what the shared machine's load does not inflate), the cost per independent Q = CPU per trajectory x 2 tau_int, and the
ratios tau_int(HMC) / tau_int(this) and cost(HMC) / cost(this) with their errors (the relative errors
of the two tau_int added in quadrature).

Single-threaded (NUMBA_NUM_THREADS = 1), one set at a time; the chains are deterministic (fixed seed), the
wall times are not (the machine is shared).

    PYTHONPATH=. python benchmarks/bench_winding.py [--L 8 16] [--chains 16] [--hmc-trajectories 200000]
        [--whmc-trajectories 40000] [--winding 1:L 4:L 16:L 1:L-2 1:L/2] [--json data/bench_winding/results.json]
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from lattice import U1  # noqa: E402
from lattice.exact import u1_topological_susceptibility_torus  # noqa: E402
from lattice.u1 import plaquette_angles  # noqa: E402
from observables.stats import ShortChainWarning, gamma_method  # noqa: E402
from samplers import HMC  # noqa: E402
from samplers.chain import ChainState, run_chains  # noqa: E402
from samplers.winding import WindingHMC  # noqa: E402

TWO_PI = 2 * math.pi


class ChargeWriter:
    """Keeps the topological charge of each stored configuration only (PHYSICS.md: wrap to (-pi, pi])."""

    def __init__(self):
        self.q: list[int] = []
        self.cpu = 0.0  # process seconds spent measuring Q (taken out of the sampler's CPU time)

    def begin(self, state, settings):
        pass

    def append(self, config, action, info):
        t0 = time.process_time()
        p = plaquette_angles(config)
        self.q.append(round(float((p - TWO_PI * np.ceil((p - math.pi) / TWO_PI)).sum()) / TWO_PI))
        self.cpu += time.process_time() - t0

    def flush(self, state):
        pass

    def finish(self, summary):
        pass


def run_set(L: int, beta: float, n_every: int, size: int | None, chains: int, n_configs: int, every: int,
            n_therm: int, seed: int) -> dict:
    """One set of ``chains`` chains; n_every = 0: plain HMC, else wHMC with N = n_every, Lw = size."""
    theory = U1((L, L), beta)
    samplers = [HMC() if n_every == 0 else WindingHMC(HMC(), n_every, size) for _ in range(chains)]
    states = [ChainState.start(theory, seed, "cold", chain=k) for k in range(chains)]
    writers = [ChargeWriter() for _ in range(chains)]
    cpu0 = time.process_time()
    summaries = run_chains(theory, samplers, states, n_configs, every=every, n_therm=n_therm, writers=writers)
    cpu = time.process_time() - cpu0 - sum(w.cpu for w in writers)
    traj_per_config = every * max(n_every, 1)
    q = np.concatenate([np.array(w.q, dtype=np.float64) for w in writers])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortChainWarning)
        est = gamma_method(q, every=traj_per_config, replicas=[n_configs] * chains)
        q2 = gamma_method(q**2, every=traj_per_config, replicas=[n_configs] * chains)
    n_traj = chains * n_configs * traj_per_config
    wall_traj = summaries[0].wall_time / n_traj
    cpu_traj = cpu / (n_traj + chains * n_therm * max(n_every, 1))  # thermalization included
    tau = est.tau_int_updates
    reports = [s.report for s in summaries]
    row = {
        "L": L, "beta": beta, "algorithm": "hmc" if n_every == 0 else "whmc", "N": n_every,
        "Lw": (L if size is None else size) if n_every else None, "chains": chains, "configs_per_chain": n_configs,
        "trajectories": n_traj, "hmc_acceptance": float(np.mean([s.acceptance for s in summaries])),
        "winding_acceptance": float(np.mean([r["winding_accept"] for r in reports])) if n_every else None,
        "tau_int": tau, "tau_err": est.tau_int_error * est.every, "n_over_tau": n_traj / tau,
        "short": bool(est.short), "q2": q2.value, "q2_err": q2.error,
        "q2_exact": V_chi(beta, L), "wall_us_per_traj": 1e6 * wall_traj, "wall_s": summaries[0].wall_time,
        "therm_s": summaries[0].therm_time, "cpu_us_per_traj": 1e6 * cpu_traj,
        "cost_us": 1e6 * wall_traj * 2 * tau, "cpu_cost_us": 1e6 * cpu_traj * 2 * tau,
    }
    print(json.dumps(row), flush=True)
    return row


def V_chi(beta: float, L: int) -> float:
    """<Q^2> = V chi_t on the L x L torus (exact)."""
    return L * L * u1_topological_susceptibility_torus(beta, L * L)


def ratio(a: float, da: float, b: float, db: float) -> tuple[float, float]:
    r = a / b
    return r, r * math.hypot(da / a, db / b)


def table(rows: list[dict]) -> list[str]:
    out = ["| L | algorithm | N | Lw | chains x trajectories | winding acc. | tau_int(Q) (traj.) | N_traj / tau | "
           "<Q^2> (exact) | wall us / traj. | CPU us / traj. | CPU cost us / indep. Q | tau(HMC) / tau | "
           "CPU cost(HMC) / cost |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    hmc = {r["L"]: r for r in rows if r["algorithm"] == "hmc"}
    for r in rows:
        h = hmc.get(r["L"])
        if h is not None:
            t, dt = ratio(h["tau_int"], h["tau_err"], r["tau_int"], r["tau_err"])
            c = h["cpu_cost_us"] / r["cpu_cost_us"]
            rt, rc = f"{t:.3g} ± {dt:.2g}", f"{c:.3g} ± {c * dt / t:.2g}"
        else:
            rt = rc = "—"
        acc = "—" if r["winding_acceptance"] is None else f"{r['winding_acceptance']:.3f}"
        short = " (short)" if r["short"] else ""
        out.append(f"| {r['L']} | {r['algorithm']} | {r['N'] or '—'} | {r['Lw'] or '—'} | "
                   f"{r['chains']} x {r['trajectories'] // r['chains']} | {acc} | "
                   f"{r['tau_int']:.3g} ± {r['tau_err']:.2g}{short} | {r['n_over_tau']:.0f} | "
                   f"{r['q2']:.4f} ± {r['q2_err']:.4f} ({r['q2_exact']:.4f}) | {r['wall_us_per_traj']:.1f} | "
                   f"{r['cpu_us_per_traj']:.1f} | {r['cpu_cost_us']:.3g} | {rt} | {rc} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--L", type=int, nargs="+", default=[8, 16])
    p.add_argument("--beta", type=float, default=6.0)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--hmc-trajectories", type=int, default=200_000, help="per chain, plain HMC")
    p.add_argument("--hmc-every", type=int, default=10, help="plain HMC: trajectories per stored Q")
    p.add_argument("--whmc-trajectories", type=int, default=40_000, help="per chain, each wHMC set")
    p.add_argument("--winding", nargs="+", default=["1:L", "4:L", "16:L", "1:L-2", "1:L/2"],
                   help="N:Lw pairs (Lw: an integer, L, L-2 or L/2)")
    p.add_argument("--therm", type=int, default=5000, help="thermalization trajectories (cold start)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="write the rows here")
    args = p.parse_args(argv)
    print(f"# bench_winding {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, beta = {args.beta}")
    rows = []
    for L in args.L:
        rows.append(run_set(L, args.beta, 0, None, args.chains, args.hmc_trajectories // args.hmc_every,
                            args.hmc_every, args.therm, args.seed))
        for pair in args.winding:
            n, lw = pair.split(":")
            size = {"L": None, "L-2": L - 2, "L/2": L // 2}[lw] if lw.startswith("L") else int(lw)
            n = int(n)
            rows.append(run_set(L, args.beta, n, size, args.chains, args.whmc_trajectories // n, 1,
                                max(100, args.therm // n), args.seed))
    print()
    for line in table(rows):
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
