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

``normals(key, out)`` fills an array with exact standard normals by the Ziggurat method
(Marsaglia & Tsang, J. Stat. Softw. 5 (2000) 8) in 256 layers; element m consumes the 64-bit
words ``mix64(key + (m + t 2^40) gamma)``, t = 0, 1, ... (almost always only t = 0), so it
too is a pure function of (key, m) and independent of threads and of the array's shape.
It is about 4 times faster than numpy's ``Generator.standard_normal`` here (2.8 against 11 ns per number; HMC's momentum
refresh). The algorithm is described in ``_ziggurat_tables`` and ``_zig_slow``.

Chain sets (K chains advanced together, samplers/chain.py): ``new_keys(rngs)`` draws one key from
each chain's generator, and ``normals_chains(keys, out)`` fills row k of ``out`` from ``keys[k]``;
both are bit for bit ``new_key(rngs[k])`` and ``normals(keys[k], out[k])`` (the same draws, the
same kernels), with the Python overhead paid once per set.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .fastmath import _bits_to_float, run_parallel

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO_M53 = 2.0**-53
_TWO_M32 = 2.0**-32
_S32 = np.uint64(32)
_MASK21 = np.uint64((1 << 21) - 1)
_TWO52 = 2.0**52
_TWO52_BITS = np.uint64(0x4330000000000000)


@njit(cache=True, inline="always")
def unit53(z: np.uint64) -> float:
    """(k + 1) 2^-53 in (0, 1] with k the top 53 bits of z.

    Computed exactly as hi 2^-32 + (lo + 1) 2^-53 from the 32 high bits hi and the 21 next
    bits lo, each converted by the 2^52 bit trick (AVX2 has no vector uint64 -> float64)."""
    hi = _bits_to_float(np.int64((z >> _S32) | _TWO52_BITS)) - _TWO52
    lo = _bits_to_float(np.int64(((z >> _S11) & _MASK21) + _ONE) | np.int64(_TWO52_BITS)) - _TWO52
    return hi * _TWO_M32 + lo * _TWO_M53


