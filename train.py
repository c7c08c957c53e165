"""python -m train: train a learned sampler, from the action (reverse KL) or on an ensemble (forward KL).

    python -m train --theory phi4 --L 8 --m2 -4 --g 8 --model realnvp --objective reverse-kl --steps 3000 --out runs/phi4_L8
    python -m train --theory u1 --L 8 --beta 2 --model gauge-flow --objective reverse-kl --out runs/u1_L8_b2
    python -m train --ensemble data/xy_L16_b1.h5 --model circular-flow --objective forward-kl --out runs/xy_L16
    python -m train --ensemble data/u1_L8_b1.h5 --model diffusion --steps 4000 --out runs/u1_L8_dm
    python -m train --out runs/phi4_L8 --resume --steps 6000

Writes runs/NAME/: checkpoint.pt (model, theory, lattice, settings, optimizer/scheduler/RNG state),
metrics.jsonl (one line per step) and summary.json. A thin layer over samplers.training.train;
bad input ends with one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from lattice.cli import (UsageError, add_config_argument, add_theory_arguments, merge_config, run_reporting_errors,
                         theory_from_args)

DEFAULTS = {"objective": "reverse-kl", "steps": 1000, "batch_size": 256, "lr": 1e-3, "lr_schedule": "cosine",
            "grad_clip": 10.0, "checkpoint_every": 100, "seed": 0, "device": "cpu", "dtype": "float32",
            "eval_batch": 4096, "physics_weight": 0.0}
# diffusion models train by denoising score matching; their final evaluation needs exact PF-ODE densities
# (one full Jacobian per step and sample), so it is small by default and skipped above 128 degrees of freedom
DIFFUSION_EVAL = {"max_dof": 128, "eval_batch": 256}
HYPER_FLAGS = ("n_layers", "hidden", "kernel_size")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    add_theory_arguments(p)
    p.add_argument("--ensemble", type=Path, help="HDF5 ensemble: the theory comes from it; needed by forward-kl")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=["realnvp", "circular-flow", "gauge-flow", "autoregressive", "diffusion"],
                   help="realnvp (phi4), circular-flow (xy), gauge-flow (u1), autoregressive (phi4, xy; "
                        "--model-opt arch=pixelcnn|made, n_components=K), diffusion (phi4, xy, u1; trained by dsm "
                        "on --ensemble; --model-opt schedule=ve|geometric, sigma=25, n_steps=32, integrator=euler|heun)")
    m.add_argument("--n-layers", type=int, help="coupling layers [model default]")
    m.add_argument("--hidden", help="hidden channels of the conditioner CNN, e.g. 16,16 [model default]")
    m.add_argument("--kernel-size", type=int, help="conditioner kernel size [3]")
    m.add_argument("--model-opt", action="append", default=None, metavar="KEY=VALUE",
                   help="a model-specific hyperparameter (repeatable), e.g. n_bins=8")
    t = p.add_argument_group("training")
    t.add_argument("--objective", choices=["reverse-kl", "forward-kl", "reverse-kl-score", "dsm"],
                   help=f"reverse-kl-score: score-function gradient (automatic for autoregressive); dsm: denoising "
                        f"score matching (diffusion) [{DEFAULTS['objective']}; dsm for diffusion]")
    t.add_argument("--physics-weight", type=float, help="dsm: weight of the known score -grad S at the smallest "
                   f"noise level, a physics-informed term [{DEFAULTS['physics_weight']}]")
    t.add_argument("--steps", type=int, help=f"optimizer steps in total [{DEFAULTS['steps']}]")
    t.add_argument("--batch-size", type=int, help=f"[{DEFAULTS['batch_size']}]")
    t.add_argument("--lr", type=float, help=f"Adam learning rate [{DEFAULTS['lr']}]")
    t.add_argument("--lr-schedule", choices=["cosine", "constant"], help=f"[{DEFAULTS['lr_schedule']}]")
    t.add_argument("--grad-clip", type=float, help=f"max gradient norm, 0: off [{DEFAULTS['grad_clip']}]")
    t.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints [{DEFAULTS['checkpoint_every']}]")
    t.add_argument("--eval-batch", type=int, help=f"model samples for the final ESS/acceptance, 0: none "
                   f"[{DEFAULTS['eval_batch']}; diffusion: {DIFFUSION_EVAL['eval_batch']}, none above "
                   f"{DIFFUSION_EVAL['max_dof']} degrees of freedom]")
    t.add_argument("--seed", type=int, help=f"[{DEFAULTS['seed']}]")
    t.add_argument("--device", help="cpu, cuda, cuda:1, ... [cpu]")
    t.add_argument("--dtype", choices=["float32", "float64"], help=f"[{DEFAULTS['dtype']}]")
    t.add_argument("--threads", type=int, help="torch CPU threads [torch's default]")
    r = p.add_argument_group("run")
    r.add_argument("--out", type=Path, help="run folder, e.g. runs/phi4_L8")
    r.add_argument("--resume", action="store_true", default=None, help="continue the run in --out")
    r.add_argument("--overwrite", action="store_true", default=None, help="replace an existing --out folder")
    r.add_argument("--quiet", action="store_true", default=None, help="no progress bar, no summary")
    return p


def hyperparameters(args) -> dict:
    hyper = {}
    if args.n_layers is not None:
        hyper["n_layers"] = args.n_layers
    if args.hidden is not None:
        try:
            hyper["hidden"] = tuple(int(h) for h in str(args.hidden).split(",") if h.strip())
        except ValueError:
            raise UsageError(f"--hidden takes comma-separated integers, got {args.hidden!r}") from None
    if args.kernel_size is not None:
        hyper["kernel_size"] = args.kernel_size
    for opt in args.model_opt or []:
        key, sep, value = opt.partition("=")
        if not sep:
            raise UsageError(f"--model-opt takes KEY=VALUE, got {opt!r}")
        try:
            hyper[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            hyper[key.strip()] = value
    return hyper


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(parser.prog, lambda: run(args, parser),
                                "the run folder keeps the last checkpoint; continue with --resume",
                                errors=(ValueError, OSError, RuntimeError))


def run(args, parser) -> int:
    import torch

    from lattice import theory_from_attrs
    from samplers.flows import build_model
    from samplers.training import TrainConfig, read_checkpoint, train

    merge_config(args, parser, paths=("out", "ensemble"))
    if args.out is None:
        raise UsageError("--out is required (the run folder)")
    out = args.out
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    exists = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if exists and not args.resume and not args.overwrite:
        raise UsageError(f"{out} exists; use --resume to continue it or --overwrite to replace it")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.resume and exists:
        ckpt = read_checkpoint(out)
        theory = theory_from_attrs(ckpt["theory"])
        check_resume(args, ckpt, theory)
        config = TrainConfig(**{**ckpt["config"], "steps": args.steps or ckpt["config"]["steps"]})
        if config.steps <= ckpt["step"]:
            print(f"{out} is already trained for {ckpt['step']} steps (>= --steps {config.steps})")
            return 0
        flow = build_model(ckpt["model"], theory, **ckpt["hyper"])
        resume = True
    else:
        theory = theory_for(args)
        if args.model is None:
            raise UsageError("--model is required (realnvp, circular-flow, gauge-flow, autoregressive or diffusion)")
        defaults = dict(DEFAULTS)
        if args.model == "diffusion":
            defaults["objective"] = "dsm"
            small = theory.n_dof <= DIFFUSION_EVAL["max_dof"]
            defaults["eval_batch"] = DIFFUSION_EVAL["eval_batch"] if small else 0
        values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
        config = TrainConfig(model=args.model, hyper=hyperparameters(args),
                             ensemble=str(args.ensemble) if args.ensemble else None, **values)
        config.check()
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {config.device}: CUDA is not available on this machine")
        torch.manual_seed(config.seed)  # the initial parameters
        flow = build_model(config.model, theory, **config.hyper)
        if exists:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        resume = False

    quiet = bool(args.quiet)
    if not quiet:
        what = ", ".join(f"{k}={v}" for k, v in theory.params().items())
        print(f"training {flow.name} ({config.objective}) for {theory.name} ({what}) on "
              f"{'x'.join(map(str, theory.shape))}: {config.steps} steps, batch {config.batch_size} -> {out}")
    summary = train(flow, config, out, resume=resume, progress=not quiet and sys.stderr.isatty())
    if not quiet:
        print(f"final loss:     {summary['final_loss']:.4f}")
        if summary["eval_samples"]:
            print(f"ESS/N:          {summary['ess']:.3f}  ({summary['eval_samples']} model samples reweighted to "
                  f"exp(-S))")
            print(f"MH acceptance:  {summary['acceptance']:.3f}  (independence Metropolis-Hastings with this model)")
        else:
            print("ESS/N:          not evaluated (--eval-batch 0)")
        print(f"training time:  {summary['train_time_s']:.1f} s")
        print(f"written:        {out}/checkpoint.pt, metrics.jsonl, summary.json")
    return 0


def theory_for(args):
    """The theory from the flags, or from the ensemble (flags, if given, must agree with it)."""
    from lattice import theory_from_attrs
    from samplers.ensemble import read_ensemble

    if args.ensemble is None:
        return theory_from_args(args)
    ens_theory = theory_from_attrs(read_ensemble(args.ensemble, stop=0).attrs)
    if args.theory is not None and theory_from_args(args) != ens_theory:
        raise UsageError(f"--ensemble {args.ensemble} holds {ens_theory.name} {ens_theory.params()} on "
                         f"{'x'.join(map(str, ens_theory.shape))}, not the theory given by the flags")
    return ens_theory


def check_resume(args, ckpt: dict, theory) -> None:
    """--resume continues with the checkpoint's theory, model and settings: refuse contradictions."""
    if args.theory is not None or args.L is not None:
        given = theory_from_args(args) if args.theory is not None else None
        if args.L is not None and args.L != theory.shape[0]:
            raise UsageError(f"--resume: {args.out} was trained on L = {theory.shape[0]}, not {args.L}")
        if given is not None and given != theory:
            raise UsageError(f"--resume: {args.out} was trained for {theory.name} {theory.params()}, "
                             f"not {given.name} {given.params()}")
    if args.model is not None and args.model != ckpt["model"]:
        raise UsageError(f"--resume: {args.out} holds a {ckpt['model']} model, not {args.model}")
    fixed = [f.name for f in fields(sys.modules["samplers.training"].TrainConfig)
             if f.name not in ("steps", "model", "hyper", "ensemble")]
    for name in fixed + list(HYPER_FLAGS):
        if getattr(args, name, None) is not None:
            raise UsageError(f"--resume continues with the settings stored in {args.out}; "
                             f"drop --{name.replace('_', '-')}")


if __name__ == "__main__":
    sys.exit(main())
