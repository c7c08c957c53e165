"""Which observables module serves which theory: the measure CLI calls
``primaries(configs, theory)`` and ``derived(theory)`` through this registry."""
from __future__ import annotations

from types import ModuleType

import numpy as np

from . import phi4, u1, xy
from .derived import Derived

OBSERVABLES: dict[str, ModuleType] = {"phi4": phi4, "xy": xy, "u1": u1}


def module_for(theory) -> ModuleType:
    """The observables module of ``theory`` (by its ``name``)."""
    try:
        return OBSERVABLES[theory.name]
    except KeyError:
        raise ValueError(f"no observables for theory {theory.name!r}; known: {', '.join(OBSERVABLES)}") from None


def primaries(configs, theory) -> dict[str, np.ndarray]:
    """Per-configuration series {name: (N,) array} of the theory's primary observables."""
    return module_for(theory).primaries(configs, theory)


def derived(theory) -> list[Derived]:
    """The theory's derived quantities (functions of the primaries' means)."""
    return module_for(theory).derived(theory)
