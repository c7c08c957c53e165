"""The `latticeml` console command: one entry point for the four CLIs.

    latticeml generate ...      = python -m generate ...
    latticeml train ...         = python -m train ...
    latticeml observables ...   = python -m observables ...
    latticeml pipeline ...      = python -m pipeline ...
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {"generate": "generate", "train": "train", "observables": "observables.__main__", "pipeline": "pipeline"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print(__doc__.strip().splitlines()[0] + "\n\nusage: latticeml {" + ",".join(COMMANDS) + "} ...\n"
              + "\n".join(__doc__.strip().splitlines()[2:]), file=sys.stderr if argv and argv[0] not in
              ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]])
    sys.argv = [f"latticeml {argv[0]}", *argv[1:]]
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
