"""Hybrid Monte Carlo (Duane, Kennedy, Pendleton, Roweth, PLB 195 (1987) 216).

One trajectory: draw p ~ N(0, 1), integrate Hamilton's equations of H = p^2/2 + S(q) for
n_steps steps of size eps (samplers/integrators.py), accept the end point with probability
min(1, exp(-dH)). During thermalization eps is tuned to a target acceptance with the
trajectory length tau = n_steps eps held near ``traj_length`` (n_steps = round(tau / eps)),
then frozen. Angle fields are wrapped back to [-pi, pi) after each trajectory (S is periodic).

Jitter: each trajectory uses the step eps (1 + jitter (2u - 1)), u uniform, drawn before and
independently of the trajectory, so every trajectory is still reversible and the chain exact
(a mixture of exact kernels). Without it a mode whose period is close to 2 tau / k barely
moves (for the free field q -> -q at omega tau = pi) and its autocorrelation time explodes
(P. B. Mackenzie, Phys. Lett. B 226 (1989) 369).

Chain sets: ``HMC.update_chains`` runs one trajectory of each of K chains (rows of one array), each
with its own sampler (step size, n_steps) and generator; the momenta of all chains are drawn in one
kernel call, the actions in one, the K trajectories in one (samplers/integrators.py), so the
per-trajectory Python overhead is paid once per set. The results are bit for bit those of
``update`` on each chain: the same draws from each generator in the same order, the same kernels.
"""
from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass

import numpy as np

from lattice.fastmath import work_array, wrap_angles
from lattice.rng import new_key, new_keys, normals, normals_chains

from .base import Stateless, UpdateInfo, robbins_monro
from .integrators import INTEGRATORS, INTEGRATORS_CHAINS


@dataclass
class HMC(Stateless):
    step_size: float = 0.1
    traj_length: float = 1.0
    integrator: str = "leapfrog"
    target_accept: float = 0.8
    n_steps: int = 0  # 0: round(traj_length / step_size)
    jitter: float = 0.2  # relative half-width of the per-trajectory step size

    name = "hmc"
    diagnostics = ("dH",)

    def __post_init__(self):
        for name in ("step_size", "traj_length"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"HMC {name.replace('_', ' ')} must be a finite number > 0, got {value}")
        if self.n_steps <= 0:
            self.n_steps = max(1, round(self.traj_length / self.step_size))

    def check(self, theory) -> None:
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r}; choose from {', '.join(INTEGRATORS)}")
        if not self.step_size > 0 or not self.traj_length > 0:
            raise ValueError("HMC step size and trajectory length must be > 0")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target acceptance must lie in (0, 1), got {self.target_accept}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"HMC jitter must lie in [0, 1), got {self.jitter}")

    def trajectory(self, theory, q: np.ndarray, p: np.ndarray, step_size: float | None = None) -> None:
        """Integrate (q, p) in place over one trajectory (of n_steps steps of ``step_size``)."""
        INTEGRATORS[self.integrator](theory, q, p, step_size or self.step_size, self.n_steps)

    def update(self, theory, q: np.ndarray, rng: np.random.Generator) -> UpdateInfo:
        p = normals(new_key(rng), np.empty(q.shape))  # exact N(0, 1) by the Ziggurat, keyed by one 64-bit draw
        eps = jittered_step(self.step_size, self.jitter, rng.random())
        q_new = q.copy()
        h_old = 0.5 * float(np.dot(p.reshape(-1), p.reshape(-1))) + theory.action(q)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trajectory gives dH = inf/NaN: rejected
            self.trajectory(theory, q_new, p, eps)
            if theory.compact:
                wrap_angles(q_new)
            h_new = 0.5 * float(np.dot(p.reshape(-1), p.reshape(-1))) + theory.action(q_new)
        dH = h_new - h_old
        accept = metropolis_accept(dH, rng.random())  # drawn on every trajectory: the stream does not depend on dH
        if accept:
            q[...] = q_new
        return UpdateInfo(float(accept), dH)

    @staticmethod
    def update_chains(theory, samplers: list[HMC], qs: np.ndarray, rngs: list[np.random.Generator]) -> list[UpdateInfo]:
        """One trajectory of every chain: row k of ``qs`` (C-contiguous float64, (K, *config_shape)) by
        ``samplers[k]`` with ``rngs[k]``, in place; bit for bit ``[s.update(theory, q, r) for ...]``.

        Batched: the momenta (lattice.rng.normals_chains), the actions (``theory.action_batch``: S of
        each row by the single-configuration kernel), the K trajectories (integrators, chain k with its
        own eps and n_steps), the p.p (np.vecdot: np.dot row by row) and the energy arithmetic. Per
        chain in Python: its three draws (key, jitter, accept, in the order ``update`` takes them) and
        the accept step. The per-chain loop instead for one chain, a theory without chain kernels,
        samplers with different integrators, or a generator shared by chains (whose draws the loop
        interleaves chain by chain)."""
        if (len(samplers) == 1 or not hasattr(theory, "kick_drift_chains")
                or len({s.integrator for s in samplers}) > 1 or len({id(r) for r in rngs}) < len(rngs)):
            return [s.update(theory, q, r) for s, q, r in zip(samplers, qs, rngs)]
        _check_chains(theory, qs, samplers, rngs)
        keys, u_step, u_accept = _trajectory_draws(rngs)
        step = np.array([s.step_size for s in samplers])
        eps = jittered_step(step, np.array([s.jitter for s in samplers]), np.array(u_step))
        eps = np.where(eps == 0.0, step, eps)  # as trajectory(): ``step_size or self.step_size``
        ps = normals_chains(keys, _work_array("p", qs.shape))
        h_old = kinetic_energies(ps) + theory.action_batch(qs)
        q_new = _work_array("q", qs.shape)
        np.copyto(q_new, qs)
        with np.errstate(over="ignore", invalid="ignore"):  # as update: a diverged chain has dH = inf/NaN
            INTEGRATORS_CHAINS[samplers[0].integrator](theory, q_new, ps, eps, [s.n_steps for s in samplers])
            if theory.compact:
                wrap_angles(q_new)
            dHs = ((kinetic_energies(ps) + theory.action_batch(q_new)) - h_old).tolist()
        accepts = [metropolis_accept(dH, u) for dH, u in zip(dHs, u_accept)]
        chosen = [k for k, accept in enumerate(accepts) if accept]
        qs[chosen] = q_new[chosen]
        return [UpdateInfo(float(accept), dH) for accept, dH in zip(accepts, dHs)]

    def adapt(self, info: UpdateInfo, k: int, compact: bool = False) -> None:
        p_acc = min(1.0, math.exp(-info.dH)) if math.isfinite(info.dH) else 0.0
        self.step_size = math.exp(robbins_monro(math.log(self.step_size), p_acc, self.target_accept, k))
        self.step_size = min(self.step_size, self.traj_length)
        self.n_steps = max(1, round(self.traj_length / self.step_size))

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def from_settings(cls, settings: dict) -> "HMC":
        return cls(**settings)


