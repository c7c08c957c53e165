"""python -m train: train a learned sampler, from the action (reverse KL) or on an ensemble (forward KL).

    python -m train --theory phi4 --L 8 --m2 -4 --g 8 --model realnvp --objective reverse-kl --steps 3000 --out runs/phi4_L8
    python -m train --theory u1 --L 8 --beta 2 --model gauge-flow --objective reverse-kl --out runs/u1_L8_b2
    python -m train --ensemble data/xy_L16_b1.h5 --model circular-flow --objective forward-kl --out runs/xy_L16
    python -m train --ensemble data/u1_L8_b1.h5 --model diffusion --steps 4000 --out runs/u1_L8_dm
    python -m train --out runs/phi4_L8 --resume --steps 6000
    torchrun --standalone --nproc-per-node 2 -m train --theory phi4 --L 16 ... --out runs/phi4_L16

Under torchrun (samplers/distributed.py) the ranks train one model with DistributedDataParallel
(gloo on CPU, nccl on CUDA): the global --batch-size is drawn as --shards shards (default: the number
of ranks), rank 0 alone prints and writes the run folder, which must be on a filesystem all ranks see.

Writes runs/NAME/: checkpoint.pt (model, theory, lattice, settings including the thread count,
optimizer/scheduler/RNG state), metrics.jsonl (one line per step) and summary.json. A thin layer over
samplers.training.train; bad input, a full disk or a diverged loss (NaN) end with one line on stderr and
exit 2; a run that finished but looks diverged gets a one-line warning (summary.json: "warning").
--resume takes the original command line again (flags must agree with the run; --steps sets the new total).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

from lattice.cli import (PARAM_FLAGS, UsageError, add_config_argument, add_theory_arguments, merge_config,
                         run_reporting_errors, theory_from_args)

DEFAULTS = {"objective": "reverse-kl", "steps": 1000, "batch_size": 256, "lr": 1e-3, "lr_schedule": "cosine",
            "grad_clip": 10.0, "checkpoint_every": 100, "seed": 0, "device": "cpu", "dtype": "float32",
            "eval_batch": 4096, "physics_weight": 0.0, "shards": None}
# diffusion models train by denoising score matching; their final evaluation needs exact PF-ODE densities
# (one full Jacobian per step and sample), so it is small by default and skipped above 128 degrees of freedom.
# Measured per sample (default 16 Heun steps, 2 busy cores): 0.8 s on phi4 8 x 8 (64 dof), 3.5 s on u1
# 8 x 8 (128 dof), so 32 samples take 0.5-2 min (256, the former default, took up to 15 min).
DIFFUSION_EVAL = {"max_dof": 128, "eval_batch": 32}
HYPER_FLAGS = ("n_layers", "hidden", "kernel_size")
RANK_EXIT_DELAY_S = 3.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(p)
    add_theory_arguments(p)
    p.add_argument("--ensemble", type=Path, help="HDF5 ensemble: the theory comes from it; needed by forward-kl")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=["realnvp", "circular-flow", "gauge-flow", "autoregressive", "diffusion"],
                   help="realnvp (phi4), circular-flow (xy), gauge-flow (u1; --model-opt prior=haar|plaquette, "
                        "prior_beta=B [beta]), autoregressive (phi4, xy; "
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
    t.add_argument("--shards", type=int, help="draw the global batch as S shards, shard r with generators seeded "
                   "by (seed, r); under torchrun each rank draws S / ranks of them, so the run's numbers do not depend "
                   "on the number of ranks dividing S [the number of ranks]")
    t.add_argument("--threads", type=int, help="torch CPU threads [torch's default]; stored in the run and "
                   "restored by --resume (the count changes the numbers)")
    r = p.add_argument_group("run")
    r.add_argument("--out", type=Path, help="run folder, e.g. runs/phi4_L8")
    r.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in --out exactly (--steps: the new total); the other flags may repeat "
                        "the run's original command line, a different value is an error")
    r.add_argument("--overwrite", action="store_true", default=None, help="replace an existing --out folder")
    r.add_argument("--quiet", action="store_true", default=None, help="no progress bar, no summary")
    return p


def hyperparameters(args) -> dict:
    """The model hyperparameters given on the command line (--n-layers, --hidden, --kernel-size, --model-opt)."""
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


def hyper_flag(key: str, value=None) -> str:
    """How the hyperparameter ``key`` (with ``value``) is given on the command line."""
    if key in HYPER_FLAGS:
        flag = "--" + key.replace("_", "-")
        return flag if value is None else f"{flag} {show(value)}"
    return f"--model-opt {key}" if value is None else f"--model-opt {key}={show(value)}"


def show(value) -> str:
    """A setting as a user types it: lists comma-separated (as --hidden), the rest as str."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def build_flow(model: str, theory, hyper: dict):
    """build_model, with hyperparameters the model does not know (or of the wrong type) as one-line
    UsageErrors that name the option and list the known ones."""
    from samplers.flows import build_model
    from samplers.flows.base import model_module

    module = model_module(model)
    known = [name for name in inspect.signature(module.build).parameters if name != "theory"]
    unknown = [key for key in hyper if key not in known]
    if unknown:
        raise UsageError(f"{hyper_flag(unknown[0])}: not an option of {model}; its options: {', '.join(known)}")
    try:
        return build_model(model, theory, **hyper)
    except TypeError as e:  # e.g. a string where a number belongs
        raise UsageError(f"{model} options {hyper}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    from samplers import distributed

    parser = build_parser()
    args = parser.parse_args(argv)
    rank = distributed.group_from_env().rank if "RANK" in os.environ else 0
    try:
        return run_reporting_errors(parser.prog if rank == 0 else f"{parser.prog} (rank {rank})",
                                    lambda: run_on_rank(args, parser, rank),
                                    "the run folder keeps the last checkpoint; continue with --resume",
                                    errors=(ValueError, OSError, RuntimeError))
    finally:
        distributed.leave()


def run_on_rank(args, parser, rank: int) -> int:
    """``run``; on a rank > 0 under torchrun, the errors every rank meets together (bad input and
    settings, a diverged loss) exit without a word, rank 0 says them once. Errors that
    may be a rank's own (OSError, RuntimeError) are said by that rank, tagged with its number."""
    from samplers.training import TrainingError

    if rank == 0:
        return run(args, parser)
    try:
        return run(args, parser)
    except (ValueError, TrainingError):  # UsageError included
        # torchrun stops the other ranks as soon as one exits: give rank 0 the time to say the error
        time.sleep(RANK_EXIT_DELAY_S)
        return 2


def run(args, parser) -> int:
    from samplers import distributed
    from samplers.training import train

    merge_config(args, parser, paths=("out", "ensemble"))
    group = distributed.join()
    if args.out is None:
        raise UsageError("--out is required (the run folder)")
    out = args.out
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    exists = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if args.resume and not exists:
        why = "empty folder" if out.exists() else "no such folder"
        raise UsageError(f"--resume: there is no run to continue in {out} ({why}); start it without --resume")
    if exists and not args.resume and not args.overwrite:
        raise UsageError(f"{out} exists; use --resume to continue it or --overwrite to replace it")

    if args.resume:
        setup = resume_setup(args, out, group)
        if setup is None:
            return 0
        flow, config, start = setup
    else:
        flow, config = new_setup(args, group)
        start = 0
    distributed.local_shards(config.shards, group)  # checked before rank 0 may replace the folder
    distributed.barrier(group)  # every rank has checked the folder before rank 0 changes it
    if exists and not args.resume and group.main:
        shutil.rmtree(out) if out.is_dir() else out.unlink()

    quiet = bool(args.quiet) or not group.main
    if not quiet:
        print_header(flow, config, out, start, group)
    summary = train(flow, config, out, resume=start > 0, progress=not quiet and sys.stderr.isatty())
    if summary is None:  # a rank > 0
        return 0
    if summary["warning"]:
        print(f"warning: {summary['warning']}", file=sys.stderr)
    if not quiet:
        print_summary(summary, out)
    return 0


def new_setup(args, group):
    """The model (initial parameters from --seed) and settings of a new run."""
    import torch

    from samplers.training import TrainConfig

    theory = theory_for(args)
    if args.model is None:
        raise UsageError("--model is required (realnvp, circular-flow, gauge-flow, autoregressive or diffusion)")
    defaults = dict(DEFAULTS)
    if args.model == "diffusion":
        defaults["objective"] = "dsm"
        small = theory.n_dof <= DIFFUSION_EVAL["max_dof"]
        defaults["eval_batch"] = DIFFUSION_EVAL["eval_batch"] if small else 0
    defaults["shards"] = group.world
    values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in defaults.items()}
    # the thread count changes the numbers (the order of reductions): stored, so --resume restores it
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    config = TrainConfig(model=args.model, hyper=hyperparameters(args), threads=threads,
                         ensemble=str(args.ensemble) if args.ensemble else None, **values)
    config.check()
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {config.device}: CUDA is not available on this machine")
    torch.manual_seed(config.seed)  # the initial parameters
    return build_flow(config.model, theory, config.hyper), config


