"""python -m generate: run a Markov chain and write its ensemble to an HDF5 file.

    python -m generate --theory phi4 --L 32 --kappa 0.21 --lam 0.022 --algorithm hmc \
        --n-configs 5120 --every 10 --seed 1 --out data/phi4_L32_k0.21.h5
    python -m generate --config configs/xy_L16_b1.1.toml
    python -m generate --out data/phi4_L32_k0.21.h5 --resume --n-configs 10240
    python -m generate --theory u1 --L 16 --beta 4 --algorithm overrelaxation --or-per-sweep 4 --n-configs 5000 \
        --out data/u1_L16_b4_or.h5
    python -m generate --algorithm learned-mh --proposal runs/u1_L8_b2 --n-configs 20000 --out data/u1_flow.h5
    python -m generate --theory u1 --L 8 --beta 2 --chains 16 --n-configs 2000 --out data/u1_L8.h5   # -> u1_L8.chain{0..15}.h5
    python -m generate ... --chains 16 --workers 4                      # the same files, 4 worker processes
    mpiexec -n 5 python -m mpi4py.futures -m generate ... --chains 16 --executor mpi   # 4 MPI worker ranks

A thin layer over samplers.chain.run_chain; bad input ends with one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import h5py

from lattice.cli import (HelpFormatter, UsageError, add_config_argument, add_theory_arguments, merge_config,
                         run_reporting_errors, theory_from_args, theory_identity)

DEFAULTS = {"dim": 2, "algorithm": "hmc", "every": 1, "n_therm": 500, "seed": 0, "init": "hot",
            "step_size": 0.1, "traj_length": 1.0, "jitter": 0.2, "integrator": "leapfrog", "delta": 0.5,
            "proposal_batch": 256, "device": "cpu", "proposal_dtype": "float64", "symmetrize": "none",
            "local": "hmc", "local_per_proposal": 1, "clusters_per_sweep": 1, "metropolis_sweeps": 1,
            "chains": 1, "first_chain": 0, "workers": 1, "executor": "local"}
MODEL_ALGORITHMS = ("learned-mh", "hybrid", "model-samples")  # those that draw from a trained model
# what must agree between a file and a --resume request
IDENTITY = ("theory", "L", "dim", "kappa", "lam", "m2", "g", "beta", "algorithm", "seed", "every", "init")
# sampler settings: a resumed chain continues with the file's own
SAMPLER_FLAGS = ("step_size", "traj_length", "n_steps", "jitter", "integrator", "delta", "target_accept", "no_tune",
                 "proposal", "proposal_batch", "device", "proposal_dtype", "symmetrize", "local", "local_per_proposal",
                 "clusters_per_sweep", "metropolis_sweeps")
SAMPLER_FLAGS += ("model_sampler", "diffusion_steps", "ode_integrator", "corrector_steps", "target_beta",
                  "target_kappa")  # diffusion proposals (no DEFAULTS: the model's own unless given)
SAMPLER_FLAGS += ("or_per_sweep", "or_with")  # heatbath / overrelaxation (no DEFAULTS: heatbath refuses them)
TEMPERING_FLAGS = ("ladder", "replica_algorithm", "swap_every", "store_replicas")
SAMPLER_FLAGS += TEMPERING_FLAGS  # tempering (make_tempering_sampler)
SAMPLER_FLAGS += ("winding_every", "winding_size")  # hmc + winding moves (u1; no DEFAULTS: absent = plain hmc)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m generate", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    add_config_argument(p)
    add_theory_arguments(p, DEFAULTS["dim"])
    a = p.add_argument_group("algorithm")
    a.add_argument("--algorithm", choices=["metropolis", "hmc", "wolff", "heatbath", "overrelaxation",
                                           "plaquette-mh", "tempering", *MODEL_ALGORITHMS],
                   help="Markov-chain update; heatbath: exact von Mises heat-bath sweeps (xy, u1); overrelaxation: "
                   "a heat-bath (or Metropolis) sweep, then --or-per-sweep over-relaxation sweeps (xy, u1); "
                   "wolff: single-cluster updates (xy: Wolff 1989; phi4: Brower-Tamayo embedded Ising signs) with "
                   "Metropolis sweeps; plaquette-mh (u1): independence Metropolis-Hastings proposing V - 1 "
                   "independent von Mises plaquettes (exact; docs/plaquette_sampler.md); "
                   "learned-mh: independence Metropolis-Hastings with a trained model "
                   "as proposal (exact); hybrid: local updates alternating with learned-mh steps (exact); "
                   "model-samples: the model's raw samples with log q and log p, for reweighting (not a chain "
                   f"of the target) [{DEFAULTS['algorithm']}]")
    a.add_argument("--step-size", type=float, help=f"hmc: initial (or, with --no-tune, fixed) step size "
                   f"[{DEFAULTS['step_size']}]")
    a.add_argument("--traj-length", type=float, help=f"hmc: trajectory length [{DEFAULTS['traj_length']}]")
    a.add_argument("--n-steps", type=int, help="hmc: fixed number of steps per trajectory (implies --no-tune; "
                   "step size = traj-length / n-steps)")
    a.add_argument("--jitter", type=float, help="hmc: each trajectory's step size is eps (1 + jitter (2u - 1)), "
                   f"u uniform, so no mode stays frozen [{DEFAULTS['jitter']}]")
    a.add_argument("--integrator", choices=["leapfrog", "omelyan"], help=f"hmc integrator [{DEFAULTS['integrator']}]")
    a.add_argument("--delta", type=float, help="metropolis, wolff: initial (or fixed) proposal width "
                   f"[{DEFAULTS['delta']}]")
    a.add_argument("--target-accept", type=float, help="acceptance the tuning aims at "
                   "[hmc 0.8, metropolis and wolff 0.5]")
    a.add_argument("--no-tune", action="store_true", default=None, help="keep the step size / width fixed")
    w = p.add_argument_group("wolff cluster updates", "one update = M Metropolis sweeps, then K single-cluster "
                             "updates; tau_int is in updates, one update ~ M + <cluster_fraction> sweeps "
                             "(cluster_fraction = cluster sites / V, stored per configuration)")
    w.add_argument("--clusters-per-sweep", type=int, help="wolff: K, single-cluster updates per update "
                   f"[{DEFAULTS['clusters_per_sweep']}]")
    w.add_argument("--metropolis-sweeps", type=int, help="wolff: M, Metropolis sweeps per update (width tuned as "
                   f"metropolis); 0 = pure clusters (xy only: phi4 clusters flip only signs) "
                   f"[{DEFAULTS['metropolis_sweeps']}]")
    o = p.add_argument_group("heatbath / overrelaxation (xy, u1; even L)", "heatbath: one update = one checkerboard "
                             "sweep drawing every spin / link from its von Mises conditional (Best-Fisher, exact). "
                             "overrelaxation: one update = one heat-bath sweep (or, with --or-with metropolis, one "
                             "Metropolis sweep tuned by --delta / --target-accept as metropolis) followed by K "
                             "over-relaxation sweeps theta -> 2 arg(h) - theta (reflection about the local field / "
                             "staple angle, S unchanged); tau_int is in updates of 1 + K sweeps")
    o.add_argument("--or-per-sweep", type=int, help="overrelaxation: K, over-relaxation sweeps after each heat-bath "
                   "or Metropolis sweep (0 = none) [3]")
    o.add_argument("--or-with", choices=["heatbath", "metropolis"], help="overrelaxation: the ergodic sweep the "
                   "over-relaxation sweeps follow [heatbath]")
    m = p.add_argument_group("learned proposals (learned-mh, hybrid, model-samples)")
    m.add_argument("--proposal", type=Path, help="run folder of a model trained by python -m train; the theory "
                   "flags default to the model's")
    m.add_argument("--proposal-batch", type=int, help="proposals drawn per chain and model pass (a chain set "
                   f"draws the batches of all its chains in one pass) [{DEFAULTS['proposal_batch']}]")
    m.add_argument("--device", help=f"torch device of the model, e.g. cuda [{DEFAULTS['device']}]")
    m.add_argument("--threads", type=int, help="torch CPU threads of the model [torch's default]")
    m.add_argument("--proposal-dtype", choices=["float64", "float32"], help="precision of the model's sampling "
                   "and log q: float64 is exact; float32 is faster and only approximately exact "
                   f"[{DEFAULTS['proposal_dtype']}]")
    m.add_argument("--symmetrize", choices=["none", "z2"], help="phi4: propose from the exact mixture "
                   f"(q(x) + q(-x)) / 2, restoring phi -> -phi symmetry [{DEFAULTS['symmetrize']}]")
    m.add_argument("--local", choices=["hmc", "metropolis"], help="hybrid: the local update (its flags as "
                   f"above) [{DEFAULTS['local']}]")
    m.add_argument("--local-per-proposal", "--hmc-per-proposal", dest="local_per_proposal", type=int,
                   help=f"hybrid: local updates before each learned-MH step [{DEFAULTS['local_per_proposal']}]")
    d = p.add_argument_group("diffusion-model proposals")
    d.add_argument("--model-sampler", choices=["ode", "sde"], help="ode: probability-flow ODE with the exact "
                   "log q of the discrete map (needed by learned-mh, hybrid); sde: reverse SDE, no density "
                   "(model-samples only) [ode]")
    d.add_argument("--diffusion-steps", type=int, help="integration steps from t = 1 to t_min [the model's]")
    d.add_argument("--ode-integrator", choices=["euler", "heun"], help="fixed-step PF-ODE scheme [the model's]")
    d.add_argument("--corrector-steps", type=int, help="sde: Langevin corrector steps after each predictor step [0]")
    d.add_argument("--target-beta", type=float, help="u1, xy: generate at this beta with a model trained at "
                   "another (score rescaled by beta / beta_0; learned-mh stays exact)")
    d.add_argument("--target-kappa", type=float, help="phi4 (hopping parameters): generate at this kappa (exact "
                   "t -> 0 score shift; learned-mh stays exact)")
    t = p.add_argument_group("tempering (parallel tempering; docs/tempering.md)", "one update = one local update "
                             "of every replica (each at its own coupling, with its own --replica-algorithm sampler, "
                             "tuned during thermalization), then swap attempts between adjacent pairs (deterministic "
                             "even-odd); the theory's own --beta (u1, xy) / --kappa (phi4, at fixed --lam) must be a "
                             "coupling of the ladder, and its replica's configurations are the ones stored")
    t.add_argument("--ladder", help="tempering: the couplings, linear:LOW:HIGH:R, geometric:LOW:HIGH:R or v1,v2,... "
                   "(strictly increasing, > 0)")
    t.add_argument("--replica-algorithm", help="tempering: the local update of every replica, hmc, heatbath, "
                   "overrelaxation, metropolis or wolff (its flags as above) [hmc]")
    t.add_argument("--swap-every", type=int, help="tempering: local updates between swap rounds [1]")
    t.add_argument("--store-replicas", choices=["target", "all"], help="tempering: all: also write every other rung r "
                   "to its own ensemble file NAME.replica{r}.h5 (data for observables measure; --resume the target's "
                   "file) [target]")
    wi = p.add_argument_group("winding moves (u1, hmc; docs/winding.md)", "with --winding-every N one update = N HMC "
                              "trajectories, then one Metropolis winding move multiplying the links by a unit-charge "
                              "(anti-)instanton (Albandea et al., EPJC 81 (2021) 873; exact); the file's algorithm is "
                              "winding-hmc and tau_int in trajectories is N x tau_int in updates")
    wi.add_argument("--winding-every", type=int, help="hmc, u1: N, HMC trajectories before each winding move "
                    "(0 = plain hmc) [0]")
    wi.add_argument("--winding-size", type=int, help="hmc, u1: Lw, the instanton's Lw x Lw square (field strength "
                    "2 pi / Lw^2 on it) [L, the whole lattice]")
    r = p.add_argument_group("run")
    r.add_argument("--n-configs", type=int, help="number of configurations to store (in total, with --resume)")
    r.add_argument("--every", type=int, help=f"updates (sweeps / trajectories) between stored configurations "
                   f"[{DEFAULTS['every']}]")
    r.add_argument("--n-therm", type=int, help=f"thermalization updates, discarded; tuning happens here "
                   f"[{DEFAULTS['n_therm']}]")
    r.add_argument("--seed", type=int, help=f"seed of the chain's random numbers [{DEFAULTS['seed']}]")
    r.add_argument("--chains", type=int, help="K independent chains of this setup, advanced together in one process; "
                   "chain k is defined by (--seed, k) alone and written to NAME.chain{k}.h5 (--out NAME.h5); "
                   "K = 1 with --first-chain 0 writes NAME.h5 [1]")
    r.add_argument("--first-chain", type=int, help="k0: run chains k0 .. k0 + K - 1 of the set (another process "
                   "can run other chains of the same set) [0]")
    r.add_argument("--workers", type=int, help="W: split the chains into W contiguous blocks, each run in a worker "
                   "process; the files are those of one process, bit for bit [1; with --executor mpi: the "
                   "launch's worker ranks]")
    r.add_argument("--executor", choices=["local", "mpi"], help="local: a process pool on this machine; mpi: "
                   "mpi4py.futures over the ranks of mpiexec -n W+1 python -m mpi4py.futures -m generate ... "
                   "(pip install -e \".[mpi]\") [local]")
    r.add_argument("--init", choices=["hot", "cold", "ordered"], help="start configuration: hot (random), cold (zero "
                   "field / unit links), ordered (phi4: the uniform field +-phi_0 at the minimum of the uniform-field "
                   "action, sign drawn from the chain's seed, phi_0 = 0 in the symmetric phase; xy, u1: cold) "
                   f"[{DEFAULTS['init']}]")
    r.add_argument("--out", type=Path, help="output HDF5 file")
    r.add_argument("--resume", action="store_true", default=None, help="continue the chain stored in --out")
    r.add_argument("--overwrite", action="store_true", default=None, help="replace an existing --out file")
    r.add_argument("--flush-seconds", type=float, default=10.0, help="write to the file at least this often")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def merge_resume(args: argparse.Namespace, attrs: dict) -> None:
    """With --resume: take what the file says, and refuse what contradicts it."""
    recorded = {"theory": attrs["theory"], "L": attrs["shape"][0], "dim": len(attrs["shape"]),
                "algorithm": attrs["algorithm"], "seed": attrs["seed"], "every": attrs["every"],
                "init": attrs["init"], **attrs["params"]}
    for key in IDENTITY:
        given, stored = getattr(args, key), recorded.get(key)
        if key == "algorithm" and (given, stored) == ("hmc", "winding-hmc"):  # --algorithm hmc --winding-every N
            given = args.algorithm = stored
        if given is not None and given != stored:
            raise UsageError(f"--resume: {args.out} was made with {key} = {stored}, not {given}")
        if given is None:
            setattr(args, key, stored)
    stored_proposal = _stored_proposal_path(attrs)
    if args.proposal is not None and stored_proposal is not None and \
            Path(args.proposal).resolve() == stored_proposal.resolve():
        args.proposal = None  # the file's own model, as the original command line gives it
    for key in SAMPLER_FLAGS:
        if getattr(args, key) is not None:
            raise UsageError(f"--resume continues with the sampler settings stored in {args.out}; "
                             f"drop --{key.replace('_', '-')}")
    if args.n_therm is None:
        args.n_therm = attrs["n_therm"]


def _stored_proposal_path(attrs: dict) -> Path | None:
    """The run folder of the model a learned chain's file was made with (None for other chains)."""
    settings = attrs.get("sampler_settings") or {}
    proposal = settings.get("proposal") if isinstance(settings, dict) else None
    return Path(proposal["path"]) if isinstance(proposal, dict) and "path" in proposal else None