@njit(cache=True, inline="always")
def mix64(z: np.uint64) -> np.uint64:
    """Stafford's Mix13 finaliser (the SplitMix64 output function)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def uniform(key: np.uint64, n: np.int64) -> float:
    """The n-th uniform in (0, 1] of the stream ``key`` (53 random bits)."""
    return unit53(mix64(key + np.uint64(n) * GAMMA))


@njit(cache=True)
def uniforms(key: np.uint64, n: int) -> np.ndarray:
    """The first n uniforms of the stream ``key`` (for tests and diagnostics)."""
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(key, i)
    return out


# --------------------------------------------------------------------------- normals
ZIG_LAYERS = 256


def _ziggurat_tables(n: int = ZIG_LAYERS) -> tuple[np.ndarray, np.ndarray, float]:
    """Layer edges X[0..n] and f(X) of the Ziggurat for f(x) = exp(-x^2/2) (x >= 0).

    Layer i (1 <= i < n) is the rectangle [0, X[i]] x [f(X[i]), f(X[i+1])]; layer 0 is the base
    strip [0, X[0]] x [0, f(r)], X[0] = v / f(r), standing for [0, r] x [0, f(r)] plus the tail
    x > r. All have the area v = r f(r) + int_r^inf f. X[1] = r, X[i+1] = f^-1(f(X[i]) + v / X[i]),
    X[n] = 0; r is the root (by bisection) of the condition that the top layer ends at f = 1
    (Marsaglia & Tsang 2000, eqs. of section 2; r = 3.6541528853610088 for n = 256).
    In float64 the layer areas agree with v to a relative 1e-13, which is the only inexactness.
    """
    f = lambda x: math.exp(-0.5 * x * x)
    vol = lambda r: r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))

    def edges(r):
        v = vol(r)
        x = [v / f(r), r]
        for _ in range(2, n):
            a = f(x[-1]) + v / x[-1]
            if a >= 1.0:  # r too small: the layers reach the top early
                return x, 1.0
            x.append(math.sqrt(-2.0 * math.log(a)))
        return x, f(x[-1]) + v / x[-1] - 1.0

    lo, hi = 2.0, 5.0  # edges(lo) overshoots (> 0), edges(hi) falls short (< 0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if edges(mid)[1] > 0:
            lo = mid
        else:
            hi = mid
    r = hi
    x = np.array(edges(r)[0] + [0.0])
    fx = np.exp(-0.5 * x * x)
    return x, fx, r


ZIG_X, ZIG_F, ZIG_R = _ziggurat_tables()
_ZIG_INV_R = 1.0 / ZIG_R
_ZIG_T_SHIFT = 40  # element m, attempt t: counter m + t 2^40
_ZIG_MAX_N = 1 << _ZIG_T_SHIFT
_LAYER_MASK = np.uint64(ZIG_LAYERS - 1)
_S8 = np.uint64(8)
_S12 = np.uint64(12)
_ONE_BITS = np.uint64(0x3FF0000000000000)
_HALF_ULP_BELOW_ONE = 1.0 - 2.0**-53


@njit(cache=True, inline="always")
def _word(key: np.uint64, m: np.int64, t: np.int64) -> np.uint64:
    """The t-th 64-bit word of element m of the normal stream ``key``."""
    return mix64(key + np.uint64(m + (t << _ZIG_T_SHIFT)) * GAMMA)


@njit(cache=True, inline="always")
def _unit52(z: np.uint64) -> float:
    """(k + 1/2) 2^-52 in (0, 1) from the top 52 bits k of z (exact: 1 + k 2^-52 minus 1 - 2^-53)."""
    return _bits_to_float(np.int64((z >> _S12) | _ONE_BITS)) - _HALF_ULP_BELOW_ONE


@njit(cache=True, inline="always")
def _zig_fast(z: np.uint64, X: np.ndarray) -> float:
    """First Ziggurat try from one word: +-u X[i] if it lies in the layer's inner rectangle, else NaN.

    Bits: layer i = bits 0-7, sign = bit 8, u = bits 12-63 (52 bits): disjoint, so independent
    (Doornik 2005: taking the layer from the bits of u correlates them).
    """
    i = np.int64(z & _LAYER_MASK)
    x = _unit52(z) * X[i]
    x = x if x < X[i + 1] else np.nan
    return -x if (z >> _S8) & _ONE else x


@njit(cache=True)
def _zig_slow(key: np.uint64, m: np.int64, X: np.ndarray, F: np.ndarray) -> float:
    """Element m when the first word missed the inner rectangle: the full Ziggurat from t = 0.

    Each try takes a word z: layer i, sign s, u in (0, 1), x = u X[i].
      x < X[i+1]:           accept x (inner rectangle, under the curve).
      i = 0 (base strip):   x > r: a tail sample by Marsaglia's method (1964): with U1, U2 in (0, 1]
                            from the next words, a = -ln(U1)/r, b = -ln(U2) until 2 b > a^2; return r + a.
      else (wedge):         with U from the next word, y = f(X[i]) + U (f(X[i+1]) - f(X[i]));
                            accept x if y < exp(-x^2/2), else a new try.
    """
    t = 0
    while True:
        z = _word(key, m, t)
        t += 1
        i = np.int64(z & _LAYER_MASK)
        neg = (z >> _S8) & _ONE
        x = _unit52(z) * X[i]
        if x >= X[i + 1]:
            if i == 0:
                while True:
                    a = -math.log(unit53(_word(key, m, t))) * _ZIG_INV_R
                    b = -math.log(unit53(_word(key, m, t + 1)))
                    t += 2
                    if 2.0 * b > a * a:
                        x = ZIG_R + a
                        break
            else:
                y = F[i] + unit53(_word(key, m, t)) * (F[i + 1] - F[i])
                t += 1
                if not y < math.exp(-0.5 * x * x):
                    continue
        return -x if neg else x


@njit(cache=True, inline="always")
def normal(key: np.uint64, m: np.int64) -> float:
    """Element m of the standard-normal stream ``key`` (the same as ``normals`` gives)."""
    x = _zig_fast(_word(key, m, 0), ZIG_X)
    return x if x == x else _zig_slow(key, m, ZIG_X, ZIG_F)


@njit(cache=True)
def _normals_first_try(key: np.uint64, out: np.ndarray) -> None:
    """out[m] = the first Ziggurat try of element m, NaN where it missed (~1.5 %). Branch-free.

    (A separate function from the fix-up pass: in one function LLVM does not vectorize this loop.)
    """
    X = ZIG_X
    for m in range(out.size):
        out[m] = _zig_fast(_word(key, m, 0), X)


@njit(cache=True)
def _normals_fix_misses(key: np.uint64, out: np.ndarray) -> None:
    X = ZIG_X
    F = ZIG_F
    for m in range(out.size):
        if out[m] != out[m]:
            out[m] = _zig_slow(key, m, X, F)


def normals(key: np.uint64, out: np.ndarray) -> np.ndarray:
    """Fill ``out`` (C-contiguous float64, any shape) with standard normals: element m (in C order)
    is ``normal(key, m)``, by the Ziggurat method (Marsaglia & Tsang 2000; see ``_zig_slow``).

    Exact: every accepted point is uniform under the curve f(x) = exp(-x^2/2), the tail by
    Marsaglia's exact method; the only approximation is the float64 rounding of the tables and
    of u (52-bit uniforms). Returns ``out``.
    """
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.flags.c_contiguous
            and out.flags.writeable):
        raise ValueError("normals needs a writeable C-contiguous float64 array")
    flat = out.reshape(-1)
    if flat.size >= _ZIG_MAX_N:
        raise ValueError("normals: at most 2^40 elements per key")
    key = np.uint64(key)
    _normals_first_try(key, flat)
    _normals_fix_misses(key, flat)
    return out


def normals_chains(keys: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill row k of ``out`` (C-contiguous float64, shape (K, ...)) with ``normals(keys[k], out[k])``,
    bit for bit (the same kernels, row by row; rows in parallel when there are many numbers).
    Returns ``out``."""
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.flags.c_contiguous
            and out.flags.writeable and out.ndim >= 1):
        raise ValueError("normals_chains needs a writeable C-contiguous float64 array")
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if keys.shape != out.shape[:1]:
        raise ValueError(f"normals_chains: {keys.size} keys for {out.shape[0]} rows")
    rows = out.reshape(len(out), -1)
    if rows.shape[1] >= _ZIG_MAX_N:
        raise ValueError("normals: at most 2^40 elements per key")
    (_normals_rows_parallel if run_parallel(NORMAL_NS * out.size) else _normals_rows)(keys, rows)
    return out


