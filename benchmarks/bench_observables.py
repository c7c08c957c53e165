"""Speed of the observables (issue 3): all U(1) observables (every Wilson loop up to L/2, Q,
plaquette) on 10,000 configurations of L = 16, and all phi^4 observables on 10,000
configurations of L = 64, each beside a plain numpy reference measured in the same run.

Goals on this machine: U(1) < 10 s, phi^4 < 5 s (measurement of the primaries plus the
Gamma-method analysis of every primary and derived quantity). The content of the configurations
does not change the cost, so they are random (hot) fields.

    PYTHONPATH=. python benchmarks/bench_observables.py [--n 10000]
Also run at the end of benchmarks/bench_generators.py.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from lattice import Phi4, U1
from observables import theories
from observables.analysis import estimate_all


def numpy_wilson_loops(t: np.ndarray, n_max: int) -> np.ndarray:
    """Reference: W(R, T) by summing rolled link arrays, both orientations, (n_max, n_max)."""
    out = np.zeros((n_max, n_max))
    for a0, a1, mu, nu in ((1, 2, 0, 1), (2, 1, 1, 0)):  # R along axis 0 / along axis 1
        for R in range(1, n_max + 1):
            for T in range(1, n_max + 1):
                # R steps along mu from x, T along nu from x + R mu, back R, down T
                s = sum(np.roll(t[:, mu], -r, axis=a0) for r in range(R))
                s = s + sum(np.roll(np.roll(t[:, nu], -R, axis=a0), -k, axis=a1) for k in range(T))
                s = s - sum(np.roll(np.roll(t[:, mu], -T, axis=a1), -r, axis=a0) for r in range(R))
                s = s - sum(np.roll(t[:, nu], -k, axis=a1) for k in range(T))
                w = np.cos(s).mean(axis=(1, 2)).mean()
                if mu == 0:
                    out[R - 1, T - 1] += 0.5 * w
                else:
                    out[T - 1, R - 1] += 0.5 * w
    return out


def numpy_phi4(configs: np.ndarray, theory) -> dict:
    """Reference: M moments, action density and the slice correlator with plain numpy."""
    A, B, C = theory.coefficients
    links = sum((configs * np.roll(configs, -1, axis=mu)).sum(axis=(1, 2)) for mu in (1, 2))
    x2 = configs * configs
    S = (-A * links + (B * x2 + C * x2 * x2).sum(axis=(1, 2))) / configs[0].size
    M = configs.mean(axis=(1, 2))
    slices = configs.mean(axis=2)
    C = np.stack([(slices * np.roll(slices, -t, axis=1)).mean(axis=1) for t in range(configs.shape[1] // 2 + 1)], 1)
    return {"M": M, **{f"M^{k}": M**k for k in range(2, 7)}, "C": C, "S/V": S}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(n: int = 10_000) -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    u1 = U1((16, 16), 2.0)
    t = rng.uniform(-np.pi, np.pi, (n, 2, 16, 16))
    theories.primaries(t[:4], u1)  # compile / load the kernels outside the timing
    series = {}
    t_prim = timed(lambda: series.update(theories.primaries(t, u1)))
    t_stat = timed(lambda: estimate_all(series, u1))
    t_ref = timed(lambda: numpy_wilson_loops(t, 8))
    total = t_prim + t_stat
    lines.append(f"U(1) L=16, {n} configs: {total:.2f} s (primaries {t_prim:.2f} s + Gamma analysis {t_stat:.2f} s); "
                 f"numpy np.roll Wilson loops alone {t_ref:.2f} s (x{t_ref / t_prim:.1f}); goal < 10 s: "
                 f"{'PASS' if total < 10 else 'MISS'}")
    phi4 = Phi4((64, 64), kappa=0.27, lam=0.022)
    q = rng.standard_normal((n, 64, 64))
    theories.primaries(q[:4], phi4)
    series = {}
    t_prim = timed(lambda: series.update(theories.primaries(q, phi4)))
    t_stat = timed(lambda: estimate_all(series, phi4))
    t_ref = timed(lambda: numpy_phi4(q, phi4))
    total = t_prim + t_stat
    lines.append(f"phi4 L=64, {n} configs: {total:.2f} s (primaries {t_prim:.2f} s + Gamma analysis {t_stat:.2f} s); "
                 f"plain numpy M moments + S/V + slice correlator {t_ref:.2f} s (x{t_ref / t_prim:.1f}); goal < 5 s: "
                 f"{'PASS' if total < 5 else 'MISS'}")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    for line in run(ap.parse_args().n):
        print(line)