def make_sampler(args, chain: int = 0):
    """The sampler of chain ``chain`` the flags describe (defaults already filled in), and whether to tune it."""
    from samplers import SAMPLERS, Hybrid

    if args.algorithm != "tempering" and any(getattr(args, k, None) is not None for k in TEMPERING_FLAGS):
        raise UsageError("--ladder / --replica-algorithm / --swap-every / --store-replicas go with "
                         "--algorithm tempering")
    winding = getattr(args, "winding_every", None) is not None or getattr(args, "winding_size", None) is not None
    if winding or args.algorithm == "winding-hmc":
        return make_winding_sampler(args)
    if args.algorithm in MODEL_ALGORITHMS:
        if args.proposal is None:
            raise UsageError(f"--algorithm {args.algorithm} needs --proposal RUN (a run folder of python -m train)")
        proposal = {"path": str(args.proposal), "batch_size": args.proposal_batch, "device": args.device,
                    "dtype": args.proposal_dtype, "seed": args.seed, "chain": chain, "symmetrize": args.symmetrize,
                    "sampling": diffusion_sampling(args), "target": {}}
        if args.target_beta is not None and args.target_kappa is not None:
            raise UsageError("give --target-beta or --target-kappa, not both")
        if args.target_beta is not None:
            proposal["target"] = {"beta": args.target_beta}
        elif args.target_kappa is not None:
            proposal["target"] = {"kappa": args.target_kappa}
        if args.algorithm != "hybrid":
            return SAMPLERS[args.algorithm](proposal), False
        local, tune = make_local_sampler(args, args.local)
        settings = {"algorithm": local.name, "settings": local.settings()}
        return Hybrid(settings, proposal, args.local_per_proposal), tune
    if args.algorithm == "tempering":
        return make_tempering_sampler(args)
    return make_local_sampler(args, args.algorithm)


