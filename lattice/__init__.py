"""Lattice geometry and theories: actions, forces and local updates (Numba), and the same
actions in PyTorch. Conventions: ../shared/PHYSICS.md and docs/design.md."""
from __future__ import annotations

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
    if not any(given == set(p) for p in PARAMETERS[name]):
        raise ValueError(f"theory {name} needs parameters "
                         f"{' or '.join('(' + ', '.join(p) + ')' for p in PARAMETERS[name])}")
    return THEORIES[name](tuple(shape), **{k: float(params[k]) for k in given})


def theory_from_attrs(attrs: dict):
    """The theory an ensemble file's attributes describe."""
    return make_theory(attrs["theory"], tuple(attrs["shape"]), **attrs["params"])