def metropolis_accept(dH: float, u: float) -> bool:
    """Accept with probability min(1, exp(-dH)), u uniform in [0, 1). A NaN dH (a blown-up trajectory)
    is rejected."""
    return dH <= 0 or u < math.exp(-dH)


def _trajectory_draws(rngs: list[np.random.Generator]) -> tuple[np.ndarray, list[float], list[float]]:
    """Each chain's draws of one trajectory, in the order ``update`` takes them from its generator: the
    momentum key, the jitter uniform, the accept uniform (taken before the trajectory: nothing draws
    between them)."""
    keys = new_keys(rngs)
    return keys, [r.random() for r in rngs], [r.random() for r in rngs]


def jittered_step(step_size, jitter, u):
    """The step of one trajectory, step_size (1 + jitter (2u - 1)), u uniform in [0, 1): floats, or
    arrays of one entry per chain (the same IEEE operations in the same order, so the same bits)."""
    return step_size * (1.0 + jitter * (2.0 * u - 1.0))


def kinetic_energies(ps: np.ndarray) -> np.ndarray:
    """0.5 p.p of each row of ps, bit for bit ``0.5 * float(np.dot(p, p))`` as ``HMC.update`` takes it:
    np.vecdot runs numpy's float64 dot (the one BLAS ddot np.dot calls) on each row, in one call."""
    rows = ps.reshape(len(ps), -1)
    if hasattr(np, "vecdot"):  # numpy >= 2.0
        return 0.5 * np.vecdot(rows, rows)
    return 0.5 * np.array([np.dot(p, p) for p in rows])


_WORK = threading.local()  # update_chains' momenta and trial configurations, kept between calls


def _work_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    return work_array(_WORK.__dict__.setdefault(name, {}), shape)


def _check_chains(theory, qs: np.ndarray, samplers: list, rngs: list) -> None:
    if not (isinstance(qs, np.ndarray) and qs.dtype == np.float64 and qs.flags.c_contiguous
            and qs.shape[1:] == tuple(theory.config_shape)):
        raise ValueError(f"update_chains needs a C-contiguous float64 array (K, *config_shape), got "
                         f"{getattr(qs, 'shape', type(qs))}")
    if not len(samplers) == len(rngs) == len(qs):
        raise ValueError(f"update_chains: {len(samplers)} samplers, {len(rngs)} generators, {len(qs)} chains")
