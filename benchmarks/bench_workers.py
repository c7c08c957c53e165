"""Chain sets over worker processes (issue 15): chains per second of `python -m generate --chains K`
with `--workers W --executor local|mpi` (W = 1, 2) against one process running the same chains.

Every run is a real subprocess, timed from its start to its exit (interpreter start, imports, the
Numba cache load, the model load, the worker pool and the files included), writing into a fresh
temporary folder, with fixed seeds (the files are the same in every configuration: chain k is
defined by (seed, k) alone). Cases (K chains, N stored configurations each):

    hmc L=16    phi4, kappa = 0.21, lam = 0.022, HMC (tuned), --every 10, 500 thermalization trajectories
    hmc L=64    the same on 64 x 64, --every 20
    learned-mh  phi4 8 x 8, m2 = -4, g = 8, independence MH from a small RealNVP (4 layers, hidden 8,8)
                trained here first by `python -m train` (200 reverse-KL steps; its time is printed
                apart: it is not part of any ratio), float64 (exact), proposal batch 256

Configurations: one process (no --workers; Numba and torch with their default threads, i.e. every
core), then W = 1, 2 with the local executor (a spawn process pool) and with `--executor mpi` under
`mpiexec -n W+1 python -m mpi4py.futures -m generate` (skipped without mpiexec / mpi4py). Workers get
NUMBA_NUM_THREADS = OMP_NUM_THREADS = max(1, cores // W) (and --threads for the model), as the README
asks, so W x threads fits the cores.

Each configuration is run twice as it is (N configurations) and twice with --n-configs 1 --n-therm 0
(the fixed start-up cost: everything but the chains' work), the repetitions interleaved. The table
gives the best wall time of each (and the other one, so the noise shows), the CPU seconds of the
run's processes (all of them, MPI ranks included), chains per second K / wall and its ratio to the
single process, and the steady rate K N / (wall - start-up) with its ratio ("n/r", not resolved,
where that difference is under 1 s or a quarter of the wall: --quick's runs are mostly start-up).
The VM may be shared: before each run the benchmark waits (at most --max-wait s) for the rest of the
machine to go quiet, and the "other load" column gives the largest share of the machine's CPU that other processes took
during the row's runs (/proc/stat busy time minus this run's CPU): a row with a large one is suspect.

    PYTHONPATH=. python benchmarks/bench_workers.py            # about 12 min on the 2-core VM
    PYTHONPATH=. python benchmarks/bench_workers.py --quick    # about 3 min: N / 5, W = 2 only, 50 training steps
    PYTHONPATH=. python benchmarks/bench_workers.py --cases hmc16 --repeats 3 --workers 1 2 4
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHI4 = ["--theory", "phi4", "--kappa", "0.21", "--lam", "0.022", "--algorithm", "hmc"]
# name: (generate flags, K chains, N configs, N with --quick)
CASES = {
    "hmc16": (PHI4 + ["--L", "16", "--every", "10", "--n-therm", "500"], 16, 3000, 600),
    "hmc64": (PHI4 + ["--L", "64", "--every", "20", "--n-therm", "500"], 16, 400, 60),
    "learned": (["--algorithm", "learned-mh", "--n-therm", "100"], 8, 3000, 600),
}
LABELS = {"hmc16": "phi4 hmc 16x16", "hmc64": "phi4 hmc 64x64", "learned": "phi4 learned-mh 8x8 (RealNVP)"}
TRAIN = ["--theory", "phi4", "--L", "8", "--m2", "-4", "--g", "8", "--model", "realnvp", "--objective", "reverse-kl",
         "--batch-size", "128", "--n-layers", "4", "--hidden", "8,8", "--eval-batch", "1024", "--seed", "0", "--quiet"]


def environment(threads: int | None) -> dict:
    """The subprocess environment: this repository importable, and (for workers) the thread counts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    for key in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        env.pop(key, None)
        if threads is not None:
            env[key] = str(threads)
    return env


def command(executor: str | None, workers: int, flags: list[str]) -> list[str]:
    """The command line of one configuration (executor None: one process, no --workers)."""
    generate = [sys.executable, "-m", "generate", *flags]
    if executor is None:
        return generate
    if executor == "local":
        return [*generate, "--workers", str(workers), "--executor", "local"]
    return ["mpiexec", "-n", str(workers + 1), sys.executable, "-m", "mpi4py.futures", "-m", "generate", *flags,
            "--workers", str(workers), "--executor", "mpi"]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's finished children (and theirs: the MPI ranks under mpiexec)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_quiet(max_wait: float, cores: int, threshold: float = 0.2) -> None:
    """Wait (at most max_wait s) until the rest of the machine uses under ``threshold`` cores: this
    benchmark shares its VM, and another job's CPU would be counted against the workers."""
    deadline = time.perf_counter() + max_wait
    while True:
        b0 = machine_busy()
        time.sleep(0.5)
        if (machine_busy() - b0) / 0.5 < threshold or time.perf_counter() > deadline:
            return


def timed(cmd: list[str], env: dict, tmp: Path, max_wait: float, cores: int) -> tuple[float, float, float]:
    """(wall s, CPU s of the run's processes, other processes' CPU as a fraction of the machine during
    the run) of the subprocess ``cmd``, its output in a fresh folder under tmp (removed after)."""
    wait_quiet(max_wait, cores)
    out = Path(tempfile.mkdtemp(dir=tmp))
    cmd = [*cmd, "--out", str(out / "x.h5"), "--quiet"]
    b0, c0, t0 = machine_busy(), children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0
    other = max(0.0, machine_busy() - b0 - cpu) / (wall * cores)
    shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {' '.join(cmd)}\n{done.stderr.strip()[-2000:]}")
    return wall, cpu, other


