"""Diffusion models (issue 7): the phi^4 table of Wang, Aarts, Zhou (JHEP 05 (2024) 060) and exact
learned-mh with the probability-flow ODE density.

Two parts, chosen with --cases:

paper_sym, paper_broken   (32 x 32, lambda = 0.022, kappa = 0.21 / 0.5; as in the paper)
    HMC train ensemble (5120 configurations) -> DSM training for --train-minutes CPU-minutes ->
    5120 reverse-SDE samples (Euler-Maruyama, --sde-steps on the log-std grid, no density) -> the
    paper's observables with Gamma-method errors for HMC train, an independent HMC test chain and
    the DM samples, side by side, with z-scores of DM and train against test:
    <M>, chi_2, U_L, V^(n-1) kappa_n (n = 2..4); in the broken phase <|M|> and chi_|M| (a chain need
    not tunnel between the signs).
exact_*                   (8 x 8: exact densities cost one full Jacobian per step and sample)
    DSM on an HMC ensemble, then learned-mh with the PF-ODE's exact log q beside HMC (and Metropolis):
    acceptance, tau_int of the slow observable, wall time, cost per independent sample
    (wall x 2 tau_int / N) with and without the training, and DIFFER counts against HMC.
    Cases: phi4 m2 = -4, g = 8; the near-critical kappa = 0.27, lambda = 0.022 (|M|); U(1) beta = 2 and
    4 trained at that beta; U(1) beta = 2 and 4 transferred from a model trained at beta = 1.

Everything runs on one core (torch and Numba single-threaded), one process at a time.

    PYTHONPATH=. python benchmarks/bench_diffusion.py --cases paper_sym paper_broken [--train-minutes 12]
    PYTHONPATH=. python benchmarks/bench_diffusion.py --cases exact_phi4 exact_crit exact_u1_b2 exact_u1_transfer
"""
from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from benchmarks.common import cost_row, print_cost_table, run_generate
from lattice import make_theory
from observables.analysis import analyze, z_score
from samplers.flows import build_model
from samplers.training import TrainConfig, load_ensemble, train

PAPER = {  # 32 x 32, the paper's couplings
    "paper_sym": dict(theory=("phi4", 32, {"kappa": 0.21, "lam": 0.022}), every=2,
                      obs=("M", "chi_2", "U_L", "kappa_2", "kappa_3", "kappa_4")),
    # deep in the broken phase a hot start can freeze into two domains (a pair of walls across the torus,
    # <|M|> ~ 0.9-1.2 instead of 4.8) that thousands of trajectories do not remove: seeds 2, 4, 5 did, 1 and 3
    # ordered; the test chain is seed 3 (chosen for having no walls: a state with walls is not equilibrium here)
    "paper_broken": dict(theory=("phi4", 32, {"kappa": 0.5, "lam": 0.022}), every=2, n_therm=2000, test_seed=3,
                         obs=("|M|", "chi_|M|", "U_L", "kappa_2", "kappa_3", "kappa_4")),
}
EXACT = {  # 8 x 8; train: the coupling of the training ensemble (default: the chain's); obs: the slow one
    "exact_phi4": dict(theory=("phi4", 8, {"m2": -4.0, "g": 8.0}), obs="|M|"),
    "exact_crit": dict(theory=("phi4", 8, {"kappa": 0.27, "lam": 0.022}), obs="|M|", metropolis=True),
    "exact_u1_b2": dict(theory=("u1", 8, {"beta": 2.0}), obs="Q"),
    "exact_u1_b4": dict(theory=("u1", 8, {"beta": 4.0}), obs="Q"),
    "exact_u1_transfer": dict(theory=("u1", 8, {"beta": 1.0}), obs="Q", targets=(2.0, 4.0)),
}
# the score networks (kernel 3, time embedding 32): 32 x 32 sampling without densities affords a deeper one;
# the exact cases pay one local forward-mode tangent per dof per score evaluation (ScoreNet.jacobian; before
# issue 14, one backward pass per dof: the wall times in benchmarks/RESULTS.md predate it; bench_diffusion_passes.py)
HYPER = {"paper": {"hidden": (16, 16, 16, 16)}, "exact": {"hidden": (16, 16)}}


def flags_of(name: str, L: int, params: dict) -> list[str]:
    return ["--theory", name, "--L", str(L), *[f"--{k}={v}" for k, v in params.items()]]