def resume_setup(args, out: Path, group):
    """(model, settings, step) to continue the run in ``out``, or None if it is already trained to
    --steps. The command line may repeat the run's settings; a different value is a UsageError."""
    import torch

    from lattice import theory_from_attrs
    from samplers.training import CHECKPOINT, TrainConfig, read_checkpoint

    if out.is_dir() and not (out / CHECKPOINT).exists():
        raise UsageError(f"--resume: {out} holds no {CHECKPOINT} (stopped before its first checkpoint?); "
                         f"start it again with --overwrite")
    ckpt = read_checkpoint(out)
    theory = theory_from_attrs(ckpt["theory"])
    check_resume(args, ckpt, theory)
    stored = dict(ckpt["config"])
    if stored.get("threads") is None:  # a run from before the thread count was stored
        stored["threads"] = args.threads if args.threads is not None else torch.get_num_threads()
    config = TrainConfig(**{**stored, "steps": args.steps or stored["steps"]})
    config.check()
    if config.steps <= ckpt["step"]:
        if group.main:
            print(f"{out} is already trained for {ckpt['step']} steps (>= --steps {config.steps})")
        return None
    if ckpt.get("torch_version", torch.__version__) != torch.__version__:
        if group.main:
            print(f"note: {out} was trained with torch {ckpt['torch_version']}, this is {torch.__version__}: the "
                  f"continuation may differ in the last bits from an uninterrupted run", file=sys.stderr)
    return build_flow(ckpt["model"], theory, ckpt["hyper"]), config, ckpt["step"]


