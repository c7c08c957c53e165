"""Winding HMC (wHMC) for 2D U(1): HMC trajectories mixed with Metropolis winding moves.

D. Albandea, P. Hernandez, A. Ramos, F. Romero-Lopez, "Topological sampling through windings",
EPJC 81 (2021) 873, arXiv:2106.14234. HMC changes the topological charge Q only by pushing a
plaquette through theta_P = pi, which costs ~2 beta of action, so at large beta tau_int(Q) explodes
(~1300 trajectories at beta = 6, L = 8). A winding move jumps between sectors directly.

The winding move: draw a sign s = +-1 with probability 1/2 each and a position x uniform over the V sites
(one 64-bit draw b of the chain's generator, lattice.rng.new_key: s = +1 for an even b, x = (b >> 1) mod V,
row-major x = x0 L1 + x1), then propose

    theta' = wrap(theta + s omega_x)        (U -> U e^{i s omega_x})

with omega_x the winding field of lattice/u1_winding.py on the Lw x Lw square whose lower-left plaquette
is x (Lw = L: the whole torus): every plaquette of the square changes by s 2 pi / Lw^2, none outside, so
for a smooth configuration Q -> Q + s. Accept with probability min(1, exp(-(S(theta') - S(theta))))
(u = r.random(), drawn on every move).

Why it is exact: the proposal is the mixture over (x, s) of the maps T_{x,s}: theta -> theta + s omega_x
(mod 2 pi), each with probability 1 / (2 V). Each T_{x,s} is a translation on the torus of link angles,
so it preserves the Haar measure (Jacobian 1), and its inverse is T_{x,-s}, which the mixture picks with
the same probability as T_{x,s}: the sign is the lowest bit of b and x depends only on the others, so
P(x, +1) = P(x, -1) exactly (x itself is uniform up to the 2^-63 V of the modulo, which the argument
does not even need). So the probability to propose theta' from theta equals that to propose
theta from theta' (the maps taking theta to theta' are paired one to one with those taking theta' back),
the proposal is symmetric, and Metropolis acceptance with min(1, e^{-dS}) satisfies detailed balance
with respect to e^{-S} d theta. (A proposal with s = +1 only would not be: its reverse move is never
proposed. tests/samplers/test_winding.py shows that such a chain gets <Q> != 0.) HMC leaves e^{-S}
invariant too, so their composition does; HMC makes the chain ergodic within a sector, the winding
moves connect the sectors.

One update of ``WindingHMC`` = ``winding_every`` = N HMC trajectories (samplers/hmc.py, unchanged),
then one winding move. Its UpdateInfo: accept = the mean acceptance of the N trajectories (what HMC's
tuning aims at), dH = that of the last trajectory; diagnostics ``winding_accept`` (0/1) and
``winding_dS`` of the winding move. ``--every`` counts these updates, so a stored interval is
every x N trajectories: tau_int in trajectories = N x tau_int in updates. ``report()``: the acceptance
of all winding moves this sampler made (thermalization included).

Chain sets: ``update_chains`` runs the N trajectories of all chains batched (``HMC.update_chains``),
then the winding moves of all chains: each chain's two draws from its own generator in the order
``update`` takes them, the proposals, and one ``action_batch`` each for the current and the proposed
configurations (S of each row, bit for bit ``action``): bit for bit ``update`` on each chain.
"""
from __future__ import annotations

import numpy as np

from lattice.rng import new_keys
from lattice.u1_winding import add_winding_rows, check_size

from .base import Stateless, UpdateInfo
from .hmc import HMC, metropolis_accept


