"""Point-to-point correlators on a periodic lattice, averaged over translations, and the
independent separations under the lattice's symmetry (docs/physics.md, "Point-to-point correlator").

    C(x) = (1/V) sum_y f(y) f(y + x)          per configuration, for every separation x

computed for a batch by FFT (C = ifft(|fft f|^2) / V). Under the symmetry group of the
periodic lattice (a reflection x_mu -> -x_mu of each axis, and the permutations of axes of equal
length) C has the same expectation value on every separation of an orbit, so ``orbit_average``
keeps one number per orbit: the mean of C over the orbit. Each orbit is named by its canonical
representative, every component reduced to 0 <= x_mu <= L_mu / 2 and, among axes of equal length,
sorted in decreasing order: "(1,0)", "(2,1)", "(4,4)" on an 8 x 8 lattice (15 orbits of 64 separations).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


def point_correlator(configs) -> np.ndarray:
    """C(x) = (1/V) sum_y f(y) f(y + x) (periodic) for every separation x; (N, L0, L1, ...).

    configs: a batch (N, L0, L1, ...) of real fields. By FFT over the lattice axes. C(-x) = C(x) and
    sum_x C(x) = V Mbar^2 (Mbar the lattice mean of f) hold per configuration."""
    f = np.asarray(configs, dtype=np.float64)
    axes = tuple(range(1, f.ndim))
    shape = f.shape[1:]
    V = math.prod(shape)
    F = np.fft.rfftn(f, axes=axes)
    return np.fft.irfftn(F.real**2 + F.imag**2, s=shape, axes=axes) / V


def canonical(x: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The representative of the orbit of separation x: x_mu -> min(x_mu mod L, L - x_mu mod L),
    then the components on axes of equal length sorted in decreasing order."""
    r = [min(k % L, (L - k) % L) for k, L in zip(x, shape)]
    for L in set(shape):
        idx = [mu for mu, n in enumerate(shape) if n == L]
        vals = sorted((r[mu] for mu in idx), reverse=True)
        for mu, v in zip(idx, vals):
            r[mu] = v
    return tuple(r)


@dataclass(frozen=True)
class Orbits:
    """The orbits of the separations of a lattice ``shape`` under its symmetry group.

    reps:      canonical representatives, in lexicographic order (n_orbits tuples)
    size:      number of separations in each orbit (sum = V)
    label:     (shape) array, the orbit index of every separation
    order, starts: flat separations sorted by orbit and where each orbit starts (for np.add.reduceat)
    """

    shape: tuple[int, ...]
    reps: tuple[tuple[int, ...], ...]
    size: np.ndarray
    label: np.ndarray
    order: np.ndarray
    starts: np.ndarray

    def name(self, k: int) -> str:
        """"(x0,x1,...)" of orbit k."""
        return "(" + ",".join(str(v) for v in self.reps[k]) + ")"

    def index(self, x) -> int:
        """The orbit of separation x (any representative)."""
        return self.reps.index(canonical(tuple(x), self.shape))

    def __len__(self) -> int:
        return len(self.reps)


@lru_cache(maxsize=32)
def orbits(shape: tuple[int, ...]) -> Orbits:
    """The orbits of the separations of the periodic lattice ``shape`` (see the module docstring)."""
    shape = tuple(int(n) for n in shape)
    reps_of = {}
    label = np.empty(shape, dtype=np.int64)
    for x in itertools.product(*(range(n) for n in shape)):
        reps_of.setdefault(canonical(x, shape), []).append(x)
    reps = tuple(sorted(reps_of))
    for k, r in enumerate(reps):
        for x in reps_of[r]:
            label[x] = k
    flat = label.ravel()
    order = np.argsort(flat, kind="stable")
    size = np.bincount(flat, minlength=len(reps))
    starts = np.concatenate([[0], np.cumsum(size)[:-1]])
    return Orbits(shape, reps, size, label, order, starts)


def orbit_average(C: np.ndarray, orb: Orbits) -> np.ndarray:
    """Mean of C(x) over each orbit of separations: (N, *shape) -> (N, n_orbits)."""
    flat = np.asarray(C).reshape(len(C), -1)
    return np.add.reduceat(flat[:, orb.order], orb.starts, axis=1) / orb.size