def make_winding_sampler(args):
    """--algorithm hmc --winding-every N [--winding-size Lw] (u1): HMC with winding moves
    (samplers/winding.py), or plain HMC for N = 0; whether to tune the HMC step."""
    from samplers.winding import WindingHMC

    if args.algorithm != "hmc" or (args.theory or "u1") != "u1":
        raise UsageError("--winding-every / --winding-size go with --algorithm hmc --theory u1"
                         if args.algorithm != "winding-hmc" else
                         "a winding-hmc chain is made by --algorithm hmc --winding-every N (and continued by --resume)")
    every = 0 if args.winding_every is None else args.winding_every
    if every < 0:
        raise UsageError(f"--winding-every must be >= 0 (0: plain hmc), got {every}")
    if every == 0 and args.winding_size is not None:
        raise UsageError("--winding-size needs --winding-every N >= 1 (winding moves after every N trajectories)")
    hmc, tune = make_local_sampler(args, "hmc")
    if every == 0:
        return hmc, tune
    return WindingHMC(hmc, every, args.L if args.winding_size is None else args.winding_size), tune


def make_tempering_sampler(args):
    """Parallel tempering (samplers/tempering.py): the --ladder, and the --replica-algorithm sampler its flags
    describe for every replica (--init for every replica); whether to tune the replicas."""
    from samplers.tempering import REPLICA_SAMPLERS, Tempering, parse_ladder

    if args.ladder is None:
        raise UsageError("--algorithm tempering needs --ladder (linear:LOW:HIGH:R, geometric:LOW:HIGH:R or v1,v2,...)")
    algorithm = args.replica_algorithm or "hmc"
    if algorithm not in REPLICA_SAMPLERS:
        raise UsageError(f"--replica-algorithm must be one of {', '.join(REPLICA_SAMPLERS)}, got {algorithm!r}")
    local, tune = make_local_sampler(args, algorithm)
    swap_every = 1 if args.swap_every is None else args.swap_every
    return Tempering(parse_ladder(args.ladder), {"algorithm": local.name, "settings": local.settings()},
                     swap_every=swap_every, init=args.init, store=args.store_replicas or "target"), tune


