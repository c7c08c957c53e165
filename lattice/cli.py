"""Command-line pieces shared by ``python -m generate`` and ``python -m train``: the theory flags,
the TOML config file, and the one-line usage error."""
from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Callable

from . import make_theory

PARAM_FLAGS = ("kappa", "lam", "m2", "g", "beta")


class UsageError(ValueError):
    """Bad input, reported as one line and exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where the help text does not state its default as "[X]" and
    the flag has a real default (not None / False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or text.rstrip().endswith("]"):
            return text
        return super()._get_help_string(action)


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file with any of these options (keys as the flags, "
                   "with - or _); flags given on the command line take precedence")


def add_theory_arguments(p: argparse.ArgumentParser, default_dim: int = 2) -> None:
    t = p.add_argument_group("theory (conventions: docs/physics.md)")
    t.add_argument("--theory", choices=["phi4", "xy", "u1"], help="which theory")
    t.add_argument("--L", type=int, help="lattice extent in every direction")
    t.add_argument("--dim", type=int, help=f"phi4 only: number of dimensions [{default_dim}]")
    t.add_argument("--kappa", type=float, help="phi4 hopping parameter (with --lam)")
    t.add_argument("--lam", type=float, help="phi4 quartic coupling lambda, hopping form (with --kappa)")
    t.add_argument("--m2", type=float, help="phi4 mass^2, flow-paper form (with --g)")
    t.add_argument("--g", type=float, help="phi4 quartic coupling, flow-paper form (with --m2)")
    t.add_argument("--beta", type=float, help="xy / u1 coupling")


def theory_from_args(args: argparse.Namespace):
    """The theory the flags describe (UsageError / ValueError with one line otherwise)."""
    if args.theory is None:
        raise UsageError("--theory is required (phi4, xy or u1)")
    if args.L is None:
        raise UsageError("--L is required")
    dim = 2 if args.dim is None else args.dim
    if args.theory != "phi4" and dim != 2:
        raise UsageError(f"--dim applies to phi4 only ({args.theory} is two-dimensional)")
    if dim < 1:
        raise UsageError(f"--dim must be >= 1, got {dim}")
    return make_theory(args.theory, (args.L,) * dim, **{k: getattr(args, k) for k in PARAM_FLAGS})


def theory_identity(theory) -> dict:
    """What identifies a theory in files and checkpoints."""
    return {"theory": theory.name, "parameterization": theory.parameterization, "params": theory.params(),
            "shape": list(theory.shape)}


def merge_config(args: argparse.Namespace, parser: argparse.ArgumentParser, paths: tuple[str, ...] = ()) -> None:
    """Fill options not given on the command line from the TOML file ``args.config``; ``paths``
    names options whose values are file paths."""
    if args.config is None:
        return
    try:
        with open(args.config, "rb") as fh:
            table = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(f"config file {args.config} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"config file {args.config} is not valid TOML: {e}") from None
    actions = {a.dest: a for a in parser._actions}
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in actions or dest == "config":
            raise UsageError(f"config file {args.config}: unknown option {key!r}")
        if getattr(args, dest) == actions[dest].default:  # not given on the command line
            value = config_value(actions[dest], value, f"config file {args.config}: {key}")
            setattr(args, dest, Path(value) if dest in paths else value)


def config_value(action: argparse.Action, value, where: str):
    """A TOML value checked against the flag it sets: the type the flag's parser would give
    (an integer for int flags, a number for float flags, a string for paths and names, true /
    false for switches, a list of such values for repeatable flags), and one of its choices."""
    if action.nargs == 0:  # a switch: --resume, --no-tune
        if not isinstance(value, bool):
            raise UsageError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"{where} must be a list of strings, got {value!r}")
        return [_scalar_value(action, v, where) for v in value]
    return _scalar_value(action, value, where)


def _scalar_value(action: argparse.Action, value, where: str):
    """One value of a flag that takes an argument (``config_value``)."""
    def fail(expected: str):
        raise UsageError(f"{where} must be {expected}, got {value!r}")

    if isinstance(value, (bool, list, dict)):
        fail(_expected(action))
    if action.type is int and not isinstance(value, int):
        fail("an integer")
    if action.type is float:
        if not isinstance(value, (int, float)):
            fail("a number")
        value = float(value)
    if action.type in (None, str, Path) and not isinstance(value, str):
        fail("a string")
    if action.type not in (None, str, Path, int, float):
        if not isinstance(value, str):
            fail(_expected(action))
        try:
            value = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"{where}: {e}") from None
    if action.choices is not None and value not in action.choices:
        fail(f"one of {', '.join(map(str, action.choices))}")
    return value


def _expected(action: argparse.Action) -> str:
    return {int: "an integer", float: "a number"}.get(action.type, "a string")


def run_reporting_errors(prog: str, fn: Callable[[], int], interrupted: str,
                         errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> int:
    """Run a CLI's body: bad input (``errors``) becomes one line on stderr and exit status 2,
    Ctrl-C a note on what was kept (``interrupted``) and exit status 130; never a traceback."""
    try:
        return fn()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        return 130
    except errors as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
