"""Real scalar phi^4 theory on a d-dimensional periodic lattice (PHYSICS.md).

Both parameterizations of PHYSICS.md are one quadratic-quartic action,

    S[phi] = sum_x [ -A sum_mu phi_x phi_{x+mu} + B phi_x^2 + C phi_x^4 ],

hopping:    A = 2 kappa, B = 1 - 2 lambda,  C = lambda   (field phi)
flow paper: A = 2,       B = 2 d + m^2,     C = g        (field phi0 = sqrt(kappa) phi)

so one set of kernels serves both; the field is in the parameterization the theory was made
in. The HMC force is F = -dS/dphi = A h - 2 B phi - 4 C phi^3 with h_x = sum_mu (phi_{x+mu} + phi_{x-mu}).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import geometry
from .rng import uniform


# --------------------------------------------------------------------------- kernels
@njit(cache=True)
def _hop_sum(x: np.ndarray, dims: np.ndarray, h: np.ndarray) -> None:
    """h_x = sum_mu (x_{x+mu} + x_{x-mu}) on the flat field x of shape dims (C order)."""
    d = dims.shape[0]
    n = dims[d - 1]
    rows = x.size // n
    # last axis first, assigning h (inner loop contiguous, no wrap inside)
    for a in range(rows):
        o = a * n
        h[o] = x[o + 1] + x[o + n - 1]
        for b in range(1, n - 1):
            h[o + b] = x[o + b + 1] + x[o + b - 1]
        h[o + n - 1] = x[o] + x[o + n - 2]
    inner = n
    for mu in range(d - 2, -1, -1):
        n = dims[mu]
        outer = x.size // (n * inner)
        for a in range(outer):
            base = a * n * inner
            for b in range(n):
                bp = b + 1 if b + 1 < n else 0
                bm = b - 1 if b > 0 else n - 1
                o = base + b * inner
                op = base + bp * inner
                om = base + bm * inner
                for c in range(inner):
                    h[o + c] += x[op + c] + x[om + c]
        inner *= n


@njit(cache=True)
def _forward_links(x: np.ndarray, dims: np.ndarray) -> float:
    """sum_x sum_mu x_x x_{x+mu}."""
    d = dims.shape[0]
    total = 0.0
    inner = 1
    for mu in range(d - 1, -1, -1):
        n = dims[mu]
        outer = x.size // (n * inner)
        for a in range(outer):
            base = a * n * inner
            for b in range(n):
                bp = b + 1 if b + 1 < n else 0
                o = base + b * inner
                op = base + bp * inner
                for c in range(inner):
                    total += x[o + c] * x[op + c]
        inner *= n
    return total


@njit(cache=True)
def action_kernel(x: np.ndarray, dims: np.ndarray, A: float, B: float, C: float) -> float:
    """S of one flat configuration."""
    local = 0.0
    for i in range(x.size):
        p2 = x[i] * x[i]
        local += p2 * (B + C * p2)
    return local - A * _forward_links(x, dims)


@njit(cache=True, parallel=True)
def action_batch_kernel(xs: np.ndarray, dims: np.ndarray, A: float, B: float, C: float) -> np.ndarray:
    """S of each row of xs (N, V)."""
    out = np.empty(xs.shape[0])
    for k in prange(xs.shape[0]):
        out[k] = action_kernel(xs[k], dims, A, B, C)
    return out


@njit(cache=True)
def force_kernel(x: np.ndarray, dims: np.ndarray, A: float, B: float, C: float, out: np.ndarray) -> None:
    """out = -dS/dx."""
    _hop_sum(x, dims, out)
    for i in range(x.size):
        xi = x[i]
        out[i] = A * out[i] - xi * (2.0 * B + 4.0 * C * xi * xi)


@njit(cache=True, parallel=True)
def force_batch_kernel(xs: np.ndarray, dims: np.ndarray, A: float, B: float, C: float, out: np.ndarray) -> None:
    for k in prange(xs.shape[0]):
        force_kernel(xs[k], dims, A, B, C, out[k])


@njit(cache=True)
def kick_kernel(x, p, eps, dims, A, B, C, h):
    """p += eps * F(x), with h a scratch array of the field's size."""
    _hop_sum(x, dims, h)
    eA = eps * A
    e2B = 2.0 * eps * B
    e4C = 4.0 * eps * C
    for i in range(x.size):
        xi = x[i]
        p[i] += eA * h[i] - xi * (e2B + e4C * xi * xi)


