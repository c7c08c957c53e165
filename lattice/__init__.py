"""Lattice geometry and theories: actions, forces and local updates (Numba), and the same
actions in PyTorch. Conventions: ../shared/PHYSICS.md and docs/design.md."""
from __future__ import annotations

import math
import os

# Idle OpenMP threads sleep instead of spinning: Numba's parallel kernels and torch (learned proposals,
# hybrid chains) share the cores, and spinning Numba workers slowed torch 30-fold in a hybrid chain.
# Read when the OpenMP runtime starts, i.e. before the first parallel kernel; export it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .phi4 import Phi4  # noqa: E402
from .u1 import U1  # noqa: E402
from .xy import XY  # noqa: E402

__version__ = "0.1.0"

THEORIES = {"phi4": Phi4, "xy": XY, "u1": U1}

# the parameters each theory (and parameterization) takes
PARAMETERS = {"phi4": (("kappa", "lam"), ("m2", "g")), "xy": (("beta",),), "u1": (("beta",),)}


def make_theory(name: str, shape: tuple[int, ...], **params):
    """The theory ``name`` on a lattice of ``shape``; ValueError with a one-line reason if the
    name, the shape or the parameters are not valid."""
    if name not in THEORIES:
        raise ValueError(f"unknown theory {name!r}; choose from {', '.join(THEORIES)}")
    given = {k for k, v in params.items() if v is not None}
    allowed = set().union(*PARAMETERS[name])
    extra = given - allowed
    if extra:
        raise ValueError(f"theory {name} takes no parameter {', '.join(sorted(extra))} "
                         f"(it takes {' or '.join('(' + ', '.join(p) + ')' for p in PARAMETERS[name])})")
    sets = PARAMETERS[name]
    if len([p for p in sets if set(p) & given]) > 1:
        raise ValueError(f"theory {name}: give one parameterization, "
                         f"{' or '.join('(' + ', '.join(p) + ')' for p in sets)}, not both "
                         f"(got {', '.join(sorted(given))})")
    if not any(given == set(p) for p in sets):
        raise ValueError(f"theory {name} needs parameters "
                         f"{' or '.join('(' + ', '.join(p) + ')' for p in sets)}")
    values = {}
    for k in given:
        try:
            values[k] = float(params[k])
        except (TypeError, ValueError):
            raise ValueError(f"theory {name}: {k} must be a number, got {params[k]!r}") from None
        if not math.isfinite(values[k]):
            raise ValueError(f"theory {name}: {k} must be finite, got {values[k]}")
    check_shape(shape)
    return THEORIES[name](tuple(shape), **values)


MAX_SITES = 1 << 26  # 67M sites = 512 MiB per float64 configuration


def check_shape(shape: tuple[int, ...]) -> None:
    """A lattice whose configuration fits in memory: every extent >= 1 and at most MAX_SITES sites."""
    if not shape or any(int(n) < 1 for n in shape):
        raise ValueError(f"lattice extents must be >= 1, got {'x'.join(map(str, shape))}")
    sites = math.prod(int(n) for n in shape)
    if sites > MAX_SITES:
        raise ValueError(f"lattice {'x'.join(map(str, shape))} has {sites:.3g} sites; at most {MAX_SITES:.3g} "
                         f"({8 * MAX_SITES >> 20} MiB per configuration) are supported")


def theory_from_attrs(attrs: dict):
    """The theory an ensemble file's attributes describe."""
    return make_theory(attrs["theory"], tuple(attrs["shape"]), **attrs["params"])
