"""python -m pipeline: the learned-sampler workflow end to end on a small default, in a few minutes.

    1. python -m generate --algorithm hmc ...          -> DIR/hmc.h5          the HMC baseline
    2. python -m train --model gauge-flow ...          -> DIR/model/          reverse KL from the action
    3. python -m generate --algorithm learned-mh ...   -> DIR/learned_mh.h5   exact chain with the model
    4. python -m observables compare DIR/hmc.h5 DIR/learned_mh.h5

Each step runs the command a user would type (printed before it runs), so the pipeline doubles as a
walkthrough. Default: 2D U(1) gauge theory, L = 8, beta = 2, gauge-equivariant flow.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import generate
import train
from lattice.cli import HelpFormatter
from observables.__main__ import main as observables_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--dir", type=Path, default=Path("runs/pipeline"), help="where the files go")
    p.add_argument("--L", type=int, default=8, help="lattice extent (a multiple of 4)")
    p.add_argument("--beta", type=float, default=2.0, help="U(1) coupling")
    p.add_argument("--n-configs", type=int, default=5000, help="configurations per chain")
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    d = args.dir
    theory = ["--theory", "u1", "--L", str(args.L), "--beta", str(args.beta)]
    again = ["--overwrite"] if args.overwrite else []
    steps = [
        ("generate", generate.main, [*theory, "--algorithm", "hmc", "--n-configs", str(args.n_configs),
                                     "--out", str(d / "hmc.h5"), *again]),
        ("train", train.main, [*theory, "--model", "gauge-flow", "--n-layers", "16", "--hidden", "8",
                               "--steps", str(args.steps), "--batch-size", "64", "--lr", "0.01",
                               "--out", str(d / "model"), *again]),
        ("generate", generate.main, ["--algorithm", "learned-mh", "--proposal", str(d / "model"),
                                     "--n-configs", str(args.n_configs), "--out", str(d / "learned_mh.h5"), *again]),
        ("observables", observables_main, ["compare", str(d / "hmc.h5"), str(d / "learned_mh.h5")]),
    ]
    for module, run, argv_ in steps:
        print(f"\n$ python -m {module} {shlex.join(argv_)}", flush=True)
        code = run(argv_)
        if code != 0:
            print(f"python -m pipeline: step 'python -m {module}' failed (exit {code})", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