def print_header(flow, config, out: Path, start: int, group) -> None:
    """What is about to run: the training, then the final evaluation (for a diffusion model the
    slow part: exact PF-ODE densities), so that its cost is no surprise."""
    theory = flow.theory
    what = ", ".join(f"{k}={v}" for k, v in theory.params().items())
    steps = f"steps {start} -> {config.steps}" if start else f"{config.steps} steps"
    ranks = f" on {group.world} ranks" if group.world > 1 else ""
    shards = f" in {config.shards} shards" if config.shards > 1 else ""
    print(f"{'resuming' if start else 'training'} {flow.name} ({config.objective}) for {theory.name} ({what}) on "
          f"{'x'.join(map(str, theory.shape))}: {steps}, batch {config.batch_size}{shards}{ranks}, threads "
          f"{config.threads} -> {out}")
    if config.eval_batch and hasattr(flow, "dsm_loss"):
        print(f"then the final evaluation: {config.eval_batch} PF-ODE samples with exact densities "
              f"(a full {theory.n_dof} x {theory.n_dof} Jacobian per ODE step and sample; can take longer than "
              f"training; --eval-batch 0 skips it)")
    elif config.eval_batch:
        print(f"then the final evaluation: ESS/N and MH acceptance of {config.eval_batch} fresh model samples")


def print_summary(summary: dict, out: Path) -> None:
    print(f"final loss:     {summary['final_loss']:.4f}")
    if summary["eval_samples"]:
        print(f"ESS/N:          {summary['ess']:.3f}  ({summary['eval_samples']} fresh model samples reweighted "
              f"to exp(-S); the per-batch ESS of the progress bar and metrics.jsonl reads higher)")
        print(f"MH acceptance:  {summary['acceptance']:.3f}  (independence Metropolis-Hastings with this model)")
    else:
        print("ESS/N:          not evaluated (--eval-batch 0)")
    print(f"training time:  {summary['train_time_s']:.1f} s")
    if summary["eval_samples"]:
        print(f"eval time:      {summary['eval_time_s']:.1f} s")
    print(f"written:        {out}/checkpoint.pt, metrics.jsonl, summary.json")


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


# ------------------------------------------------------------------------------------ --resume checks
def conflict(args, given: str, stored: str) -> UsageError:
    """The one-line error for a flag whose value differs from the run's."""
    return UsageError(f"--resume: {given} conflicts with the run in {args.out}, which has {stored}; "
                      f"drop the flag or start a new run")


