"""Speed of the configuration generators (issue 2): Numba kernels against plain numpy.

For each theory and lattice size L (phi^4 in d = 2 at kappa = 0.27, lam = 0.022 and XY at
beta = 1.12 on L = 32, 64, 256, 1024; U(1) at beta = 3 on L = 16, 64, 256) it measures, in ns
per degree of freedom (per site; per link for U(1)):

  (a) one Metropolis sweep,        theory.metropolis_sweep(q, delta, key)
  (b) one HMC integrator step,     theory.kick(q, p, eps) + samplers.integrators.drift(q, p, eps)
  (c) one whole HMC trajectory,    samplers.hmc.HMC(step_size=0.1, n_steps=10).update(theory, q, rng)
      of 10 leapfrog steps including the momentum refresh, the two actions and the accept step,

each beside a plain numpy vectorized implementation of the same update written below
(checkerboard Metropolis with np.roll neighbour sums and boolean masks, np.random.Generator
random numbers; numpy force + leapfrog step; numpy trajectory) measured in the same run, and the
ratio numpy / numba (> 1: numba is faster). Timing: one warm-up call (compilation excluded), then
the best of k repetitions (time.perf_counter), each repetition a loop of n calls with n chosen so
that a repetition lasts a few ms or more.

    PYTHONPATH=. python benchmarks/bench_generators.py               # full run, 1 thread and all cores
    PYTHONPATH=. python benchmarks/bench_generators.py --quick       # smoke run, < 30 s
    PYTHONPATH=. python benchmarks/bench_generators.py --threads 1 --markdown
    PYTHONPATH=. python benchmarks/bench_generators.py --quick --sizes 256 --threads 1   # the goals only

The numpy references do not depend on the Numba thread count: they are measured once per
(theory, L) and shown in every thread table. The goals (L = 256, one thread) are checked at the end.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time

import numba
import numpy as np

from lattice.phi4 import Phi4
from lattice.rng import new_key
from lattice.u1 import U1
from lattice.xy import XY
from samplers.hmc import HMC
from samplers.integrators import drift

EPS = 0.1  # HMC step size
N_STEPS = 10  # leapfrog steps per trajectory
# Metropolis widths (acceptance about 0.4 - 0.6 at these couplings)
DELTA = {"phi4": 1.5, "xy": 2.0, "u1": 1.5}
SIZES = {"phi4": (32, 64, 256, 1024), "xy": (32, 64, 256, 1024), "u1": (16, 64, 256)}
QUICK_SIZES = {"phi4": (16, 64), "xy": (16, 64), "u1": (16, 64)}
# goals at L = 256 on one thread: (label, theory, column, ns per dof)
GOALS = [
    ("phi^4 Metropolis sweep", "phi4", "metro", 5.0, "ns/site update"),
    ("phi^4 HMC leapfrog step", "phi4", "step", 1.0, "ns/site"),
    ("phi^4 10-step HMC trajectory", "phi4", "traj", 25.0, "ns/site"),
    ("U(1) HMC leapfrog step", "u1", "step", 2.0, "ns/link"),
]
GOAL_L = 256
TWO_PI = 2.0 * np.pi


def make_theory(name: str, L: int):
    if name == "phi4":
        return Phi4((L, L), kappa=0.27, lam=0.022)
    if name == "xy":
        return XY((L, L), beta=1.12)
    if name == "u1":
        return U1((L, L), beta=3.0)
    raise ValueError(name)


# =========================================================================== numpy references
def np_wrap(t: np.ndarray) -> np.ndarray:
    """t mod 2 pi into [-pi, pi)."""
    return t - TWO_PI * np.floor((t + np.pi) / TWO_PI)


def checkerboard_masks(shape: tuple[int, ...]) -> list[np.ndarray]:
    parity = np.indices(shape).sum(axis=0) % 2
    return [parity == 0, parity == 1]


class NumpyPhi4:
    """S = sum_x [-A sum_mu phi phi_{x+mu} + B phi^2 + C phi^4]."""

    compact = False

    def __init__(self, theory: Phi4):
        self.A, self.B, self.C = theory.coefficients
        self.shape = theory.shape
        self.masks = checkerboard_masks(self.shape)

    def hop(self, x):
        h = np.zeros_like(x)
        for mu in range(x.ndim):
            h += np.roll(x, -1, axis=mu)
            h += np.roll(x, 1, axis=mu)
        return h

    def action(self, x):
        links = sum(x * np.roll(x, -1, axis=mu) for mu in range(x.ndim))
        x2 = x * x
        return float(np.sum(-self.A * links + x2 * (self.B + self.C * x2)))

    def force(self, x):
        return self.A * self.hop(x) - x * (2.0 * self.B + 4.0 * self.C * x * x)

    def metropolis_sweep(self, x, delta, rng):
        A, B, C = self.A, self.B, self.C
        accepted = 0
        for m in self.masks:
            h = self.hop(x)[m]
            old = x[m]
            u = rng.random((2, old.size))
            new = old + delta * (2.0 * u[0] - 1.0)
            o2 = old * old
            n2 = new * new
            dS = -A * h * (new - old) + B * (n2 - o2) + C * (n2 * n2 - o2 * o2)
            acc = u[1] < np.exp(-dS)  # dS <= 0 gives exp >= 1 > u
            x[m] = np.where(acc, new, old)
            accepted += int(np.count_nonzero(acc))
        return accepted


class NumpyXY:
    compact = True

    def __init__(self, theory: XY):
        self.beta = theory.beta
        self.masks = checkerboard_masks(theory.shape)

    @staticmethod
    def nsum(a):
        return np.roll(a, -1, 0) + np.roll(a, 1, 0) + np.roll(a, -1, 1) + np.roll(a, 1, 1)

    def action(self, t):
        return float(-self.beta * sum(np.cos(np.roll(t, -1, mu) - t).sum() for mu in (0, 1)))

    def force(self, t):
        c, s = np.cos(t), np.sin(t)
        return self.beta * (c * self.nsum(s) - s * self.nsum(c))

    def metropolis_sweep(self, t, delta, rng):
        accepted = 0
        for m in self.masks:
            c, s = np.cos(t), np.sin(t)
            sc, ss = self.nsum(c)[m], self.nsum(s)[m]
            old = t[m]
            u = rng.random((2, old.size))
            new = np_wrap(old + delta * (2.0 * u[0] - 1.0))
            dS = -self.beta * ((np.cos(new) - c[m]) * sc + (np.sin(new) - s[m]) * ss)
            acc = u[1] < np.exp(-dS)
            t[m] = np.where(acc, new, old)
            accepted += int(np.count_nonzero(acc))
        return accepted


class NumpyU1:
    compact = True

    def __init__(self, theory: U1):
        self.beta = theory.beta
        self.masks = checkerboard_masks(theory.shape)

    @staticmethod
    def plaq(t):
        t0, t1 = t[0], t[1]
        return t0 + np.roll(t1, -1, 0) - np.roll(t0, -1, 1) - t1

    def action(self, t):
        return float(self.beta * np.sum(1.0 - np.cos(self.plaq(t))))

    def force(self, t):
        sp = np.sin(self.plaq(t))
        f = np.empty_like(t)
        f[0] = self.beta * (np.roll(sp, 1, 1) - sp)
        f[1] = self.beta * (sp - np.roll(sp, 1, 0))
        return f

    def metropolis_sweep(self, t, delta, rng):
        """4 classes (mu, parity); the two plaquettes containing link (mu, x) are
        mu = 0: P(x) = theta + a, P(x - e1) = b - theta; mu = 1: P(x) = c - theta, P(x - e0) = theta + e."""
        beta = self.beta
        accepted = 0
        for mu in range(2):
            for m in self.masks:
                t0, t1 = t[0], t[1]
                if mu == 0:
                    t1p0 = np.roll(t1, -1, 0)
                    s1 = (t1p0 - np.roll(t0, -1, 1) - t1)[m]  # a
                    s2 = np.roll(t0 + t1p0 - t1, 1, 1)[m]  # b
                    sg1, sg2 = 1.0, -1.0
                else:
                    t0p1 = np.roll(t0, -1, 1)
                    s1 = (t0 + np.roll(t1, -1, 0) - t0p1)[m]  # c
                    s2 = np.roll(t0 - t0p1 - t1, 1, 0)[m]  # e
                    sg1, sg2 = -1.0, 1.0
                old = t[mu][m]
                u = rng.random((2, old.size))
                new = np_wrap(old + delta * (2.0 * u[0] - 1.0))
                s_old = np.cos(s1 + sg1 * old) + np.cos(s2 + sg2 * old)
                s_new = np.cos(s1 + sg1 * new) + np.cos(s2 + sg2 * new)
                acc = u[1] < np.exp(beta * (s_new - s_old))
                t[mu][m] = np.where(acc, new, old)
                accepted += int(np.count_nonzero(acc))
        return accepted


NUMPY_THEORIES = {"phi4": NumpyPhi4, "xy": NumpyXY, "u1": NumpyU1}


def np_step(ref, q, p, eps):
    """One leapfrog step, written as 'kick then drift' like the Numba measurement."""
    p += eps * ref.force(q)
    q += eps * p


def np_trajectory(ref, q, rng, eps=EPS, n_steps=N_STEPS):
    """The numpy twin of HMC(step_size=eps, n_steps=n_steps).update(theory, q, rng)."""
    p = rng.standard_normal(q.shape)
    qn = q.copy()
    h_old = 0.5 * float(np.vdot(p, p)) + ref.action(q)
    p += 0.5 * eps * ref.force(qn)
    for k in range(n_steps):
        qn += eps * p
        p += (eps if k < n_steps - 1 else 0.5 * eps) * ref.force(qn)
    if ref.compact:
        qn = np_wrap(qn)
    dH = 0.5 * float(np.vdot(p, p)) + ref.action(qn) - h_old
    u = rng.random()
    accept = dH <= 0 or u < math.exp(-dH)
    if accept:
        q[...] = qn
    return accept


# =========================================================================== timing
def best_time(fn, n_dof, target_s, k, max_calls=10**6):
    """ns per dof of fn(): a warm-up call, then k repetitions of n calls each (n chosen so that a
    repetition lasts about target_s). Returns (best, median) over the repetitions; short
    repetitions and many of them keep the best clear of stalls from other processes."""
    fn()  # warm-up (compiles on first use; cached kernels load)
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    n = int(min(max_calls, max(1, round(target_s / max(one, 1e-7)))))
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t0) / n)
    return min(times) * 1e9 / n_dof, float(np.median(times)) * 1e9 / n_dof


def reps_for(L, quick):
    """(k, target seconds per repetition): fewer repetitions at large L."""
    if quick:
        return 3, 0.002
    if L >= 1024:
        return 5, 0.0
    if L >= 256:
        return 15, 0.005
    return 25, 0.002


# =========================================================================== checks
def check_reference(theory, ref, q):
    """The numpy references compute the same action and force as the kernels."""
    s_nb, s_np = theory.action(q), ref.action(q)
    f_nb, f_np = theory.force(q), ref.force(q)
    if not (math.isclose(s_nb, s_np, rel_tol=1e-9, abs_tol=1e-9 * q.size)
            and np.allclose(f_nb, f_np, rtol=1e-9, atol=1e-9)):
        raise AssertionError(f"numpy reference disagrees with the kernels for {theory.name} "
                             f"(S {s_nb} vs {s_np}, max |dF| {np.max(np.abs(f_nb - f_np))})")


# =========================================================================== one (theory, L)
def measure(name, L, threads_list, quick, seed=1234):
    """Rows {threads: {...}} for one theory and size."""
    theory = make_theory(name, L)
    ref = NUMPY_THEORIES[name](theory)
    rng = np.random.default_rng(seed)
    n = theory.n_dof
    delta = DELTA[name]
    k, target = reps_for(L, quick)
    q0 = theory.random_config(rng)
    check_reference(theory, ref, q0)
    # equilibrate a little with the kernel (so that the acceptance is typical), 1 thread
    numba.set_num_threads(1)
    n_therm = 5 if quick else (30 if L <= 256 else 10)
    for _ in range(n_therm):
        theory.metropolis_sweep(q0, delta, new_key(rng))

    # ---- numpy references (independent of the Numba thread count)
    res_np = {}
    qn = q0.copy()
    acc = [0, 0]

    def np_metro():
        acc[0] += ref.metropolis_sweep(qn, delta, rng)
        acc[1] += n

    res_np["metro"], res_np["metro_med"] = best_time(np_metro, n, target, k)
    res_np["acc"] = acc[0] / acc[1]
    qs, ps = q0.copy(), rng.standard_normal(q0.shape)
    res_np["step"], res_np["step_med"] = best_time(lambda: np_step(ref, qs, ps, EPS), n, target, k)
    qt = q0.copy()
    res_np["traj"], res_np["traj_med"] = best_time(lambda: np_trajectory(ref, qt, rng), n, target, k)

    # ---- numba kernels
    rows = {}
    hmc = HMC(step_size=EPS, n_steps=N_STEPS)
    for nt in threads_list:
        numba.set_num_threads(nt)
        res = {}
        qm = q0.copy()
        acc = [0, 0]

        def nb_metro():
            acc[0] += theory.metropolis_sweep(qm, delta, new_key(rng))
            acc[1] += n

        res["metro"], res["metro_med"] = best_time(nb_metro, n, target, k)
        res["acc"] = acc[0] / acc[1]
        qs, ps = q0.copy(), rng.standard_normal(q0.shape)

        def nb_step():
            theory.kick(qs, ps, EPS)
            drift(qs, ps, EPS)

        res["step"], res["step_med"] = best_time(nb_step, n, target, k)
        qt = q0.copy()
        res["traj"], res["traj_med"] = best_time(lambda: hmc.update(theory, qt, rng), n, target, k)
        rows[nt] = (res, res_np)
    numba.set_num_threads(max(threads_list))
    return rows


# =========================================================================== output
COLS = ["theory", "L", "dof", "Metro numba", "numpy", "np/nb", "acc nb/np",
        "HMC step numba", "numpy", "np/nb", "traj numba", "numpy", "np/nb"]


NOISY = 2.0  # a cell gets a '*' when the median repetition took more than NOISY x the best


def format_row(name, L, n, res, res_np):
    def f(r, c):
        x = r[c]
        s = f"{x:.2f}" if x < 10 else (f"{x:.1f}" if x < 1000 else f"{x:.0f}")
        return s + ("*" if r[c + "_med"] > NOISY * x else "")

    out = [name, str(L), str(n)]
    for c in ("metro", "step", "traj"):
        out += [f(res, c), f(res_np, c), f"{res_np[c] / res[c]:.1f}"]
        if c == "metro":
            out.append(f"{res['acc']:.2f}/{res_np['acc']:.2f}")
    return out


def print_table(title, rows, markdown):
    if markdown:
        print(f"\n#### {title}\n")
        print("| " + " | ".join(COLS) + " |")
        print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(COLS))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(COLS[i]), *(len(r[i]) for r in rows)) for i in range(len(COLS))]
        print(f"\n{title}")
        print("  ".join(c.rjust(w[i]) for i, c in enumerate(COLS)))
        for r in rows:
            print("  ".join(c.rjust(w[i]) for i, c in enumerate(r)))
    sys.stdout.flush()


def machine_info():
    model = "unknown"
    flags = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        model = platform.processor() or "unknown"
    try:
        with open("/proc/loadavg") as fh:
            load = " ".join(fh.read().split()[:3])
    except OSError:
        load = "unknown"
    simd = ", ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "none listed"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return (f"CPU: {model} ({simd}); cores available: {cores}; numba threads max: "
            f"{numba.config.NUMBA_NUM_THREADS} (layer: {numba.config.THREADING_LAYER}); "
            f"Python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}; "
            f"load average at start: {load}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small L, few repetitions (< 30 s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="pin Numba to N threads (default: run 1 thread and all cores)")
    ap.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="override the lattice sizes L (all theories)")
    ap.add_argument("--theories", nargs="+", default=["phi4", "xy", "u1"], choices=["phi4", "xy", "u1"])
    args = ap.parse_args(argv)

    max_threads = numba.config.NUMBA_NUM_THREADS
    if args.threads is not None:
        if not 1 <= args.threads <= max_threads:
            ap.error(f"--threads must lie in 1..{max_threads}")
        threads_list = [args.threads]
    else:
        threads_list = sorted({1, max_threads})

    start = time.perf_counter()
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    head = [f"Generator benchmark (issue 2), {stamp}", machine_info(),
            f"units: ns per degree of freedom (site; link for U(1)); best of k after a warm-up; "
            f"np/nb = numpy time / numba time; HMC: eps = {EPS}, trajectory = {N_STEPS} leapfrog steps; "
            f"Metropolis widths {DELTA}; acc = Metropolis acceptance numba/numpy; "
            f"* = median repetition > {NOISY:g}x the best (stalls, e.g. other processes on the cores)"]
    for line in head:
        print(("- " if args.markdown else "") + line)
    sys.stdout.flush()

    sizes = QUICK_SIZES if args.quick else SIZES
    results = {}  # (name, L) -> {threads: (res, res_np)}
    for name in args.theories:
        for L in (args.sizes if args.sizes else sizes[name]):
            results[(name, L)] = measure(name, L, threads_list, args.quick)
            if not args.markdown:
                print(f"  done {name} L={L} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)

    for nt in threads_list:
        rows = [format_row(name, L, make_theory(name, L).n_dof, *r[nt]) for (name, L), r in results.items()]
        print_table(f"Numba threads = {nt} (numpy single-threaded as always)", rows, args.markdown)

    print()
    if args.markdown:
        print("Goals (L = 256, one Numba thread):\n")
    for label, name, col, goal, unit in GOALS:
        r = results.get((name, GOAL_L))
        if r is None or 1 not in r:
            verdict = "SKIP (not measured: needs L = 256 and 1 thread)"
        else:
            x = r[1][0][col]
            verdict = f"{'PASS' if x <= goal else 'MISS'}  {x:.2f} {unit} (goal <= {goal:g})"
        print(("- " if args.markdown else "") + f"{label}: {verdict}")
    if not args.quick:
        from bench_observables import run as run_observables

        print(("\n" if args.markdown else "") + "Observables (issue 3), 10,000 configurations, measurement + Gamma analysis:")
        for line in run_observables():
            print(("- " if args.markdown else "") + line)
    print(("\n" if args.markdown else "") + f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
