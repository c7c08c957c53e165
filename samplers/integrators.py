"""Symplectic, reversible integrators for HMC with H = p^2/2 + S(q).

A theory supplies the momentum update ``kick(q, p, eps)``: p += eps F(q), F = -dS/dq.
The position update ``drift`` is q += eps p. Both integrators are symmetric compositions of
kicks and drifts, so they are time-reversible and volume-preserving, which is all that
HMC's exactness needs; the energy error only lowers the acceptance.

- leapfrog (velocity Verlet): P(eps/2) Q(eps) P(eps/2); energy error O(eps^2).
- omelyan: the second-order minimum-norm integrator of Omelyan, Mryglod and Folk,
  Comput. Phys. Commun. 151 (2003) 272, P(l eps) Q(eps/2) P((1 - 2l) eps) Q(eps/2) P(l eps),
  l = 0.1931833275037836: also O(eps^2), with an error constant about ten times smaller,
  for two force evaluations per step.
Adjacent kicks of consecutive steps are merged.

Chain sets: ``leapfrog_chains`` / ``omelyan_chains`` integrate K configurations (rows of qs, ps) at
once, chain k with its own step eps[k] and its own n_steps[k]. Each writes chain k's sequence of
kicks and drifts as a table of coefficients, the very numbers the single-chain integrator passes
(0.5 * eps, lam * eps, ...), and hands the tables to the theory's ``kick_drift_chains``, which runs
each chain's sequence with the arithmetic of ``kick`` and ``drift``: row k ends bit for bit where
``leapfrog(theory, qs[k], ps[k], eps[k], n_steps[k])`` ends. One kernel call per trajectory of all
chains (the chains in parallel when the work pays for it).
"""
from __future__ import annotations

import numpy as np
from numba import njit

OMELYAN_LAMBDA = 0.1931833275037836


@njit(cache=True)
def _drift(q: np.ndarray, p: np.ndarray, eps: float) -> None:
    for i in range(q.size):
        q[i] += eps * p[i]


def drift(q: np.ndarray, p: np.ndarray, eps: float) -> None:
    """q += eps p, in place."""
    _drift(q.reshape(-1), p.reshape(-1), eps)


def leapfrog(theory, q: np.ndarray, p: np.ndarray, eps: float, n_steps: int) -> None:
    """n_steps leapfrog steps of size eps, in place."""
    theory.kick(q, p, 0.5 * eps)
    for k in range(n_steps):
        drift(q, p, eps)
        theory.kick(q, p, eps if k < n_steps - 1 else 0.5 * eps)


def omelyan(theory, q: np.ndarray, p: np.ndarray, eps: float, n_steps: int) -> None:
    """n_steps second-order minimum-norm steps of size eps, in place."""
    lam = OMELYAN_LAMBDA
    theory.kick(q, p, lam * eps)
    for k in range(n_steps):
        drift(q, p, 0.5 * eps)
        theory.kick(q, p, (1.0 - 2.0 * lam) * eps)
        drift(q, p, 0.5 * eps)
        theory.kick(q, p, (2.0 * lam if k < n_steps - 1 else lam) * eps)


INTEGRATORS = {"leapfrog": leapfrog, "omelyan": omelyan}


def _per_chain(eps: np.ndarray, n_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eps = np.ascontiguousarray(eps, dtype=np.float64)
    n_steps = np.ascontiguousarray(n_steps, dtype=np.int64)
    if eps.ndim != 1 or eps.shape != n_steps.shape or (n_steps < 1).any():
        raise ValueError("chain integrators need one step size and one n_steps >= 1 per chain")
    return eps, n_steps


def leapfrog_chains(theory, qs: np.ndarray, ps: np.ndarray, eps: np.ndarray, n_steps: np.ndarray) -> None:
    """Chain k: ``leapfrog(theory, qs[k], ps[k], eps[k], n_steps[k])``, bit for bit, in place.

    Kicks 0.5 eps, eps (n - 1 times), 0.5 eps with a drift eps between consecutive ones."""
    eps, n_steps = _per_chain(eps, n_steps)
    K, m = len(eps), int(n_steps.max())
    kicks = np.repeat(eps[:, None], m + 1, axis=1)
    kicks[:, 0] = 0.5 * eps
    kicks[np.arange(K), n_steps] = 0.5 * eps
    drifts = np.repeat(eps[:, None], m, axis=1)
    theory.kick_drift_chains(qs, ps, kicks, drifts, n_steps + 1)


def omelyan_chains(theory, qs: np.ndarray, ps: np.ndarray, eps: np.ndarray, n_steps: np.ndarray) -> None:
    """Chain k: ``omelyan(theory, qs[k], ps[k], eps[k], n_steps[k])``, bit for bit, in place.

    Kicks lam eps, then per step (1 - 2 lam) eps and 2 lam eps (lam eps after the last step), with
    a drift 0.5 eps between consecutive ones."""
    eps, n_steps = _per_chain(eps, n_steps)
    lam = OMELYAN_LAMBDA
    K, m = len(eps), int(n_steps.max())
    kicks = np.empty((K, 2 * m + 1))
    kicks[:, 0] = lam * eps
    kicks[:, 1::2] = ((1.0 - 2.0 * lam) * eps)[:, None]
    kicks[:, 2::2] = ((2.0 * lam) * eps)[:, None]
    kicks[np.arange(K), 2 * n_steps] = lam * eps
    drifts = np.repeat((0.5 * eps)[:, None], 2 * m, axis=1)
    theory.kick_drift_chains(qs, ps, kicks, drifts, 2 * n_steps + 1)


INTEGRATORS_CHAINS = {"leapfrog": leapfrog_chains, "omelyan": omelyan_chains}