def check_resume(args, ckpt: dict, theory) -> None:
    """--resume accepts the run's original command line: every flag given must agree with what the
    checkpoint stores (theory, model, settings, hyperparameters, thread count); --steps may change
    the total. The first disagreement is a UsageError naming the flag and both values."""
    check_resume_theory(args, theory)
    if args.model is not None and args.model != ckpt["model"]:
        raise conflict(args, f"--model {args.model}", f"model = {ckpt['model']}")
    stored = ckpt["config"]
    fixed = [f.name for f in fields(sys.modules["samplers.training"].TrainConfig)
             if f.name not in ("steps", "model", "hyper", "ensemble")]
    for name in fixed:
        given = getattr(args, name, None)
        if given is not None and stored.get(name) is not None and given != stored[name]:
            raise conflict(args, f"--{name.replace('_', '-')} {given}", f"{name} = {stored[name]}")
    check_resume_ensemble(args, stored.get("ensemble"))
    check_resume_hyper(args, ckpt, theory)


def check_resume_theory(args, theory) -> None:
    """The theory flags given on --resume must describe the run's theory."""
    if args.theory is not None and args.theory != theory.name:
        raise conflict(args, f"--theory {args.theory}", f"theory = {theory.name}")
    if args.L is not None and args.L != theory.shape[0]:
        raise conflict(args, f"--L {args.L}", f"L = {theory.shape[0]}")
    if args.dim is not None and args.dim != len(theory.shape):
        raise conflict(args, f"--dim {args.dim}", f"dim = {len(theory.shape)}")
    given = {k: getattr(args, k) for k in PARAM_FLAGS if getattr(args, k) is not None}
    params = theory.params()
    for key, value in given.items():
        if key in params and value != params[key]:
            raise conflict(args, f"--{key} {value}", f"{key} = {params[key]}")
    if set(given) - set(params):  # the other parameterization (phi4: kappa, lam vs m2, g): compare theories
        if args.theory is None or args.L is None:
            raise UsageError(f"--resume: --{' --'.join(sorted(set(given) - set(params)))} needs --theory and --L "
                             f"to be compared with the run in {args.out} ({params})")
        if theory_from_args(args) != theory:
            raise conflict(args, " ".join(f"--{k} {v}" for k, v in given.items()),
                           ", ".join(f"{k} = {v}" for k, v in params.items()))


def check_resume_ensemble(args, stored: str | None) -> None:
    """--ensemble on --resume must name the run's ensemble file."""
    if args.ensemble is None:
        return
    if stored is None:
        raise conflict(args, f"--ensemble {args.ensemble}", "trained without an ensemble")
    same = Path(args.ensemble).resolve() == Path(stored).resolve()
    if not same and Path(args.ensemble).exists() and Path(stored).exists():
        same = Path(args.ensemble).samefile(stored)
    if not same:
        raise conflict(args, f"--ensemble {args.ensemble}", f"ensemble = {stored}")


def check_resume_hyper(args, ckpt: dict, theory) -> None:
    """Hyperparameters given on --resume must build the run's architecture: the model is rebuilt
    from the stored ones overridden by the given ones, and must store the same hyperparameters
    (so that e.g. --hidden 8 matches a stored [8], and --n-layers is checked where it only
    expands hidden)."""
    import torch

    given = hyperparameters(args)
    if not given:
        return
    stored = ckpt["hyper"]
    rng = torch.random.get_rng_state()  # building draws initial parameters: leave the global RNG as it was
    try:
        rebuilt = build_flow(ckpt["model"], theory, {**stored, **given}).hyper
    except (UsageError, ValueError):
        # the given flags cannot even build beside the stored ones (e.g. prior=haar with the stored
        # prior_beta): name the flag that differs from the run rather than the build's own complaint
        for key in given:
            if key in stored and show(given[key]) != show(stored[key]):
                raise conflict(args, hyper_flag(key, given[key]), f"{key} = {show(stored[key])}") from None
        raise
    finally:
        torch.random.set_rng_state(rng)
    for key in stored:
        if rebuilt.get(key) == stored[key]:
            continue
        if key in given and show(given[key]) != show(stored[key]):  # the flag itself differs
            raise conflict(args, hyper_flag(key, given[key]), f"{key} = {show(stored[key])}")
        # else a flag the model does not store changed it (e.g. --n-layers, which repeats hidden[0])
        culprits = [k for k in given if k not in stored] or list(given)
        flags = " ".join(hyper_flag(k, given[k]) for k in culprits)
        raise conflict(args, f"{flags} (giving {key} = {show(rebuilt.get(key))})", f"{key} = {show(stored[key])}")


if __name__ == "__main__":
    sys.exit(main())
