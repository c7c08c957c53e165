"""Vectorizable sin/cos/exp for Numba kernels: sin/cos accurate to 4e-16 (absolute) for |x| <= 4 pi,
exp to about 1 ulp (relative) on [-745, 709].

libm's sin/cos cost about 10 ns per call in this Numba build and stop loops from
vectorizing. Here: Cody-Waite reduction to r in [-pi, pi] (2 pi split in two parts),
reflection sin(r) = sin(sign(r) pi - r) into [-pi/2, pi/2], and the Taylor polynomial of
degree 21, whose truncation error there is below 2e-18. All branch-free, so LLVM
vectorizes loops that call these. cos(x) = sin(pi/2 - |r|). The reduction k * 2pi_hi is
exact only for |k| <= 2, so the error grows to about 1e-14 at |x| ~ 100 (plaquette angles
stay within 4 pi). Errors against numpy are tested in tests/lattice/test_fastmath.py.

fexp (see its docstring): Cody-Waite reduction x = k ln2 + r, |r| <= ln2/2, Taylor polynomial of
degree 13 for e^r (Estrin's scheme for the high terms), and 2^k built from its bits in two halves so subnormal results are rounded
once. Branch-free, so Metropolis accept loops that call it vectorize (libm's exp is a call).

Also the plumbing the theories' chain-set kernels share (``*_chains`` methods of lattice/*.py): when to
run independent rows in parallel (``run_parallel``), the drift ``axpy`` without FMA, scratch kept
between calls (``work_array``), and the "lanes" layout of a block of chains (``rows_to_lanes``).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# LLVM fast-math flags for kernels: "contract" lets a*b + c become one FMA (as exact or more),
# "reassoc" lets sums be reordered so reductions vectorize (a different, fixed summation order).
# No flag that assumes away NaN or inf: HMC relies on NaN/inf to reject a diverged trajectory.
FMA = {"contract"}
FMA_SUM = {"contract", "reassoc"}

_INV_2PI = 1.0 / (2.0 * np.pi)
_2PI_HI = 6.283185307179586  # float64(2 pi)
_2PI_LO = 2.4492935982947064e-16  # 2 pi - _2PI_HI
_PI_HI = 3.141592653589793
_PI_LO = 1.2246467991473532e-16
_HALF_PI = 1.5707963267948966
_HALF_PI_LO = 6.123233995736766e-17

# 1/(2k+1)! with alternating signs, k = 0..10
_C1 = 1.0
_C3 = -1.0 / 6.0
_C5 = 1.0 / 120.0
_C7 = -1.0 / 5040.0
_C9 = 1.0 / 362880.0
_C11 = -1.0 / 39916800.0
_C13 = 1.0 / 6227020800.0
_C15 = -1.0 / 1307674368000.0
_C17 = 1.0 / 355687428096000.0
_C19 = -1.0 / 121645100408832000.0
_C21 = 1.0 / 51090942171709440000.0


@njit(cache=True, inline="always")
def _reduce(x: float) -> float:
    """x - 2 pi k in [-pi, pi], and reflected into [-pi/2, pi/2] keeping sin."""
    k = np.rint(x * _INV_2PI)
    r = (x - k * _2PI_HI) - k * _2PI_LO
    s = 1.0 if r >= 0.0 else -1.0
    a = r * s
    a = (_PI_HI - a) + _PI_LO if a > _HALF_PI else a
    return a * s


@njit(cache=True, inline="always")
def _sin_poly(r: float) -> float:
    r2 = r * r
    p = _C21
    p = p * r2 + _C19
    p = p * r2 + _C17
    p = p * r2 + _C15
    p = p * r2 + _C13
    p = p * r2 + _C11
    p = p * r2 + _C9
    p = p * r2 + _C7
    p = p * r2 + _C5
    p = p * r2 + _C3
    p = p * r2 + _C1
    return p * r


@njit(cache=True, inline="always")
def fsin(x: float) -> float:
    """sin(x), branch-free."""
    return _sin_poly(_reduce(x))


@njit(cache=True, inline="always")
def fcos(x: float) -> float:
    """cos(x) = sin(pi/2 - |r|) with r = x reduced to [-pi, pi], branch-free."""
    k = np.rint(x * _INV_2PI)
    r = (x - k * _2PI_HI) - k * _2PI_LO
    return _sin_poly((_HALF_PI - abs(r)) + _HALF_PI_LO)


@njit(cache=True)
def sin_array(x: np.ndarray) -> np.ndarray:
    """fsin elementwise (a C-ordered result of x's shape)."""
    out = np.empty(x.shape)
    xf = np.ascontiguousarray(x).reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        of[i] = fsin(xf[i])
    return out


@njit(cache=True)
def cos_array(x: np.ndarray) -> np.ndarray:
    """fcos elementwise (a C-ordered result of x's shape)."""
    out = np.empty(x.shape)
    xf = np.ascontiguousarray(x).reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        of[i] = fcos(xf[i])
    return out


@njit(cache=True, inline="always")
def wrap_angle(x: float) -> float:
    """x mod 2 pi into [-pi, pi)."""
    y = x - _2PI_HI * np.floor((x + _PI_HI) * _INV_2PI)
    # rounding can land exactly on +pi (or a hair outside): fold back
    if y >= _PI_HI:
        y -= _2PI_HI
    elif y < -_PI_HI:
        y += _2PI_HI
    return y


@njit(cache=True)
def wrap_angles(q: np.ndarray) -> None:
    """wrap_angle on every element of a C-contiguous array, in place."""
    qf = q.reshape(-1)
    for i in range(qf.size):
        qf[i] = wrap_angle(qf[i])


# --------------------------------------------------------------------------- chain-set plumbing
#: A kernel over rows that are independent (the chains of a chain set, a batch of configurations) runs
#: them in parallel from this much serial work on (ns, estimated): below, waking the sleeping OpenMP
#: threads (about 50 us per parallel loop with OMP_WAIT_POLICY=PASSIVE, lattice/__init__.py, on the
#: 2-core VM, against 1-2 us when they spin) costs more than the second thread saves. The rows do not
#: depend on each other, so the choice changes the time, never the result.
PARALLEL_NS = 200_000


def run_parallel(work_ns: float) -> bool:
    """Run a kernel of about ``work_ns`` ns of serial work with its rows in parallel?"""
    return work_ns >= PARALLEL_NS and numba.get_num_threads() > 1


@njit(cache=True)
def axpy(y: np.ndarray, x: np.ndarray, a: float) -> None:
    """y += a x on 1-D arrays, in place, with no fast-math flag: each a x[i] is rounded before the
    add (never one FMA), the arithmetic of the HMC drift q += eps p (samplers/integrators.py).
    Not inline: a caller's flags must not reach it."""
    for i in range(y.size):
        y[i] += a * x[i]


def per_chain(values, n_chains: int, dtype) -> np.ndarray:
    """``values`` as a C-contiguous array of ``dtype`` with one row per chain; ValueError otherwise (the
    chain-set kernels do not check bounds)."""
    a = np.ascontiguousarray(values, dtype=dtype)
    if a.ndim == 0 or len(a) != n_chains:
        raise ValueError(f"chain kernels need one entry per chain ({n_chains}), got shape {a.shape}")
    return a


def kick_drift_tables(n_chains: int, kicks, drifts, n_kicks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arguments of a theory's ``kick_drift_chains`` as the kernels take them: kicks (K, >= n) and
    drifts (K, >= n - 1) float64, n_kicks (K,) int64 >= 0, n = max n_kicks; ValueError otherwise."""
    n_kicks = per_chain(n_kicks, n_chains, np.int64)
    kicks = per_chain(kicks, n_chains, np.float64)
    drifts = per_chain(drifts, n_chains, np.float64)
    n = int(n_kicks.max(initial=0))
    if n_kicks.ndim != 1 or kicks.ndim != 2 or drifts.ndim != 2 or (n_kicks < 0).any() \
            or kicks.shape[1] < n or drifts.shape[1] < n - 1:
        raise ValueError(f"kick_drift_chains: tables {kicks.shape} / {drifts.shape} too small for "
                         f"{n} kicks, or n_kicks not 1-D >= 0")
    return kicks, drifts, n_kicks


def work_array(cache: dict, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 scratch array of ``shape`` kept in ``cache`` between calls (the last shape only): a fresh
    large array costs page faults on every call (glibc gives large freed blocks back to the system), about
    1 us per chain and update of a chain set at L = 16."""
    a = cache.get(shape)
    if a is None:
        cache.clear()
        a = cache[shape] = np.empty(shape)
    return a


# --------------------------------------------------------------------------- chain lanes
# A block of B chains in "lanes" layout: array (n, B), element i of chain b at [i, b], so a loop over
# the chains is innermost and contiguous and vectorizes across chains; a kernel that evaluates, lane
# by lane, the same expressions as a single-configuration kernel gives each chain the same bits. For
# small lattices, whose rows are too short to vectorize well, this is several times faster.
#: kernels use lanes for lattices whose rows (last axis) are at most this long (longer rows vectorize
#: along the row, and the single-configuration kernels win)
LANES_MAX_ROW = 32


def use_lanes(row_length: int) -> bool:
    """Run a chain-set kernel in lanes layout for a lattice with this row length?"""
    return row_length <= LANES_MAX_ROW


#: most chains in one block of lanes (blocks are independent: in parallel when the work pays for it)
LANE_BLOCK = 64


def lane_block(n: int) -> int:
    """Chains per block of lanes for configurations of n numbers: LANE_BLOCK, fewer for large n (so a
    block's arrays stay within the caches), but at least 8."""
    return min(LANE_BLOCK, max(8, (1 << 16) // max(n, 1)))


_TILE = 8  # the transposes below go in tiles of 8 elements of a row (one cache line)


@njit(cache=True)
def rows_to_lanes(rows: np.ndarray, chains: np.ndarray, lanes: np.ndarray) -> None:
    """lanes[i, b] = rows[chains[b], i] (rows (K, n), lanes (n, B))."""
    n = rows.shape[1]
    for i0 in range(0, n, _TILE):
        for b in range(chains.size):
            c = chains[b]
            for i in range(i0, min(i0 + _TILE, n)):
                lanes[i, b] = rows[c, i]


@njit(cache=True)
def lanes_to_rows(lanes: np.ndarray, chains: np.ndarray, rows: np.ndarray) -> None:
    """rows[chains[b], i] = lanes[i, b]."""
    n = rows.shape[1]
    for i0 in range(0, n, _TILE):
        for b in range(chains.size):
            c = chains[b]
            for i in range(i0, min(i0 + _TILE, n)):
                rows[c, i] = lanes[i, b]


@njit(cache=True)
def axpy_lanes(y: np.ndarray, x: np.ndarray, a: np.ndarray, m: int) -> None:
    """y[i, b] += a[b] x[i, b] for the lanes b < m of (n, B) arrays: axpy lane by lane (no fast-math
    flag, each product rounded before the add)."""
    for i in range(y.shape[0]):
        for b in range(m):
            y[i, b] += a[b] * x[i, b]


# --------------------------------------------------------------------------- exp
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 with 32 trailing zero bits (fdlibm): k * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_EXP_LO = -750.0  # below -745.14 exp rounds to 0; clamping keeps k in range
_EXP_HI = 710.0  # above 709.79 exp overflows to inf
_SHIFTER = 6755399441055744.0  # 1.5 2^52: adding it rounds |y| < 2^51 to an integer held in the low bits
_SHIFTER_BITS_MINUS_1100 = np.int64(0x4338000000000000 - 1100)
# 1/k!, k = 0..13: the truncation error r^14/14! e^|r| < 6e-18 relative for |r| <= ln2/2
_E = [1.0 / math.factorial(k) for k in range(14)]
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = _E


@intrinsic
def _bits_to_float(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (a free register bitcast)."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _float_to_bits(typingctx, x):
    """The IEEE-754 bit pattern of the float64 ``x`` as an int64 (a free register bitcast)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@njit(cache=True, inline="always")
def fexp(x: float) -> float:
    """e^x, branch-free, within about 1 ulp of libm for x in [-745, 709] (tested against numpy).

    x = k ln2 + r with k = rint(x / ln2) (by the 1.5 2^52 shifter), r = (x - k ln2_hi) - k ln2_lo (Cody & Waite 1980;
    ln2_hi has trailing zeros so k ln2_hi is exact), |r| <= ln2/2; e^r by its Taylor polynomial
    of degree 13 (Estrin's scheme for the terms r^4..r^13, Horner for the last four: short
    dependency chains, same rounding as Horner); e^x = e^r 2^k1 2^k2 with k1 = floor(k/2), k2 = k - k1 both normal
    exponents, so a subnormal result is rounded only in the last multiplication. x is clamped
    to [-750, 710] first: exp(x) = 0 below -745.14 and inf above 709.79, as libm; exp(-inf) = 0,
    exp(inf) = inf, exp(NaN) = NaN.
    """
    xc = min(max(x, _EXP_LO), _EXP_HI)
    xc = xc if x == x else 0.0  # NaN: compute something finite, return NaN below
    # rint by the shifter 1.5 2^52: t = x/ln2 + S rounds x/ln2 to an integer k, which then sits in
    # the low bits of t (AVX2 has no vector float64 <-> int64 conversions; these are bit operations)
    t = xc * _LOG2E + _SHIFTER
    kf = t - _SHIFTER
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    # e^r = 1 + r (1 + r (1/2 + r (1/6 + r Q(r)))), Q(r) = sum_{k=4}^{13} r^(k-4)/k! by Estrin's
    # scheme (short dependency chains), the last four steps by Horner (they set the rounding)
    r2 = r * r
    r4 = r2 * r2
    q = ((_E4 + _E5 * r) + (_E6 + _E7 * r) * r2) + ((_E8 + _E9 * r) + (_E10 + _E11 * r) * r2) * r4
    q = q + ((_E12 + _E13 * r) * r4) * r4
    p = _E0 + r * (_E1 + r * (_E2 + r * (_E3 + r * q)))
    # j = k + 1100 >= 0; 2^k = 2^k1 2^k2 with k1 = (j >> 1) - 550, k2 = k - k1 (exponent bits k + 1023)
    j = _float_to_bits(t) - _SHIFTER_BITS_MINUS_1100
    j1 = np.int64(np.uint64(j) >> np.uint64(1))  # logical shift (AVX2 has no 64-bit arithmetic one)
    y = p * _bits_to_float((j1 + np.int64(473)) << np.int64(52)) * _bits_to_float((j - j1 + np.int64(473)) << np.int64(52))
    return y if x == x else x


@njit(cache=True)
def exp_array(x: np.ndarray) -> np.ndarray:
    """fexp elementwise (a C-ordered result of x's shape)."""
    out = np.empty(x.shape)
    xf = np.ascontiguousarray(x).reshape(-1)
    of = out.reshape(-1)
    for i in range(xf.size):
        of[i] = fexp(xf[i])
    return out
