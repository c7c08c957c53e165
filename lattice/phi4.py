"""Real scalar phi^4 theory on a d-dimensional periodic lattice (PHYSICS.md).

Both parameterizations of PHYSICS.md are one quadratic-quartic action,

    S[phi] = sum_x [ -A sum_mu phi_x phi_{x+mu} + B phi_x^2 + C phi_x^4 ],

hopping:    A = 2 kappa, B = 1 - 2 lambda,  C = lambda   (field phi)
flow paper: A = 2,       B = 2 d + m^2,     C = g        (field phi0 = sqrt(kappa) phi)

so one set of kernels serves both; the field is in the parameterization the theory was made
in. The HMC force is F = -dS/dphi = A h - 2 B phi - 4 C phi^3 with h_x = sum_mu (phi_{x+mu} + phi_{x-mu}).

Embedded Ising clusters (wolff_kernel; R. C. Brower and P. Tamayo, PRL 62 (1989) 1087): with
phi_x = s_x |phi_x|, s_x = +-1, the local terms B phi^2 + C phi^4 do not depend on the signs and
the hopping term is an Ising model in s with couplings J_xy = A |phi_x| |phi_y|. Wolff's single
cluster of that Ising model (bond probability 1 - exp(min(0, -2 A phi_x phi_y)), lattice/cluster.py)
has its signs flipped, phi -> -phi on the cluster. The magnitudes never change, so the move is
exact (detailed balance) but ergodic only together with local Metropolis sweeps
(samplers/wolff.py mixes them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import geometry
from .cluster import flat_view, grow_cluster, scratch_of, seed_site
from .fastmath import FMA, FMA_SUM, axpy, fexp, kick_drift_tables, per_chain, run_parallel
from .rng import GAMMA, mix64, uniform, unit53


# --------------------------------------------------------------------------- kernels
# A configuration is seen as rows x[r, j]: the lines along the last axis (geometry.row_neighbours).
# Loops run along a row, so they are contiguous and vectorize; the other axes' neighbours are
# whole rows taken from the row table rnbr.
@njit(cache=True, fastmath=FMA)
def _row_hop(x, r, rnbr, h):
    """h[j] = sum_mu (x_{x+mu} + x_{x-mu}) for the sites x = (r, j) of row r."""
    n = x.shape[1]
    h[0] = x[r, 1] + x[r, n - 1]
    for j in range(1, n - 1):
        h[j] = x[r, j - 1] + x[r, j + 1]
    h[n - 1] = x[r, n - 2] + x[r, 0]
    for k in range(rnbr.shape[1]):
        rr = rnbr[r, k]
        for j in range(n):
            h[j] += x[rr, j]


@njit(cache=True, fastmath=FMA_SUM)
def action_kernel(x, rnbr, A, B, C):
    """S of one configuration x (R, n)."""
    R, n = x.shape
    local = 0.0
    links = 0.0
    for r in range(R):
        for j in range(n):
            p2 = x[r, j] * x[r, j]
            local += p2 * (B + C * p2)
        for j in range(n - 1):
            links += x[r, j] * x[r, j + 1]
        links += x[r, n - 1] * x[r, 0]
        for k in range(0, rnbr.shape[1], 2):  # forward neighbours only: each link once
            rr = rnbr[r, k]
            for j in range(n):
                links += x[r, j] * x[rr, j]
    return local - A * links


@njit(cache=True, parallel=True)
def action_batch_kernel(xs, rnbr, A, B, C):
    """S of each configuration of xs (N, R, n)."""
    out = np.empty(xs.shape[0])
    for k in prange(xs.shape[0]):
        out[k] = action_kernel(xs[k], rnbr, A, B, C)
    return out


@njit(cache=True, fastmath=FMA)
def kick_kernel(x, p, eps, rnbr, A, B, C):
    """p += eps F(x), F = A h - 2 B x - 4 C x^3, row by row."""
    R, n = x.shape
    h = np.empty(n)
    eA = eps * A
    e2B = 2.0 * eps * B
    e4C = 4.0 * eps * C
    if rnbr.shape[1] == 2 and n > 2:  # d = 2: one fused pass per row, no scratch
        for r in range(R):
            xr, xa, xb, pr = x[r], x[rnbr[r, 0]], x[rnbr[r, 1]], p[r]
            xi = xr[0]
            pr[0] += eA * (xr[n - 1] + xr[1] + xa[0] + xb[0]) - xi * (e2B + e4C * xi * xi)
            for j in range(1, n - 1):
                xi = xr[j]
                pr[j] += eA * (xr[j - 1] + xr[j + 1] + xa[j] + xb[j]) - xi * (e2B + e4C * xi * xi)
            xi = xr[n - 1]
            pr[n - 1] += eA * (xr[n - 2] + xr[0] + xa[n - 1] + xb[n - 1]) - xi * (e2B + e4C * xi * xi)
        return
    for r in range(R):
        _row_hop(x, r, rnbr, h)
        for j in range(n):
            xi = x[r, j]
            p[r, j] += eA * h[j] - xi * (e2B + e4C * xi * xi)


@njit(cache=True, parallel=True)
def force_batch_kernel(xs, rnbr, A, B, C, out):
    for k in prange(xs.shape[0]):
        out[k] = 0.0
        kick_kernel(xs[k], out[k], 1.0, rnbr, A, B, C)


@njit(cache=True, fastmath=FMA)
def _metropolis_half_row(P, r, par, rnbr, A, B, C, delta, zstart, h):
    """Metropolis on the sites of row r in the half par (j = 2k + par) of the packed field P.

    P[par, r, 1 + k] = x[r, 2k + par], k < m = n/2, with periodic pads P[., r, 0] = P[., r, m] and
    P[., r, m + 1] = P[., r, 1]. The sites of one half of a row are not neighbours of each other,
    so they update independently: one branch-free loop over contiguous memory (LLVM vectorizes
    it). Row neighbours of j = 2k + par are in the other half: j - 1 at 1 + k + par - 1 and
    j + 1 at 1 + k + par. zstart = key + 2 (r n + par) gamma is the SplitMix64 state of the first
    site's proposal draw; site k's two draws have the states zstart + 4k gamma and + gamma.
    Returns the accepted count.
    """
    m = P.shape[2] - 2
    u = P[par, r]
    w = P[1 - par, r][par:]  # w[k] = x[r, j - 1], w[k + 1] = x[r, j + 1]
    for k in range(m):  # (left + right) + rows in rnbr order: as _row_hop
        h[k] = w[k] + w[k + 1]
    for c in range(rnbr.shape[1]):
        v = P[par, rnbr[r, c]]
        for k in range(m):
            h[k] += v[1 + k]
    step = np.uint64(4) * GAMMA
    z = zstart
    accepted = 0
    for k in range(m):
        hk = h[k]
        old = u[1 + k]
        prop = old + delta * (2.0 * unit53(mix64(z)) - 1.0)
        o2 = old * old
        n2 = prop * prop
        dS = -A * hk * (prop - old) + B * (n2 - o2) + C * (n2 * n2 - o2 * o2)
        acc = (dS <= 0.0) | (unit53(mix64(z + GAMMA)) < fexp(-dS))
        u[1 + k] = prop if acc else old
        accepted += np.int64(acc)
        z += step
    u[0] = u[m]
    u[m + 1] = u[1]
    return accepted


@njit(cache=True, fastmath=FMA)
def metropolis_kernel(x, rnbr, rpar, A, B, C, delta, key):
    """One checkerboard sweep: every site once, phi' = phi + delta (2u - 1).

    Draws 2 uniforms per site from the counter stream (key, 2 site + j), site = r n + j:
    j = 0 for the proposal, j = 1 for the accept step. With
    dS = -A h (phi' - phi) + B (phi'^2 - phi^2) + C (phi'^4 - phi^4), h = sum_mu (phi_{x+mu} + phi_{x-mu}),
    phi' is accepted iff dS <= 0 or u < exp(-dS). First all sites of parity 0 (sum of the
    coordinates even), then parity 1; within a parity the order does not matter (no two sites
    are neighbours), so each row's sites of that parity are done in one vectorized pass
    (_metropolis_half_row, on a copy of x split by column parity). exp is fastmath.fexp (within 1 ulp of libm's, so an accept decision can
    differ from libm's only when u falls within an ulp of exp(-dS): probability ~1e-16).
    Rows of odd length (where the row's first and last sites are neighbours of one parity)
    are swept site by site in order, each site's h from the current field (the earlier
    kernel took h for a whole row before updating it, which is stale at the row's last site
    when n is odd). Returns the accepted count.
    """
    R, n = x.shape
    accepted = 0
    if n % 2 == 0:
        m = n // 2
        h = np.empty(m)
        P = np.empty((2, R, m + 2))  # x split by the parity of j (see _metropolis_half_row)
        for r in range(R):
            for half in range(2):
                for k in range(m):
                    P[half, r, 1 + k] = x[r, 2 * k + half]
                P[half, r, 0] = P[half, r, m]
                P[half, r, m + 1] = P[half, r, 1]
        for parity in range(2):
            for r in range(R):
                par = (parity + rpar[r]) % 2
                zstart = key + np.uint64(2 * (r * n + par)) * GAMMA
                accepted += _metropolis_half_row(P, r, par, rnbr, A, B, C, delta, zstart, h)
        for r in range(R):
            for half in range(2):
                for k in range(m):
                    x[r, 2 * k + half] = P[half, r, 1 + k]
        return accepted
    for parity in range(2):  # odd n: the row's first and last sites may both be updated, so h
        for r in range(R):   # is taken site by site from the current field
            for j in range((parity + rpar[r]) % 2, n, 2):
                i = r * n + j
                hj = x[r, j - 1 if j > 0 else n - 1] + x[r, j + 1 if j < n - 1 else 0]
                for c in range(rnbr.shape[1]):
                    hj += x[rnbr[r, c], j]
                old = x[r, j]
                prop = old + delta * (2.0 * uniform(key, 2 * i) - 1.0)
                o2 = old * old
                n2 = prop * prop
                dS = -A * hj * (prop - old) + B * (n2 - o2) + C * (n2 * n2 - o2 * o2)
                if dS <= 0.0 or uniform(key, 2 * i + 1) < math.exp(-dS):
                    x[r, j] = prop
                    accepted += 1
    return accepted


@njit(cache=True)
def wolff_kernel(x, nbr, A, key, sites, mark):
    """One Brower-Tamayo single-cluster update of the flat field x (V,), in place.

    Seed u(key, 0); link <xy> open with probability 1 - exp(min(0, -2 A phi_x phi_y)) from its own
    counter (lattice/cluster.py; counter 1 is unused here); phi -> -phi on the cluster.
    dS of the flip = 2 A sum_{x in C, y not in C} phi_x phi_y, compensated exactly by the bond
    probabilities (acceptance 1). Returns the cluster size; sites[:n] holds the cluster.
    """
    V = x.shape[0]
    n = grow_cluster(x, nbr, A, key, seed_site(key, V), sites, mark)
    for i in range(n):
        s = sites[i]
        x[s] = -x[s]
        mark[s] = False
    return n


# --------------------------------------------------------------------------- chain sets
# Kernels over a leading chain axis: row k of xs (K, R, n) is one configuration seen as rows (a chain of
# a chain set), done with its own parameters by the single-configuration kernel above (``*_rows``:
# serially, ``*_rows_parallel``: chains in parallel), so chain k is bit for bit what that kernel gives on
# its own, whatever the thread count or the other chains (tests/samplers/test_chain_kernels.py).
@njit(cache=True)
def _kick_drift(x, p, kicks, drifts, n_kicks, rnbr, A, B, C):
    """p += kicks[0] F(x); then for j = 1 .. n_kicks - 1: x += drifts[j - 1] p, p += kicks[j] F(x)."""
    xf = x.reshape(-1)
    pf = p.reshape(-1)
    for j in range(n_kicks):
        if j > 0:
            axpy(xf, pf, drifts[j - 1])
        kick_kernel(x, p, kicks[j], rnbr, A, B, C)


@njit(cache=True)
def kick_drift_rows(xs, ps, kicks, drifts, n_kicks, rnbr, A, B, C):
    for k in range(xs.shape[0]):
        _kick_drift(xs[k], ps[k], kicks[k], drifts[k], n_kicks[k], rnbr, A, B, C)


@njit(cache=True, parallel=True)
def kick_drift_rows_parallel(xs, ps, kicks, drifts, n_kicks, rnbr, A, B, C):
    for k in prange(xs.shape[0]):
        _kick_drift(xs[k], ps[k], kicks[k], drifts[k], n_kicks[k], rnbr, A, B, C)


@njit(cache=True)
def action_rows(xs, rnbr, A, B, C):
    """action_batch_kernel on one thread."""
    out = np.empty(xs.shape[0])
    for k in range(xs.shape[0]):
        out[k] = action_kernel(xs[k], rnbr, A, B, C)
    return out


@njit(cache=True)
def metropolis_rows(xs, rnbr, rpar, A, B, C, deltas, keys, accepted):
    for k in range(xs.shape[0]):
        accepted[k] = metropolis_kernel(xs[k], rnbr, rpar, A, B, C, deltas[k], keys[k])


@njit(cache=True, parallel=True)
def metropolis_rows_parallel(xs, rnbr, rpar, A, B, C, deltas, keys, accepted):
    for k in prange(xs.shape[0]):
        accepted[k] = metropolis_kernel(xs[k], rnbr, rpar, A, B, C, deltas[k], keys[k])


#: serial cost per site of each kernel (ns, the 2-core VM), for fastmath.run_parallel
COST_NS = {"action": 2, "kick": 2, "metropolis": 11}


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous float64 array (the kernels write through it)."""
    if not (a.flags.c_contiguous and a.dtype == np.float64):
        raise ValueError("phi4 kernels need C-contiguous float64 arrays (use np.ascontiguousarray)")
    return a.reshape(-1)


# --------------------------------------------------------------------------- theory
@dataclass(frozen=True)
class Phi4:
    """phi^4 theory; give (kappa, lam) for the hopping or (m2, g) for the flow-paper form.

    >>> Phi4((8, 8), kappa=0.25, lam=0.5).as_flow()   # the tutorial point m2 = -4, g = 8
    """

    shape: tuple[int, ...]
    kappa: float | None = None
    lam: float | None = None
    m2: float | None = None
    g: float | None = None

    name = "phi4"
    compact = False

    def __post_init__(self):
        object.__setattr__(self, "shape", geometry.validate_shape(self.shape))
        hopping = self.kappa is not None or self.lam is not None
        flow = self.m2 is not None or self.g is not None
        if hopping == flow:
            raise ValueError("phi4 needs either (kappa, lam) or (m2, g)")
        if hopping:
            if self.kappa is None or self.lam is None:
                raise ValueError("phi4 hopping parameterization needs both kappa and lam")
            if self.lam < 0:
                raise ValueError(f"lam = {self.lam} < 0: the phi^4 action is unbounded below")
        else:
            if self.m2 is None or self.g is None:
                raise ValueError("phi4 flow parameterization needs both m2 and g")
            if self.g < 0:
                raise ValueError(f"g = {self.g} < 0: the phi^4 action is unbounded below")
        A, B, C = self.coefficients
        if C == 0 and B - abs(A) * self.dim <= 0:
            raise ValueError("free phi4 field (no quartic term) needs a positive mass: "
                             "the Gaussian action is unbounded below")
        object.__setattr__(self, "_rnbr", geometry.row_neighbours(self.shape))

    # -- parameters
    @property
    def parameterization(self) -> str:
        return "hopping" if self.kappa is not None else "flow"

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def coefficients(self) -> tuple[float, float, float]:
        """(A, B, C) of S = sum_x [-A sum_mu phi phi_{+mu} + B phi^2 + C phi^4]."""
        if self.parameterization == "hopping":
            return 2.0 * self.kappa, 1.0 - 2.0 * self.lam, float(self.lam)
        return 2.0, 2.0 * self.dim + self.m2, float(self.g)

    def params(self) -> dict:
        if self.parameterization == "hopping":
            return {"kappa": float(self.kappa), "lam": float(self.lam)}
        return {"m2": float(self.m2), "g": float(self.g)}

    def as_flow(self) -> "Phi4":
        """The same theory in the flow-paper parameterization (m^2, g)."""
        if self.parameterization == "flow":
            return self
        d = self.dim
        return Phi4(self.shape, m2=(1 - 2 * self.lam) / self.kappa - 2 * d, g=self.lam / self.kappa**2)

    def as_hopping(self) -> "Phi4":
        """The same theory in the hopping parameterization (kappa, lambda).

        kappa solves 2 g kappa^2 + (m^2 + 2d) kappa - 1 = 0 (the positive root), lambda = g kappa^2.
        """
        if self.parameterization == "hopping":
            return self
        b = self.m2 + 2 * self.dim
        if self.g == 0:
            kappa = 1.0 / b
        else:
            kappa = (-b + math.sqrt(b * b + 8 * self.g)) / (4 * self.g)
        return Phi4(self.shape, kappa=kappa, lam=self.g * kappa**2)

    def field_to(self, q: np.ndarray, parameterization: str) -> np.ndarray:
        """Convert a field of this theory to the other parameterization: phi0 = sqrt(kappa) phi."""
        if parameterization == self.parameterization:
            return q
        kappa = self.as_hopping().kappa
        return q * math.sqrt(kappa) if parameterization == "flow" else q / math.sqrt(kappa)

    # -- configurations
    @property
    def config_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def n_dof(self) -> int:
        return int(np.prod(self.shape))

    def random_config(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal(self.shape)

    @property
    def ordered_magnitude(self) -> float:
        """phi_0 >= 0 minimizing the action of a uniform field, S/V = (B - A d) phi^2 + C phi^4:
        phi_0^2 = (A d - B) / (2 C) in the broken phase (A d > B), 0 otherwise."""
        A, B, C = self.coefficients
        return math.sqrt((A * self.dim - B) / (2.0 * C)) if C > 0 and A * self.dim > B else 0.0

    def ordered_config(self, rng: np.random.Generator) -> np.ndarray:
        """The uniform field +-phi_0 (``ordered_magnitude``), its sign from one draw of ``rng``: a
        start inside one broken-phase minimum, so no domain walls have to dissolve."""
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return np.full(self.shape, sign * self.ordered_magnitude)

    # -- kernels (on rows: see geometry.row_neighbours)
    def _rows(self, q: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(q).reshape(-1, self.shape[-1])

    def action(self, q: np.ndarray) -> float:
        return action_kernel(self._rows(q), self._rnbr, *self.coefficients)

    def action_batch(self, qs: np.ndarray) -> np.ndarray:
        """S of each configuration of qs, bit for bit ``action`` of each (in parallel for a large batch)."""
        xs = np.ascontiguousarray(qs).reshape(len(qs), -1, self.shape[-1])
        parallel = run_parallel(COST_NS["action"] * xs.size)
        return (action_batch_kernel if parallel else action_rows)(xs, self._rnbr, *self.coefficients)

    def force(self, q: np.ndarray) -> np.ndarray:
        return self.force_batch(q[None])[0]

    def force_batch(self, qs: np.ndarray) -> np.ndarray:
        out = np.empty(qs.shape)
        xs = np.ascontiguousarray(qs).reshape(len(qs), -1, self.shape[-1])
        force_batch_kernel(xs, self._rnbr, *self.coefficients, out.reshape(xs.shape))
        return out

    def kick(self, q: np.ndarray, p: np.ndarray, eps: float) -> None:
        """p += eps * F(q), in place."""
        kick_kernel(self._rows(q), _flat(p).reshape(-1, self.shape[-1]), eps, self._rnbr, *self.coefficients)

    def check_metropolis(self) -> None:
        geometry.require_even(self.shape, "the checkerboard Metropolis update")

    def metropolis_sweep(self, q: np.ndarray, delta: float, key: np.uint64) -> int:
        A, B, C = self.coefficients
        x = _flat(q).reshape(-1, self.shape[-1])
        return metropolis_kernel(x, self._rnbr, geometry.row_parity(self.shape), A, B, C, delta, key)

    def check_wolff(self, metropolis_sweeps: int = 1) -> None:
        """The cluster flips only signs: refuse a chain without local sweeps for the magnitudes."""
        if metropolis_sweeps < 1:
            raise ValueError("phi4 Wolff (Brower-Tamayo) clusters flip only the signs of phi: "
                             "they need >= 1 Metropolis sweep per update for the magnitudes")
        self.check_metropolis()

    def wolff_update(self, q: np.ndarray, key: np.uint64) -> int:
        """One embedded-Ising single-cluster update of q in place (wolff_kernel); returns the cluster size."""
        s = scratch_of(self)
        A = self.coefficients[0]
        return wolff_kernel(flat_view(q), geometry.neighbours(self.shape), A, np.uint64(key), s.sites, s.mark)

    # -- chain sets: row k of qs (K, *shape) is a configuration; each method is, bit for bit, the
    #    single-configuration method on every row with that row's parameters (rows serially or in
    #    parallel by the work, fastmath.run_parallel: the result is the same)
    def _chain_rows(self, qs: np.ndarray) -> np.ndarray:
        """qs (K, *shape) as a (K, R, n) view of rows (geometry.row_neighbours)."""
        if not (isinstance(qs, np.ndarray) and qs.dtype == np.float64 and qs.flags.c_contiguous
                and qs.shape[1:] == self.shape):
            raise ValueError(f"phi4 chain kernels need a C-contiguous float64 array of shape (K, *{self.shape}), "
                             f"got {getattr(qs, 'shape', type(qs))}")
        return qs.reshape(len(qs), -1, self.shape[-1])

    def kick_drift_chains(self, qs: np.ndarray, ps: np.ndarray, kicks: np.ndarray, drifts: np.ndarray,
                          n_kicks: np.ndarray) -> None:
        """Row k: p += kicks[k, 0] F(q), then for j = 1 .. n_kicks[k] - 1: q += drifts[k, j - 1] p and
        p += kicks[k, j] F(q) (the kicks of ``kick``, the drift without FMA), in place."""
        xs, ps = self._chain_rows(qs), self._chain_rows(ps)
        kicks, drifts, n_kicks = kick_drift_tables(len(xs), kicks, drifts, n_kicks)
        if ps.shape != xs.shape:
            raise ValueError(f"kick_drift_chains: momenta {ps.shape} for configurations {xs.shape}")
        parallel = run_parallel(COST_NS["kick"] * xs.size * n_kicks.max(initial=0))
        (kick_drift_rows_parallel if parallel else kick_drift_rows)(xs, ps, kicks, drifts, n_kicks, self._rnbr,
                                                                    *self.coefficients)

    def metropolis_sweep_chains(self, qs: np.ndarray, deltas: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``metropolis_sweep(qs[k], deltas[k], keys[k])`` for every row; (K,) accepted counts."""
        accepted = np.empty(len(qs), dtype=np.int64)
        parallel = run_parallel(COST_NS["metropolis"] * qs.size)
        (metropolis_rows_parallel if parallel else metropolis_rows)(
            self._chain_rows(qs), self._rnbr, geometry.row_parity(self.shape), *self.coefficients,
            per_chain(deltas, len(qs), np.float64), per_chain(keys, len(qs), np.uint64), accepted)
        return accepted

    def torch_action(self, x):
        """S of a batch x of shape (N, *shape), float64 torch, differentiable."""
        import torch

        A, B, C = self.coefficients
        dims = tuple(range(1, x.dim()))
        links = sum(x * torch.roll(x, -1, dims=mu) for mu in dims)
        x2 = x * x
        return (-A * links + B * x2 + C * x2 * x2).sum(dim=dims)