NORMAL_NS = 3  # serial cost of one normal (the 2-core VM), for fastmath.run_parallel


@njit(cache=True)
def _normals_rows(keys: np.ndarray, rows: np.ndarray) -> None:
    for k in range(rows.shape[0]):
        _normals_first_try(keys[k], rows[k])
        _normals_fix_misses(keys[k], rows[k])


@njit(cache=True, parallel=True)
def _normals_rows_parallel(keys: np.ndarray, rows: np.ndarray) -> None:
    for k in prange(rows.shape[0]):
        _normals_first_try(keys[k], rows[k])
        _normals_fix_misses(keys[k], rows[k])


def new_key(rng: np.random.Generator) -> np.uint64:
    """A fresh stream key drawn from the chain's generator: ``rng.integers(0, 2**64, dtype=np.uint64)``.

    For PCG64 (every chain's generator) that draw is the bit generator's next 64-bit output, which
    ``random_raw`` returns without the bounds handling of ``integers`` (a few times faster; the same
    number and the same generator state after, tests/samplers/test_chain_kernels.py)."""
    bits = rng.bit_generator
    if type(bits) is np.random.PCG64:
        return np.uint64(bits.random_raw())
    return np.uint64(rng.integers(0, 2**64, dtype=np.uint64))


def new_keys(rngs: list[np.random.Generator]) -> np.ndarray:
    """(K,) uint64: entry k is ``new_key(rngs[k])``, the same draw from each generator."""
    keys = np.empty(len(rngs), dtype=np.uint64)
    for k, rng in enumerate(rngs):
        bits = rng.bit_generator
        keys[k] = bits.random_raw() if type(bits) is np.random.PCG64 else new_key(rng)
    return keys
