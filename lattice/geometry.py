"""Periodic hypercubic lattices: neighbour tables and checkerboard partitions.

Sites are numbered in C order of the field array (the last axis runs fastest), so site
``i`` of a configuration ``q`` is ``q.reshape(-1)[i]``. ``x + mu`` is the neighbour one step
along axis mu, as ``np.roll(q, -1, axis=mu)`` brings it to x (PHYSICS.md).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def validate_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Return the shape as a tuple of ints, or raise ValueError for L < 2."""
    shape = tuple(int(n) for n in shape)
    if not shape:
        raise ValueError("lattice shape is empty")
    if any(n < 2 for n in shape):
        raise ValueError(f"lattice extent must be >= 2 in every direction, got shape {shape}")
    return shape


def require_even(shape: tuple[int, ...], why: str) -> None:
    """Checkerboard updates on a torus need every extent even."""
    if any(n % 2 for n in shape):
        raise ValueError(f"{why} needs an even lattice extent in every direction, got shape {shape}")


@lru_cache(maxsize=16)
def neighbours(shape: tuple[int, ...]) -> np.ndarray:
    """Table (V, 2d) of flat site indices: column 2 mu is x + mu, column 2 mu + 1 is x - mu."""
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    cols = []
    for mu in range(len(shape)):
        cols.append(np.roll(idx, -1, axis=mu).reshape(-1))
        cols.append(np.roll(idx, 1, axis=mu).reshape(-1))
    table = np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.int64)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=16)
def checkerboard(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the even and the odd sites (parity = sum of coordinates mod 2)."""
    parity = np.indices(shape).sum(axis=0).reshape(-1) % 2
    even = np.flatnonzero(parity == 0).astype(np.int64)
    odd = np.flatnonzero(parity == 1).astype(np.int64)
    even.setflags(write=False)
    odd.setflags(write=False)
    return even, odd


@lru_cache(maxsize=16)
def row_neighbours(shape: tuple[int, ...]) -> np.ndarray:
    """Rows are the lines along the last axis: row r of ``q.reshape(-1, shape[-1])`` has the
    coordinates of the first d - 1 axes in C order. Table (R, 2 (d - 1)): column 2 mu is the
    row one step along axis mu (+), column 2 mu + 1 one step back (-). Kernels that sweep a
    row contiguously (and so vectorize) take their other neighbours from here."""
    if len(shape) == 1:
        return np.zeros((1, 0), dtype=np.int64)
    return neighbours(tuple(shape[:-1]))


@lru_cache(maxsize=16)
def row_parity(shape: tuple[int, ...]) -> np.ndarray:
    """(R,) parity (sum of the first d - 1 coordinates mod 2) of each row."""
    if len(shape) == 1:
        return np.zeros(1, dtype=np.int64)
    p = (np.indices(shape[:-1]).sum(axis=0).reshape(-1) % 2).astype(np.int64)
    p.setflags(write=False)
    return p
