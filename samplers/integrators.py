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