class WindingHMC(Stateless):
    """N HMC trajectories, then one winding move (the module docstring)."""

    name = "winding-hmc"
    diagnostics = ("dH", "winding_accept", "winding_dS")

    def __init__(self, hmc: HMC | None = None, winding_every: int = 1, winding_size: int | None = None):
        self.hmc = HMC() if hmc is None else hmc
        self.winding_every = winding_every
        self.winding_size = winding_size  # None: the whole lattice
        self.n_moves = 0
        self.n_accepted = 0

    def check(self, theory) -> None:
        if theory.name != "u1":
            raise ValueError(f"winding moves are for 2D U(1) gauge theory (--theory u1), not {theory.name}")
        if not (isinstance(self.winding_every, (int, np.integer)) and self.winding_every >= 1):
            raise ValueError(f"--winding-every must be an integer >= 1, got {self.winding_every}")
        if self.winding_size is not None:
            if not (isinstance(self.winding_size, (int, np.integer)) and 2 <= self.winding_size <= min(theory.shape)):
                raise ValueError(f"--winding-size must be an integer in [2, {min(theory.shape)}] (the lattice "
                                 f"extent), got {self.winding_size}")
        check_size(theory.shape, *self.region(theory.shape))
        self.hmc.check(theory)

    def region(self, shape: tuple[int, int]) -> tuple[int, int]:
        """(w0, w1): the extents of the winding square (the whole lattice when winding_size is None)."""
        return tuple(shape) if self.winding_size is None else (self.winding_size, self.winding_size)

    def draw(self, bits: int, shape: tuple[int, int]) -> tuple[int, int, float]:
        """The move's position (x0, x1) and sign from one 64-bit draw (the module docstring)."""
        site = (bits >> 1) % (shape[0] * shape[1])
        return site // shape[1], site % shape[1], -1.0 if bits & 1 else 1.0

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        total, info = 0.0, None
        for _ in range(self.winding_every):
            info = self.hmc.update(theory, q, rng)
            total += info.accept
        (accepted, dS), = winding_moves(theory, [self], q[None], [rng])
        return UpdateInfo(total / self.winding_every, info.dH, {"winding_accept": accepted, "winding_dS": dS})

    @staticmethod
    def update_chains(theory, samplers: list["WindingHMC"], qs: np.ndarray,
                      rngs: list[np.random.Generator]) -> list[UpdateInfo]:
        """One update of every chain: row k of ``qs`` (C-contiguous float64) by ``samplers[k]`` with
        ``rngs[k]``, in place; bit for bit ``[s.update(theory, q, r) for ...]`` (the module docstring).
        The per-chain loop for one chain, chains with different winding_every, or a shared generator."""
        n = samplers[0].winding_every
        if (len(samplers) == 1 or any(s.winding_every != n for s in samplers)
                or len({id(r) for r in rngs}) < len(rngs)):
            return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]
        if not len(samplers) == len(rngs) == len(qs):
            raise ValueError(f"update_chains: {len(samplers)} samplers, {len(rngs)} generators, {len(qs)} chains")
        totals, infos = [0.0] * len(samplers), None
        hmcs = [s.hmc for s in samplers]
        for _ in range(n):
            infos = HMC.update_chains(theory, hmcs, qs, rngs)
            for k, info in enumerate(infos):
                totals[k] += info.accept
        moves = winding_moves(theory, samplers, qs, rngs)
        return [UpdateInfo(total / n, info.dH, {"winding_accept": a, "winding_dS": dS})
                for total, info, (a, dS) in zip(totals, infos, moves)]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        self.hmc.adapt(info, k, compact)  # info.dH is the last trajectory's

    def settings(self) -> dict:
        return {**self.hmc.settings(), "winding_every": int(self.winding_every),
                "winding_size": None if self.winding_size is None else int(self.winding_size)}

    @classmethod
    def from_settings(cls, settings: dict) -> "WindingHMC":
        s = dict(settings)
        every, size = s.pop("winding_every"), s.pop("winding_size", None)
        return cls(HMC.from_settings(s), every, size)

    def report(self) -> dict:
        out = {"winding_moves": self.n_moves}
        if self.n_moves:
            out["winding_accept"] = self.n_accepted / self.n_moves
        return out


def winding_moves(theory, samplers: list[WindingHMC], qs: np.ndarray,
                  rngs: list[np.random.Generator]) -> list[tuple[float, float]]:
    """One winding move of each chain (row k of ``qs``, in place, with ``samplers[k]``'s region and draws
    from ``rngs[k]``: position and sign, then the accept uniform); returns (accepted 0/1, dS) per chain."""
    shape = theory.shape
    draws = [s.draw(int(b), shape) for s, b in zip(samplers, new_keys(rngs))]
    uniforms = [r.random() for r in rngs]
    regions = np.array([s.region(shape) for s in samplers], dtype=np.int64)
    at = np.array([d[:2] for d in draws], dtype=np.int64)
    proposed = qs.copy()
    add_winding_rows(proposed, regions[:, 0], regions[:, 1], at[:, 0], at[:, 1], np.array([d[2] for d in draws]))
    dS = (theory.action_batch(proposed) - theory.action_batch(qs)).tolist()
    out = []
    for k, (s, d, u) in enumerate(zip(samplers, dS, uniforms)):
        accepted = metropolis_accept(d, u)
        if accepted:
            qs[k] = proposed[k]
        s.n_moves += 1
        s.n_accepted += int(accepted)
        out.append((float(accepted), d))
    return out