def diffusion_sampling(args) -> dict:
    """The diffusion-model sampling options given by the flags (the model's defaults for the others)."""
    names = {"model_sampler": "sampler", "diffusion_steps": "n_steps", "ode_integrator": "integrator",
             "corrector_steps": "corrector_steps"}
    return {key: getattr(args, flag) for flag, key in names.items() if getattr(args, flag, None) is not None}


def make_local_sampler(args, algorithm: str):
    """HMC or Metropolis as the flags describe, and whether to tune it."""
    from samplers import HMC, Metropolis

    tune = not args.no_tune
    if algorithm in ("heatbath", "overrelaxation"):
        return make_heatbath_sampler(args, algorithm), tune
    if algorithm == "plaquette-mh":
        from samplers import PlaquetteMH

        return PlaquetteMH(), False
    if algorithm == "wolff":
        from samplers import Wolff

        target = 0.5 if args.target_accept is None else args.target_accept
        return Wolff(clusters_per_sweep=args.clusters_per_sweep, metropolis_sweeps=args.metropolis_sweeps,
                     delta=args.delta, target_accept=target), tune
    if algorithm == "metropolis":
        target = 0.5 if args.target_accept is None else args.target_accept
        return Metropolis(delta=args.delta, target_accept=target), tune
    target = 0.8 if args.target_accept is None else args.target_accept
    step = args.step_size
    if args.n_steps is not None:
        if args.n_steps < 1:
            raise UsageError(f"--n-steps must be >= 1, got {args.n_steps}")
        tune, step = False, args.traj_length / args.n_steps
    return HMC(step_size=step, traj_length=args.traj_length, n_steps=args.n_steps or 0, jitter=args.jitter,
               integrator=args.integrator, target_accept=target), tune


