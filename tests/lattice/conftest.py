"""Helpers shared by the phi^4, XY and U(1) tests.

They are session-scoped fixtures that return plain functions, so hypothesis tests can use
them (hypothesis refuses function-scoped fixtures).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lattice.fastmath import wrap_angle
from lattice.rng import uniforms


def _torch_action_and_force(theory, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, -dS/dq) of a batch from the theory's torch action and autograd."""
    x = torch.tensor(qs, dtype=torch.float64, requires_grad=True)
    s = theory.torch_action(x)
    (grad,) = torch.autograd.grad(s.sum(), x)
    return s.detach().numpy(), -grad.numpy()


def _finite_difference_force(theory, q: np.ndarray, index: tuple, h: float = 1e-5) -> float:
    """-dS/dq[index] by the central difference of the Numba action."""
    qp = q.copy()
    qm = q.copy()
    qp[index] += h
    qm[index] -= h
    return -(theory.action(qp) - theory.action(qm)) / (2.0 * h)


def _reference_sweep(theory, q: np.ndarray, delta: float, key: np.uint64, order, compact: bool) -> int:
    """A Metropolis sweep written from its documented definition, updating q in place.

    ``order`` lists ``(index, counter)`` in visiting order: the proposal for q[index] is
    q + delta (2 u(key, 2 counter) - 1) (wrapped to [-pi, pi) for compact fields) and it is
    accepted when dS <= 0 or u(key, 2 counter + 1) < exp(-dS), dS from the full action.
    """
    order = list(order)
    u = uniforms(np.uint64(key), 2 * max(c for _, c in order) + 2)
    accepted = 0
    for index, c in order:
        new = q[index] + delta * (2.0 * u[2 * c] - 1.0)
        if compact:
            new = wrap_angle(new)
        trial = q.copy()
        trial[index] = new
        dS = theory.action(trial) - theory.action(q)
        if dS <= 0.0 or u[2 * c + 1] < math.exp(-dS):
            q[index] = new
            accepted += 1
    return accepted


@pytest.fixture(scope="session")
def torch_action_and_force():
    return _torch_action_and_force


@pytest.fixture(scope="session")
def finite_difference_force():
    return _finite_difference_force


@pytest.fixture(scope="session")
def reference_sweep():
    return _reference_sweep