def train_dsm(theory, ensemble: Path, minutes: float, run: Path, hyper: dict, batch: int = 64,
              lr: float = 2e-3) -> dict:
    """DSM for about ``minutes`` of CPU time (step cost measured on a few steps first)."""
    torch.manual_seed(0)
    probe = build_model("diffusion", theory, **hyper)
    data = load_ensemble(str(ensemble), theory, "cpu", torch.float32)
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    for i in range(7):
        if i == 2:
            t0 = time.process_time()
        loss = probe.dsm_loss(data[torch.randint(0, len(data), (batch,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    steps = max(50, int(minutes * 60 / ((time.process_time() - t0) / 5)))
    torch.manual_seed(0)
    model = build_model("diffusion", theory, **hyper)
    config = TrainConfig(model="diffusion", hyper=model.hyper, objective="dsm", steps=steps, batch_size=batch, lr=lr,
                         checkpoint_every=max(1, steps // 4), eval_batch=0, ensemble=str(ensemble))
    summary = train(model, config, run)
    print(json.dumps({"train": str(run), "steps": steps, "train_s": summary["train_time_s"],
                      "final_loss": summary["final_loss"]}), flush=True)
    return summary


def fmt(est) -> str:
    return f"{est.value:.5g} ± {est.error:.2g}"


def paper_case(cname: str, args) -> None:
    case = PAPER[cname]
    name, L, params = case["theory"]
    theory = make_theory(name, (L, L), **params)
    flags = flags_of(name, L, params)
    out, run = args.out / cname, args.runs / cname
    out.mkdir(parents=True, exist_ok=True)
    files = {"HMC train": out / "hmc_train.h5", "HMC test": out / "hmc_test.h5", "DM (reverse SDE)": out / "dm.h5"}
    walls = {}
    for label, seed in (("HMC train", 1), ("HMC test", case.get("test_seed", 2))):
        if args.reuse and files[label].exists():
            continue
        walls[label] = run_generate([*flags, "--algorithm", "hmc", "--n-configs", str(args.n_paper), "--every",
                                     str(case["every"]), "--n-therm", str(case.get("n_therm", 500)), "--seed",
                                     str(seed), "--out", str(files[label]), "--overwrite", "--quiet"])
    if args.reuse and files["DM (reverse SDE)"].exists():
        print(f"{cname}: reusing {run} and {files['DM (reverse SDE)']}")
        return print_paper_table(cname, case, {label: analyze(path) for label, path in files.items()})
    if args.reuse and (run / "summary.json").exists():
        summary = json.loads((run / "summary.json").read_text())
    else:
        summary = train_dsm(theory, files["HMC train"], args.train_minutes, run, HYPER["paper"])
    walls["DM (reverse SDE)"] = run_generate(
        ["--algorithm", "model-samples", "--proposal", str(run), "--model-sampler", "sde", "--diffusion-steps",
         str(args.sde_steps), "--proposal-dtype", "float32", "--proposal-batch", "512", "--threads", "1", "--n-therm", "0",
         "--n-configs", str(args.n_samples or args.n_paper), "--seed", "3", "--out", str(files["DM (reverse SDE)"]),
         "--overwrite",
         "--quiet"])
    an = {label: analyze(path) for label, path in files.items()}
    print(f"\n{cname}: phi4 {params} on {L}x{L}; DSM {summary['steps']} steps in {summary['train_time_s']:.0f} s; "
          f"{args.n_paper} reverse-SDE samples ({args.sde_steps} steps) in {walls['DM (reverse SDE)']:.0f} s; "
          + (f"HMC {walls['HMC train']:.0f} s per ensemble" if "HMC train" in walls else "HMC files reused"))
    print_paper_table(cname, case, an)


def print_paper_table(cname: str, case: dict, an: dict) -> None:
    print(f"\n{cname}:")
    print("| observable | HMC train | HMC test | DM (reverse SDE) | z train-test | z DM-test |")
    print("|---|---:|---:|---:|---:|---:|")
    for obs in case["obs"]:
        tr, te, dm = (an[k].estimates[obs] for k in ("HMC train", "HMC test", "DM (reverse SDE)"))
        print(f"| {obs} | {fmt(tr)} | {fmt(te)} | {fmt(dm)} | {z_score(tr, te):+.2f} | {z_score(dm, te):+.2f} |")


def exact_case(cname: str, args) -> None:
    case = EXACT[cname]
    name, L, params = case["theory"]
    theory = make_theory(name, (L, L), **params)
    flags = flags_of(name, L, params)
    out, run = args.out / cname, args.runs / cname
    out.mkdir(parents=True, exist_ok=True)
    ens = out / "train.h5"
    run_generate([*flags, "--algorithm", "hmc", "--n-configs", "5120", "--every", "2", "--seed", "11", "--out",
                  str(ens), "--overwrite", "--quiet"])
    summary = train_dsm(theory, ens, args.train_minutes, run, HYPER["exact"])
    targets = case.get("targets", (None,))
    rows = []
    for target in targets:
        p = dict(params) if target is None else {"beta": target}
        tflags = flags_of(name, L, p)
        files = {"hmc": out / f"hmc_{target}.h5", "learned-mh (diffusion)": out / f"dm_{target}.h5"}
        walls = {"hmc": run_generate([*tflags, "--algorithm", "hmc", "--n-configs", str(args.n_hmc), "--seed", "1",
                                      "--out", str(files["hmc"]), "--overwrite", "--quiet"])}
        if case.get("metropolis"):
            files["metropolis"] = out / f"metro_{target}.h5"
            walls["metropolis"] = run_generate([*tflags, "--algorithm", "metropolis", "--n-configs", str(args.n_hmc),
                                                "--seed", "1", "--out", str(files["metropolis"]), "--overwrite",
                                                "--quiet"])
        dm = ["--algorithm", "learned-mh", "--proposal", str(run), "--diffusion-steps", str(args.ode_steps),
              "--ode-integrator", args.ode_integrator,
              "--proposal-batch", "64", "--threads", "1", "--n-configs", str(args.n_dm), "--n-therm", "20",
              "--seed", "1", "--out", str(files["learned-mh (diffusion)"]), "--overwrite", "--quiet"]
        if target is not None:
            dm += ["--target-beta", str(target)]
        walls["learned-mh (diffusion)"] = run_generate(dm)
        an = {k: analyze(f) for k, f in files.items()}
        label = f"{name} L={L} {p}" + ("" if target is None else f" (trained at {params})")
        for algo, a in an.items():
            est = a.estimates[case["obs"]]
            rows.append(cost_row(label, label, algo, a, an["hmc"], case["obs"], walls[algo], est.n * est.every,
                                 train_s=summary["train_time_s"] if "diffusion" in algo else 0.0))
    print_cost_table(rows)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=[*PAPER, *EXACT], choices=[*PAPER, *EXACT])
    ap.add_argument("--train-minutes", type=float, default=12.0, help="CPU-time budget of each DSM training")
    ap.add_argument("--n-paper", type=int, default=5120, help="configurations per ensemble of the paper's table")
    ap.add_argument("--sde-steps", type=int, default=64, help="reverse-SDE steps of the DM samples")
    ap.add_argument("--n-samples", type=int, help="DM samples of the paper's table [--n-paper]")
    ap.add_argument("--ode-steps", type=int, default=16, help="PF-ODE steps of the exact learned-mh proposals")
    ap.add_argument("--ode-integrator", choices=["euler", "heun"], default="heun",
                    help="PF-ODE scheme (on the phi4 L = 8 model: Euler 12 steps acceptance 0.09, 48 steps 0.19; "
                         "Heun 24 steps 0.57)")
    ap.add_argument("--n-dm", type=int, default=300, help="learned-mh proposals per exact case")
    ap.add_argument("--n-hmc", type=int, default=20000, help="HMC (and Metropolis) updates per exact case")
    ap.add_argument("--reuse", action="store_true", help="paper cases: keep existing HMC files, trained model and "
                    "DM samples (re-run only what is missing and the table)")
    ap.add_argument("--out", type=Path, default=Path("data/bench_diffusion"))
    ap.add_argument("--runs", type=Path, default=Path("runs/bench_diffusion"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"Diffusion models (issue 7), {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, "
          f"DSM budget {args.train_minutes:g} CPU-minutes per model, score networks {HYPER}", flush=True)
    for cname in args.cases:
        (paper_case if cname in PAPER else exact_case)(cname, args)


if __name__ == "__main__":
    main()