def make_heatbath_sampler(args, algorithm: str):
    """heatbath, or overrelaxation (--or-per-sweep K, default 3; --or-with heatbath|metropolis)."""
    from samplers import HeatBath, OverRelaxation

    if algorithm == "heatbath":
        if args.or_per_sweep is not None or args.or_with is not None:
            raise UsageError("--or-per-sweep / --or-with go with --algorithm overrelaxation "
                             "(heatbath is overrelaxation with --or-per-sweep 0)")
        return HeatBath()
    target = 0.5 if args.target_accept is None else args.target_accept
    return OverRelaxation(or_per_sweep=3 if args.or_per_sweep is None else args.or_per_sweep,
                          or_with=args.or_with or "heatbath", delta=args.delta, target_accept=target)


def theory_for(args, sampler):
    """The chain's theory: from the flags, with the ones not given taken from the sampler's model
    (if it has one); a model made for another theory or lattice is refused."""
    from lattice.cli import PARAM_FLAGS

    model = getattr(sampler, "proposal", None)
    if model is not None:
        mine = model.theory
        if args.theory is None:
            args.theory = mine.name
        if args.L is None:
            args.L = mine.shape[0]
        if args.dim is None:
            args.dim = len(mine.shape)
        if args.theory == mine.name and all(getattr(args, k) is None for k in PARAM_FLAGS):
            for k, v in mine.params().items():
                setattr(args, k, v)
    theory = theory_from_args(args)
    if model is not None:
        model.check_theory(theory)
    return theory


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what the workers of a pool are given
    return run_reporting_errors(parser.prog, lambda: run_ending_on_write_error(args, parser), INTERRUPTED)


INTERRUPTED = "the file holds every configuration up to the last flush; continue with --resume"


def run_ending_on_write_error(args, parser) -> int:
    """``run``; a failed write (disk full) is one line and an immediate exit: freeing the HDF5
    objects of a failed write can crash the interpreter (see samplers.ensemble.WriteError)."""
    from samplers.ensemble import WriteError

    try:
        return run(args, parser)
    except WriteError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)


