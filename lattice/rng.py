"""Counter-based random numbers for Numba kernels.

A local-update sweep needs a few uniforms per site. Drawing them from ``np.random`` inside
Numba costs about 6 ns each and ties the stream to the order in which sites are visited
(so to the thread count). Instead every draw is a pure function of ``(key, counter)``:

    u(key, n) = (mix64(key + n * gamma) >> 11 + 1) * 2**-53,    gamma = 0x9E3779B97F4A7C15

which is exactly the SplitMix64 generator (Steele, Lea, Flood, OOPSLA 2014; the seeding
generator of Java's SplittableRandom and of xoshiro) started at state ``key``; mix64 is
Stafford's "Mix13" finaliser. SplitMix64 passes BigCrush. A sweep gets a fresh 64-bit
key from the chain's numpy ``Generator`` (PCG64) and numbers its draws by site,
``n = n_draws_per_site * site + j``, so a sweep's random numbers do not depend on how
its sites are split among threads, and a fixed seed reproduces a run exactly.
Uniforms lie in (0, 1]: never 0, so ``log(u)`` is always finite.
"""
from __future__ import annotations

import numpy as np
from numba import njit

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_M53 = 2.0**-53


@njit(cache=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """Stafford's Mix13 finaliser (the SplitMix64 output function)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def uniform(key: np.uint64, n: np.int64) -> float:
    """The n-th uniform in (0, 1] of the stream ``key`` (53 random bits)."""
    z = mix64(key + np.uint64(n) * GAMMA)
    return float((z >> _S11) + _ONE) * _TWO_M53


@njit(cache=True)
def uniforms(key: np.uint64, n: int) -> np.ndarray:
    """The first n uniforms of the stream ``key`` (for tests and diagnostics)."""
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(key, i)
    return out


def new_key(rng: np.random.Generator) -> np.uint64:
    """A fresh stream key drawn from the chain's generator."""
    return np.uint64(rng.integers(0, 2**64, dtype=np.uint64))
