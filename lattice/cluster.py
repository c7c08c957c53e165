"""Single-cluster growth for Wolff updates of embedded Ising variables (Numba).

Both cluster updates of this package (lattice/xy.py: Wolff, PRL 62 (1989) 361; lattice/phi4.py:
Brower & Tamayo, PRL 62 (1989) 1087) reduce to the same problem. Each site carries a real
projection p_x whose sign is flipped by the move (XY: p_x = s_x . r, phi^4: p_x = phi_x), and the
action's link terms depend on those signs as

    S = -J sum_<xy> p_x p_y + (terms the flip leaves unchanged),

so flipping the signs of a set C changes S by 2 J sum_{x in C, y not in C, <xy>} p_x p_y. Open each
link <xy> independently with probability

    P_bond(x, y) = 1 - exp(min(0, -2 J p_x p_y))

(only "satisfied" links, J p_x p_y > 0, can be open) and let C be the connected component of a
uniformly random seed site in the graph of open links: the Fortuin-Kasteleyn construction, so the
move "flip C" satisfies detailed balance with acceptance 1 (the factors 1 - P_bond of the links
that leave C are exactly exp(-dS) between the move and its reverse).

Random numbers (lattice/rng.py, one 64-bit key per single-cluster update):
    counter 0                  the seed site, min(floor(u V), V - 1)
    counter 1                  the theory's own choice (XY: the reflection axis); unused by phi^4
    counter 2 + d x + mu       the link (x, x + mu), d = number of dimensions
A link is opened iff u(key, its counter) < P_bond. Each link has its own counter, whichever end
the growth reaches it from, so the cluster is the component of the seed in one fixed random bond
graph: a function of (configuration, key) alone, independent of the order of growth. A draw is
made only for links the growth actually tests (data-dependent count, disjoint counters). On an
extent-2 axis x + mu = x - mu and the two links between the pair are two terms of S: they have
two counters and are tested separately, as the action requires.

The growth uses an explicit array as a queue (no recursion, no Python objects): ``sites[:n]``
holds the cluster in the order it was reached when ``grow_cluster`` returns, and ``mark`` is True
exactly on those sites (the caller flips them and clears ``mark``).

Numba's on-disk cache does not see edits of this module from the kernels that inline it
(xy.wolff_kernel, phi4.wolff_kernel): after changing it, delete lattice/__pycache__ (or set
NUMBA_CACHE_DIR to a fresh folder) before trusting a test run.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .rng import uniform

SEED_COUNTER = 0
AXIS_COUNTER = 1
LINK_COUNTER0 = 2


@njit(cache=True)
def seed_site(key: np.uint64, n_sites: int) -> int:
    """The seed of the cluster: uniform over the n_sites sites, from counter 0."""
    s = np.int64(uniform(key, SEED_COUNTER) * n_sites)
    return s if s < n_sites else n_sites - 1


@njit(cache=True)
def link_counter(x: int, k: int, nbr: np.ndarray) -> int:
    """Counter of the link from site x to its neighbour column k of ``nbr`` (geometry.neighbours:
    column 2 mu is x + mu, the link (x, mu); column 2 mu + 1 is x - mu, the link (x - mu, mu))."""
    d = nbr.shape[1] // 2
    mu = k // 2
    base = x if k % 2 == 0 else nbr[x, k]
    return LINK_COUNTER0 + d * base + mu


@njit(cache=True)
def grow_cluster(proj: np.ndarray, nbr: np.ndarray, coupling: float, key: np.uint64, seed: int,
                 sites: np.ndarray, mark: np.ndarray) -> int:
    """Grow the cluster of ``seed``; returns its size n (sites[:n] are its sites, mark set on them).

    proj: (V,) projections p_x; nbr: (V, 2d) int64 neighbour table; coupling: J;
    sites: (V,) int64 scratch; mark: (V,) bool scratch, all False on entry.
    Link <xy> is open iff u(key, link counter) < 1 - exp(-2 J p_x p_y) (and J p_x p_y > 0).
    """
    sites[0] = seed
    mark[seed] = True
    n = 1
    head = 0
    while head < n:
        x = sites[head]
        head += 1
        jx = coupling * proj[x]
        for k in range(nbr.shape[1]):
            y = nbr[x, k]
            if mark[y]:
                continue
            j = jx * proj[y]
            if j <= 0.0:
                continue
            if uniform(key, link_counter(x, k, nbr)) < -math.expm1(-2.0 * j):
                mark[y] = True
                sites[n] = y
                n += 1
    return n


class ClusterScratch:
    """The scratch arrays of one lattice's cluster kernels (kept by the theory, reused)."""

    def __init__(self, n_sites: int):
        self.sites = np.empty(n_sites, dtype=np.int64)
        self.mark = np.zeros(n_sites, dtype=np.bool_)
        self.proj = np.empty(n_sites)


def scratch_of(theory) -> ClusterScratch:
    """The theory's cluster scratch, made on first use (theories are frozen dataclasses)."""
    s = theory.__dict__.get("_cluster_scratch")
    if s is None:
        s = ClusterScratch(int(np.prod(theory.shape)))
        object.__setattr__(theory, "_cluster_scratch", s)
    return s


def flat_view(q: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous float64 field (the cluster kernels write through it)."""
    if not (isinstance(q, np.ndarray) and q.flags.c_contiguous and q.dtype == np.float64):
        raise ValueError("cluster kernels need a C-contiguous float64 field (use np.ascontiguousarray)")
    return q.reshape(-1)