def chain_paths(out: Path, chains: int, first: int, as_set: bool = False) -> list[tuple[int, Path]]:
    """(k, file) of every chain of the run: NAME.chain{k}.h5 for --out NAME.h5, or NAME.h5 itself
    for the one chain 0 (unless it is a block of a larger set, ``as_set``)."""
    if chains == 1 and first == 0 and not as_set:
        return [(0, out)]
    return [(k, out.with_name(f"{out.stem}.chain{k}{out.suffix}")) for k in range(first, first + chains)]


def _chain_count(args) -> tuple[int, int]:
    chains = DEFAULTS["chains"] if args.chains is None else args.chains
    first = DEFAULTS["first_chain"] if args.first_chain is None else args.first_chain
    if chains < 1:
        raise UsageError(f"--chains must be >= 1, got {chains}")
    if first < 0:
        raise UsageError(f"--first-chain must be >= 0, got {first}")
    return chains, first


def run(args, parser) -> int:
    from samplers import SAMPLERS
    from samplers.chain import run_chains, set_lines
    from samplers.ensemble import attrs_of, lock_ensemble, open_ensemble

    merge_config(args, parser, paths=("out", "proposal"))
    if args.out is None:
        raise UsageError("--out is required (the HDF5 file to write)")
    chains, first = _chain_count(args)
    workers = DEFAULTS["workers"] if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    args.executor = args.executor or DEFAULTS["executor"]
    if workers > 1 or args.executor == "mpi":
        return run_on_workers(args, chains, first, workers if args.workers is not None else None)
    paths = chain_paths(args.out, chains, first, as_set=getattr(args, "as_set", False))
    locks = [lock_ensemble(path) for _, path in paths]  # noqa: F841 (held until the process exits)
    existing = [(k, path) for k, path in paths if path.exists()]
    resuming = bool(args.resume) and bool(existing)
    if args.resume and not resuming and args.theory is None and args.proposal is None:
        missing = (f"{args.out} does not exist" if len(paths) == 1 else
                   f"no file of chains {first}..{first + chains - 1} of {args.out} exists")
        raise UsageError(f"--resume: {missing}, so there is no chain to continue "
                         "(give the theory flags to start a new one there)")
    if existing and not args.resume and not args.overwrite:
        raise UsageError(f"{existing[0][1]} exists; use --resume to continue it or --overwrite to replace it")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    stored = {}
    for k, path in existing if resuming else []:
        with open_ensemble(path) as f:
            stored[k] = attrs_of(f)
        if int(stored[k].get("chain", 0)) != k:
            raise UsageError(f"--resume: {path} holds chain {stored[k].get('chain', 0)} of its set, not chain {k}")
        merge_resume(args, stored[k])  # the first file sets the flags; the others must agree with it
    if args.algorithm == "model-samples":
        if args.n_therm:
            raise UsageError("model-samples stores the model's own independent samples: no --n-therm")
        args.n_therm = 0
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.n_configs is None or args.n_configs < 1:
        raise UsageError("--n-configs must be given and >= 1")
    if args.threads is not None and args.algorithm in MODEL_ALGORITHMS:
        import torch
        torch.set_num_threads(max(1, args.threads))
    samplers, tune = {}, None
    for k, _ in paths:  # the file's sampler: initial settings, or the tuned ones once thermalized
        if k in stored:
            samplers[k] = SAMPLERS[args.algorithm].from_settings(stored[k]["sampler_settings"])
            tune = bool(stored[k]["tuned"]) if tune is None else tune
        else:
            samplers[k], new_tune = make_sampler(args, chain=k)
            tune = new_tune if tune is None else tune
    theory = theory_for(args, samplers[first])
    for sampler in samplers.values():
        sampler.check(theory)
    if not (args.flush_seconds >= 0 and math.isfinite(args.flush_seconds)):
        raise UsageError(f"--flush-seconds must be a finite number >= 0, got {args.flush_seconds}")
    if args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    if args.n_therm < 0:
        raise UsageError(f"--n-therm must be >= 0, got {args.n_therm}")

    states = {k: load_chain(path, args.n_configs) if k in stored else
              new_chain(args, theory, samplers[k], tune, k, path) for k, path in paths}
    todo = [(k, path) for k, path in paths if states[k].n_stored < args.n_configs]
    if not todo:
        held = min(states[k].n_stored for k, _ in paths)
        print(f"{paths[0][1] if len(paths) == 1 else f'every chain of {args.out}'} already holds {held} "
              f"configurations (>= --n-configs {args.n_configs})")
        return 0

    quiet = args.quiet
    if not quiet:
        from lattice import __version__

        params = ", ".join(f"{k}={v}" for k, v in theory.params().items())
        target = paths[0][1] if len(paths) == 1 else f"{paths[0][1].name} .. {paths[-1][1].name} ({chains} chains)"
        resumed = [states[k].n_stored for k, _ in todo if k in stored]
        print(f"latticeml {__version__}: {theory.name} ({params}) on {'x'.join(map(str, theory.shape))}, "
              f"{samplers[first].name}, {args.n_configs} configs every {args.every} -> {target}"
              + (f" (resuming at {min(resumed)})" if resumed else ""))
    summaries = run_chains(theory, [samplers[k] for k, _ in todo], [states[k] for k, _ in todo], args.n_configs,
                           every=args.every, n_therm=args.n_therm,
                           writers=[chain_writer(samplers[k], p) for k, p in todo],
                           progress=not quiet and sys.stderr.isatty(), flush_seconds=args.flush_seconds, tune=tune)
    args.finished = [(k, path, summary) for (k, path), summary in zip(todo, summaries)]  # for run_on_workers
    if not quiet:
        if len(paths) == 1:
            lines = summaries[0].lines() + [f"written:        {paths[0][1]}"]
        else:
            lines = set_lines(summaries, [f"chain {k}" for k, _ in todo], [p for _, p in todo])
        for line in lines:
            print(line)
    if theory.name == "phi4":
        from observables.phi4 import domain_warning

        for k, path in todo:
            warning = domain_warning(states[k].config)
            if warning:
                print(f"WARNING:        {path.name if len(paths) > 1 else ''}{': ' if len(paths) > 1 else ''}{warning}",
                      file=sys.stderr)
    return 0