@njit(cache=True)
def metropolis_kernel(x, nbr, sites_even, sites_odd, A, B, C, delta, key):
    """One checkerboard sweep: every site once, phi' = phi + delta (2u - 1).

    Draws 2 uniforms per site from the counter stream (key, 2 site + j).
    dS = -A h (phi' - phi) + B (phi'^2 - phi^2) + C (phi'^4 - phi^4). Returns the accepted count.
    """
    accepted = 0
    nn = nbr.shape[1]
    for parity in range(2):
        sites = sites_even if parity == 0 else sites_odd
        for k in range(sites.size):
            i = sites[k]
            h = 0.0
            for j in range(nn):
                h += x[nbr[i, j]]
            old = x[i]
            new = old + delta * (2.0 * uniform(key, 2 * i) - 1.0)
            o2 = old * old
            n2 = new * new
            dS = -A * h * (new - old) + B * (n2 - o2) + C * (n2 * n2 - o2 * o2)
            if dS <= 0.0 or uniform(key, 2 * i + 1) < math.exp(-dS):
                x[i] = new
                accepted += 1
    return accepted


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
        object.__setattr__(self, "_dims", np.array(self.shape, dtype=np.int64))
        object.__setattr__(self, "_scratch", np.empty(self.n_dof))

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

    # -- kernels
    def action(self, q: np.ndarray) -> float:
        return action_kernel(np.ascontiguousarray(q).reshape(-1), self._dims, *self.coefficients)

    def action_batch(self, qs: np.ndarray) -> np.ndarray:
        return action_batch_kernel(np.ascontiguousarray(qs).reshape(len(qs), -1), self._dims, *self.coefficients)

    def force(self, q: np.ndarray) -> np.ndarray:
        out = np.empty(q.shape)
        force_kernel(np.ascontiguousarray(q).reshape(-1), self._dims, *self.coefficients, out.reshape(-1))
        return out

    def force_batch(self, qs: np.ndarray) -> np.ndarray:
        out = np.empty(qs.shape)
        force_batch_kernel(np.ascontiguousarray(qs).reshape(len(qs), -1), self._dims, *self.coefficients,
                           out.reshape(len(qs), -1))
        return out

    def kick(self, q: np.ndarray, p: np.ndarray, eps: float) -> None:
        """p += eps * F(q), in place."""
        kick_kernel(np.ascontiguousarray(q).reshape(-1), _flat(p), eps, self._dims, *self.coefficients,
                    self._scratch)

    def check_metropolis(self) -> None:
        geometry.require_even(self.shape, "the checkerboard Metropolis update")

    def metropolis_sweep(self, q: np.ndarray, delta: float, key: np.uint64) -> int:
        even, odd = geometry.checkerboard(self.shape)
        A, B, C = self.coefficients
        return metropolis_kernel(_flat(q), geometry.neighbours(self.shape), even, odd, A, B, C, delta, key)

    def torch_action(self, x):
        """S of a batch x of shape (N, *shape), float64 torch, differentiable."""
        import torch

        A, B, C = self.coefficients
        dims = tuple(range(1, x.dim()))
        links = sum(x * torch.roll(x, -1, dims=mu) for mu in dims)
        x2 = x * x
        return (-A * links + B * x2 + C * x2 * x2).sum(dim=dims)
