"""Derived quantities: functions of the means of primary observables (chi, U_L, Creutz ratios, ...).

A theory's observables module returns per-configuration series of primary observables
(``primaries(configs, theory) -> {name: (N,) array}``) and lists its derived quantities as
``Derived`` records; the statistics module estimates each with Gamma-method error propagation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Derived:
    """name = f(<inputs[0]>, <inputs[1]>, ...), f a smooth function of the primaries' means."""

    name: str
    inputs: tuple[str, ...]
    f: Callable[..., float]
    doc: str = ""