def run_on_workers(args, chains: int, first: int, workers: int | None) -> int:
    """The chains first .. first + chains - 1 in contiguous blocks, one per worker process of
    ``args.executor`` (samplers/executors.py), each block this same command (``run_block``); then the
    set's summary. A worker that dies (SIGKILL, out of memory) ends the run with one line naming the
    chains that did not finish: every file keeps what was flushed, and --resume completes them."""
    import time
    from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, wait

    import generate as this  # run_block pickled by its module's name, also under python -m generate
    from samplers.chain import set_lines
    from samplers.executors import fatal_reports, make_executor, mpi_workers, split_chains

    if args.executor == "mpi":
        available = mpi_workers()
        if workers is not None and workers > available:
            raise UsageError(f"--workers {workers} but the MPI launch has {available} worker ranks "
                             f"(mpiexec -n {workers + 1} ...)")
        workers = workers or available
    blocks = split_chains(first, chains, workers)
    as_set = chains > 1 or first > 0  # the files of a set are NAME.chain{k}.h5 whatever block they are in
    paths = chain_paths(args.out, chains, first, as_set=as_set)
    t0 = time.perf_counter()
    results, lost, reports = {}, None, []
    with make_executor(args.executor, len(blocks)) as pool, \
            FlushedProgress([p for _, p in paths], len(blocks), not args.quiet and sys.stderr.isatty()) as progress:
        tasks = {pool.submit(this.run_block, [*args.argv, "--first-chain", str(k0), "--chains", str(n),
                                              "--workers", "1", "--executor", "local", "--quiet"], as_set): k0
                 for k0, n in blocks}
        pending = set(tasks)
        while pending:
            done, pending = wait(pending, timeout=progress.interval, return_when=FIRST_COMPLETED)
            for task in done:
                try:
                    results[tasks[task]] = task.result()
                except BrokenExecutor as e:
                    lost = e
            progress.update()
        if lost is not None:
            reports = fatal_reports(pool)
    wall = time.perf_counter() - t0
    if lost is not None:
        unfinished = ", ".join(str(k) for k, path in paths if not _finished(path)) or "none"
        if reports:  # a worker ended itself after a failed write (disk full), and said why
            more = f"; {len(reports)} workers stopped so" if len(reports) > 1 else ""
            raise UsageError(f"{reports[0]} (chains {unfinished} did not finish{more})")
        raise UsageError(f"a worker process ended before its chains were done ({type(lost).__name__}: killed, or "
                         f"out of memory?); chains {unfinished} did not finish; "
                         "every file holds its chain up to the last flush; continue with --resume")
    errors = [results[k0][1] for k0, _ in blocks if results[k0][0] != 0]
    lines = list(dict.fromkeys(e for e in errors if e))  # the same bad input fails every block alike
    if lines:  # one line: the first block's error, and how many others failed otherwise
        others = f" ({len(lines) - 1} other blocks of chains failed too)" if len(lines) > 1 else ""
        print(lines[0] + others, file=sys.stderr)
    if errors:
        return max(results[k0][0] for k0, _ in blocks)
    finished = sorted((f for k0, _ in blocks for f in results[k0][2]), key=lambda f: f[0])
    if not args.quiet:
        if finished:
            for line in set_lines([s for _, _, s in finished], [f"chain {k}" for k, _, _ in finished],
                                  [p for _, p, _ in finished], workers=(len(blocks), wall)):
                print(line)
        else:
            print(f"every chain of {args.out} already holds its --n-configs configurations")
    return 0