def mpi_available() -> str:
    """'' if the mpi executor can run here, else why not."""
    if shutil.which("mpiexec") is None:
        return "no mpiexec on PATH"
    if importlib.util.find_spec("mpi4py") is None:
        return "no mpi4py"
    return ""


def fmt(x: float, spec: str) -> str:
    return "n/r" if math.isnan(x) else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (N / 5), W = 2 only, 50 training steps: "
                    "about 3 min")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--workers", type=int, nargs="+", help="W values [1 2; --quick: 2]")
    ap.add_argument("--executors", nargs="+", choices=["local", "mpi"], default=["local", "mpi"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--train-steps", type=int, help="training steps of the learned-mh model [200; --quick 50]")
    ap.add_argument("--max-wait", type=float, default=20.0, help="seconds to wait before each run for the rest "
                    "of the machine to go quiet (< 0.2 cores busy) [20]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed benchmark still removes its folder
    cores = os.cpu_count() or 1
    workers = args.workers or ([2] if args.quick else [1, 2])
    executors = list(args.executors)
    why = mpi_available() if "mpi" in executors else ""
    if why:
        print(f"# mpi executor skipped: {why}")
        executors.remove("mpi")
    import numba
    import torch

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {cores} cores, "
          f"python {platform.python_version()}, torch {torch.__version__}, numba {numba.__version__}"
          + (", --quick" if args.quick else ""))
    configs = [(None, 1)] + [(e, w) for e in executors for w in workers]
    rows, t_start = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_workers_") as tmp_name:
        tmp = Path(tmp_name)
        run_dir = None
        if "learned" in args.cases:
            steps = args.train_steps or (50 if args.quick else 200)
            run_dir = tmp / "realnvp"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "train", *TRAIN, "--steps", str(steps), "--out", str(run_dir)],
                           cwd=tmp, env=environment(None), check=True)
            print(f"# learned-mh model: python -m train {' '.join(TRAIN)} --steps {steps}: "
                  f"{time.perf_counter() - t0:.1f} s (not in any ratio)", flush=True)
        for case in args.cases:
            flags, K, N, N_quick = CASES[case]
            N = N_quick if args.quick else N
            flags = [*flags, "--seed", "1", "--chains", str(K)]
            if case == "learned":
                flags += ["--proposal", str(run_dir)]
            walls = {c: {"run": [], "start": []} for c in configs}
            for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits every configuration
                for executor, W in configs:
                    threads = None if executor is None else max(1, cores // W)
                    extra = ["--threads", str(threads or cores)] if case == "learned" else []
                    cmd = command(executor, W, flags + extra)
                    env = environment(threads)
                    for kind, more in (("run", ["--n-configs", str(N)]), ("start", ["--n-configs", "1", "--n-therm", "0"])):
                        walls[executor, W][kind].append(timed([*cmd, *more], env, tmp, args.max_wait, cores))
            base = None
            for executor, W in configs:
                run, start = sorted(walls[executor, W]["run"]), sorted(walls[executor, W]["start"])
                work = run[0][0] - start[0][0]  # resolved only if well above the noise of either
                steady = K * N / work if work > max(1.0, 0.25 * run[0][0]) else math.nan
                row = {"case": LABELS[case], "K": K, "N": N, "how": "one process" if executor is None else
                       f"--workers {W} --executor {executor}", "run": run, "start": start,
                       "chains_s": K / run[0][0], "steady": steady,
                       "other": max(t[2] for t in run + start)}
                base = base or row
                row["ratio"], row["steady_ratio"] = row["chains_s"] / base["chains_s"], steady / base["steady"]
                if math.isnan(steady) or math.isnan(base["steady"]):
                    row["steady_ratio"] = math.nan
                rows.append(row)
                print(f"# {row['case']}, {row['how']}: runs {', '.join(f'{t[0]:.2f} s ({t[1]:.1f} CPU s)' for t in run)}; "
                      f"start-up {', '.join(f'{t[0]:.2f} s ({t[1]:.1f} CPU s)' for t in start)}", flush=True)
    print(f"\n# total {time.perf_counter() - t_start:.0f} s; best of {args.repeats} (the other repeats in brackets); "
          "CPU s: of the run's processes (best run); steady: K N / (wall - start-up), n/r (not resolved) where "
          "that difference is under 1 s or a quarter of the wall time; other load: the most CPU other processes "
          "took during any of the row's runs, as a share of the machine\n")
    print("| case | K x N | how | wall s | CPU s | start-up s | chains/s | vs one process | steady configs/s | "
          "steady vs one process | other load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        def best(ts):
            return f"{ts[0][0]:.2f}" + (f" ({', '.join(f'{t[0]:.2f}' for t in ts[1:])})" if len(ts) > 1 else "")
        print(f"| {r['case']} | {r['K']} x {r['N']} | {r['how']} | {best(r['run'])} | {r['run'][0][1]:.1f} | "
              f"{best(r['start'])} | {r['chains_s']:.3g} | {r['ratio']:.2f} | {fmt(r['steady'], '.4g')} | "
              f"{fmt(r['steady_ratio'], '.2f')} | {100 * r['other']:.0f} % |")


if __name__ == "__main__":
    main()