class FlushedProgress:
    """The progress bar of a set on workers: the configurations flushed to the chains' files (the
    workers' own bars are off), read every ``interval`` seconds, at least 20 times the last read's
    time, so that polling many files costs the run little."""

    def __init__(self, paths: list[Path], workers: int, show: bool):
        from tqdm import tqdm

        self.paths, self.show, self.interval = paths, show, 1.0
        self.bar = tqdm(total=0, desc=f"{len(paths)} chains on {workers} workers (flushed)", unit="cfg",
                        disable=not show)

    def update(self) -> None:
        if not self.show:
            return
        import time

        t0 = time.perf_counter()
        counts = [_counts(p) for p in self.paths]
        self.bar.total = sum(target for _, target in counts)
        self.bar.n = sum(stored for stored, _ in counts)
        self.bar.refresh()
        self.interval = max(1.0, 20 * (time.perf_counter() - t0))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()


def _counts(path: Path) -> tuple[int, int]:
    """(configurations flushed, configurations asked for) of a chain file; (0, 0) if not yet readable."""
    from samplers.ensemble import EnsembleError, n_stored, open_ensemble

    try:
        with open_ensemble(path) as f:
            return n_stored(f), int(f.attrs["n_configs"])
    except (EnsembleError, KeyError, OSError):
        return 0, 0


def _finished(path: Path) -> bool:
    """Whether the chain file ``path`` holds all the configurations it was asked for."""
    stored, target = _counts(path)
    return target > 0 and stored >= target


def run_block(argv: list[str], as_set: bool) -> tuple[int, str, list]:
    """One worker's block of a chain set (``run_on_workers``): this command with ``argv``, its files
    named as chains of a set of several (``as_set``, see chain_paths). Returns (exit status, its error line, [(k, file, RunSummary)]).
    A failed write ends the worker at once, as it ends a single run (``run_ending_on_write_error``)."""
    import contextlib
    import io

    from samplers.ensemble import WriteError
    from samplers.executors import report_fatal

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv, args.as_set = argv, as_set
    err = io.StringIO()

    def body() -> int:
        try:
            return run(args, parser)
        except WriteError as e:
            report_fatal(str(e), parser.prog)
            os._exit(2)

    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run_reporting_errors(parser.prog, body, INTERRUPTED)
    lines = err.getvalue().strip().splitlines()
    return code, lines[-1] if code and lines else "", getattr(args, "finished", [])


def load_chain(path: Path, n_configs: int):
    """The stored state of the chain in ``path`` (a file left by a killed writer made clean first);
    its target length becomes ``n_configs`` if it has fewer."""
    from samplers.ensemble import load_state, make_clean, mark_resumed

    make_clean(path)
    with h5py.File(path, "r") as f:
        state = load_state(f)
    if state.n_stored < n_configs:
        mark_resumed(path, n_configs)
    return state


def chain_writer(sampler, path: Path):
    """The writer of a chain's file: an EnsembleWriter, or what the sampler makes of it (``make_writer``:
    tempering with --store-replicas all also writes the other rungs' files)."""
    from samplers.ensemble import EnsembleWriter

    writer = EnsembleWriter(path)
    return sampler.make_writer(writer) if hasattr(sampler, "make_writer") else writer


def new_chain(args, theory, sampler, tune: bool, chain: int, path: Path):
    """A fresh chain number ``chain`` of the set: its start and its new file at ``path``."""
    from samplers.chain import ChainState
    from samplers.ensemble import create_ensemble, provenance

    path.parent.mkdir(parents=True, exist_ok=True)
    state = ChainState.start(theory, args.seed, args.init, chain=chain)
    state.sampler_state = sampler.get_state()
    attrs = {
        **theory_identity(theory), "config_shape": list(theory.config_shape),
        "algorithm": sampler.name, "sampler_settings": sampler.settings(), "tuned": int(tune),
        "seed": args.seed, "chain": chain, "every": args.every, "n_therm": args.n_therm, "init": args.init,
        "n_configs": args.n_configs, **provenance(),
    }
    model = getattr(sampler, "proposal", None)
    if model is not None:
        from samplers.proposal import checkpoint_file

        attrs.update({"proposal_checkpoint": str(checkpoint_file(model.path).resolve()),
                      "proposal_sha256": model.sha256, "proposal_model": model.model,
                      "proposal_exact": int(model.dtype == "float64")})
    create_ensemble(path, attrs, theory.config_shape, sampler.diagnostics, state)
    return state


if __name__ == "__main__":
    sys.exit(main())
