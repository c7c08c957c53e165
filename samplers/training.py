"""Training of learned samplers: the objective is a swappable gradient-estimator strategy (as in
NeuMC), the loop writes metrics as it goes, checkpoints, and resumes to the same result.

Objectives (log q of the model, log p = -S of the target, both float64):
    reverse-kl   L = E_{x~q}[log q(x) - log p(x)] = KL(q || p) - log Z, reparameterized gradient
                 through the flow's sampling pass; no data needed (self-training from the action).
    forward-kl   L = -E_{x~ensemble}[log q(x)] = KL(p || q) + const: maximum likelihood on an
                 HDF5 ensemble made by ``python -m generate``.
    reverse-kl-score
                 the reverse KL with the score-function (REINFORCE) gradient and a baseline, the
                 estimator of variational autoregressive networks (Wu, Wang, Zhang, PRL 122 (2019)
                 080602): grad L = E_q[(log q - log p - b) grad log q], b = batch mean of
                 (log q - log p), samples detached. Needs only log q to be differentiable, so it
                 serves models whose sampling is not reparameterizable (autoregressive models);
                 ``reverse-kl`` switches to it by itself for a model with ``reparameterizable = False``
                 (the objective is the same, only the gradient estimator differs).
    dsm          denoising score matching on an HDF5 ensemble, for diffusion models
                 (samplers/diffusion/model.py); ``physics_weight`` > 0 adds the known score -grad S at
                 the smallest noise level. The model is not sampled during training: the per-step
                 ESS / acceptance metrics are null, and the final evaluation (exact PF-ODE densities)
                 runs on ``eval_batch`` samples (0: skipped).
Metrics every step (metrics.jsonl): loss, ESS/N of the model's batch reweighted to p, and the
acceptance an independence Metropolis-Hastings chain would have on it (samplers/weights.py).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lattice import __version__, theory_from_attrs
from lattice.cli import theory_identity

from .flows import Flow, build_model
from .weights import ess_fraction, imh_acceptance

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
FORMAT = "latticeml-model"


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what is kept."""


@dataclass
class TrainConfig:
    model: str
    hyper: dict = field(default_factory=dict)
    objective: str = "reverse-kl"
    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # cosine (to lr/100 at the last step) or constant
    grad_clip: float = 10.0  # max gradient norm (0: no clipping)
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    ensemble: str | None = None  # forward-kl, dsm: the HDF5 ensemble
    eval_batch: int = 4096  # model samples for the final ESS / acceptance (0: none)
    physics_weight: float = 0.0  # dsm: weight of the known-score term at t_min

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}")
        if self.objective in ("forward-kl", "dsm") and not self.ensemble:
            raise ValueError(f"--objective {self.objective} needs --ensemble FILE (an ensemble of the target)")
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_batch < 0:
            raise ValueError(f"--eval-batch must be >= 0, got {self.eval_batch}")
        if not self.physics_weight >= 0:
            raise ValueError(f"--physics-weight must be >= 0, got {self.physics_weight}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown --lr-schedule {self.lr_schedule!r}; choose cosine or constant")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"--dtype must be float32 or float64, got {self.dtype!r}")


# ------------------------------------------------------------------------------------ objectives
class ReverseKL:
    name = "reverse-kl"

    def loss(self, flow: Flow, batch_size: int, generator: torch.Generator, data=None):
        if not getattr(flow, "reparameterizable", True):  # e.g. autoregressive: the score-function estimator
            return OBJECTIVES["reverse-kl-score"].loss(flow, batch_size, generator, data)
        x, log_q = flow.sample(batch_size, generator)
        log_w = flow.log_p(x) - log_q
        return -log_w.mean(), log_w.detach()


class ForwardKL:
    name = "forward-kl"

    def loss(self, flow: Flow, batch_size: int, generator: torch.Generator, data=None):
        loss = -flow.log_q(data).mean()
        with torch.no_grad():  # the metrics need the model's own samples
            x, log_q = flow.sample(batch_size, generator)
            log_w = flow.log_p(x) - log_q
        return loss, log_w


class ReverseKLScore:
    """Reverse KL with the VAN score-function gradient. The returned loss has the value of the KL
    estimate mean(log q - log p) (what the metrics report, as for reverse-kl) and the gradient
    mean((f - b) grad log q), f = log q - log p, b = mean(f), f and b detached; subtracting b keeps
    the estimator unbiased (E_q[grad log q] = 0) and lowers its variance."""

    name = "reverse-kl-score"

    def loss(self, flow: Flow, batch_size: int, generator: torch.Generator, data=None):
        with torch.no_grad():
            x, _ = flow.sample(batch_size, generator)
        log_q = flow.log_q(x.detach())
        with torch.no_grad():
            f = log_q.detach() - flow.log_p(x)
            b = f.mean()
        surrogate = ((f - b) * log_q).mean()
        return surrogate - surrogate.detach() + f.mean(), -f


class DenoisingScoreMatching:
    """The DSM loss of a diffusion model on an ensemble batch; no model samples (log_w None)."""

    name = "dsm"

    def __init__(self, physics_weight: float = 0.0):
        self.physics_weight = physics_weight

    def loss(self, flow, batch_size: int, generator: torch.Generator, data=None):
        return flow.dsm_loss(data, generator, self.physics_weight), None


OBJECTIVES = {"reverse-kl": ReverseKL(), "forward-kl": ForwardKL(), "reverse-kl-score": ReverseKLScore(),
              "dsm": DenoisingScoreMatching()}


def objective_for(flow, config: "TrainConfig"):
    """The objective of ``config`` for this model (ValueError if the model cannot be trained by it)."""
    is_diffusion = hasattr(flow, "dsm_loss")
    if is_diffusion != (config.objective == "dsm"):
        raise ValueError(f"{flow.name} models train by --objective dsm" if is_diffusion
                         else f"--objective dsm is for diffusion models, not {flow.name}")
    if config.objective == "dsm":
        return DenoisingScoreMatching(config.physics_weight)
    return OBJECTIVES[config.objective]


# ------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, flow: Flow, config: TrainConfig, step: int, optimizer, scheduler,
                    generator: torch.Generator, data_rng: np.random.Generator, extra: dict | None = None) -> None:
    """Everything needed to rebuild the model and continue training, written atomically."""
    ckpt = {
        "format": FORMAT, "version": __version__, "model": flow.name, "hyper": flow.hyper,
        "theory": theory_identity(flow.theory), "config": asdict(config), "step": step,
        "state_dict": flow.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(), "data_rng": data_rng.bit_generator.state, **(extra or {}),
    }
    tmp = path.with_name(path.name + ".partial")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict of a run folder or file (ValueError with one line if it is not one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise ValueError(f"{path}: no checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a latticeml model checkpoint")
    return ckpt


def load_model(path: str | os.PathLike, device: str = "cpu") -> tuple[Flow, dict]:
    """The trained flow of a run folder (or checkpoint file), with its checkpoint dict."""
    ckpt = read_checkpoint(path)
    theory = theory_from_attrs(ckpt["theory"])
    flow = build_model(ckpt["model"], theory, **ckpt["hyper"])
    try:
        flow.load_state_dict(ckpt["state_dict"])
    except RuntimeError:  # e.g. saved by a version whose defaults built another architecture
        raise ValueError(f"{path}: its weights do not fit the {ckpt['model']} this version builds from the stored "
                         f"hyperparameters {ckpt['hyper']} (made by latticeml {ckpt.get('version', '?')}?)") from None
    flow.to(device=device, dtype=getattr(torch, ckpt["config"]["dtype"]))
    return flow, ckpt


# ------------------------------------------------------------------------------------ training
def _scheduler(optimizer, config: TrainConfig):
    """lr(step) = lr * f(step / steps): cosine from 1 to 1/100 over the run, or constant. A function of
    the step alone, so extending a resumed run (more --steps) stretches the schedule from where it is."""
    if config.lr_schedule == "cosine":
        def factor(step):
            return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, config.steps) / config.steps))
    else:
        def factor(step):
            return 1.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_ensemble(path: str, theory, device, dtype) -> torch.Tensor:
    """The configurations of an ensemble of ``theory`` as a tensor (ValueError if of another theory)."""
    from samplers.ensemble import read_ensemble

    ens = read_ensemble(path)
    if theory_from_attrs(ens.attrs) != theory:
        raise ValueError(f"{path} holds {ens.attrs['theory']} {ens.attrs['params']} on "
                         f"{'x'.join(map(str, ens.attrs['shape']))}, not the model's theory")
    if len(ens.configs) == 0:
        raise ValueError(f"{path} holds no configurations")
    return torch.as_tensor(ens.configs, device=device, dtype=dtype)


def evaluate(flow: Flow, n: int, batch_size: int, seed: int) -> dict:
    """ESS/N and independence-MH acceptance of n fresh model samples (a separate generator)."""
    gen = torch.Generator(device=next(flow.parameters()).device).manual_seed(seed)
    chunks = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x, log_q = flow.sample(min(batch_size, n - start), gen)
            chunks.append((flow.log_p(x) - log_q).cpu().numpy())
    log_w = np.concatenate(chunks)
    return {"ess": ess_fraction(log_w), "acceptance": imh_acceptance(log_w), "n": n,
            "var_log_w": float(np.var(log_w[np.isfinite(log_w)]))}


def train(flow: Flow, config: TrainConfig, run_dir: Path, resume: bool = False, progress: bool = False) -> dict:
    """Train ``flow`` in ``run_dir`` (checkpoint.pt, metrics.jsonl, summary.json); with ``resume``,
    continue from run_dir's checkpoint exactly where it stopped. Returns the summary."""
    config.check()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    flow.to(device=device, dtype=dtype)
    data = load_ensemble(config.ensemble, flow.theory, device, dtype) if config.ensemble else None
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.lr)
    scheduler = _scheduler(optimizer, config)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    data_rng = np.random.default_rng(config.seed)
    objective = objective_for(flow, config)
    step = 0
    if resume:
        ckpt = read_checkpoint(run_dir)
        flow.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        generator.set_state(ckpt["generator"])
        data_rng.bit_generator.state = ckpt["data_rng"]
        step = ckpt["step"]
        _truncate_metrics(run_dir / METRICS, step)

    t_start = time.perf_counter()
    elapsed0 = _last_metric(run_dir / METRICS, "time") if resume else 0.0
    last = {}
    with open(run_dir / METRICS, "a") as log:
        bar = tqdm(total=config.steps, initial=step, desc=f"{flow.name} {config.objective}", disable=not progress)
        while step < config.steps:
            batch = data[torch.as_tensor(data_rng.integers(0, len(data), config.batch_size), device=device)] \
                if data is not None else None
            loss, log_w = objective.loss(flow, config.batch_size, generator, batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} at step {step + 1}; the last good checkpoint "
                                    f"(step {_checkpoint_step(run_dir)}) is kept in {run_dir / CHECKPOINT}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            lw = None if log_w is None else log_w.cpu().numpy()
            last = {"step": step, "loss": loss.item(), "ess": None if lw is None else ess_fraction(lw),
                    "acceptance": None if lw is None else imh_acceptance(lw),
                    "lr": scheduler.get_last_lr()[0], "time": elapsed0 + time.perf_counter() - t_start}
            log.write(json.dumps(last) + "\n")
            log.flush()
            bar.update(1)
            shown = {k: f"{last[k]:.3f}" if k == "loss" else f"{last[k]:.2f}"
                     for k in ("loss", "ess", "acceptance") if last[k] is not None}
            bar.set_postfix(refresh=False, **shown)
            if step % config.checkpoint_every == 0 or step == config.steps:
                if not all(torch.isfinite(p).all() for p in flow.parameters()):
                    raise TrainingError(f"parameters became non-finite by step {step}; the last good checkpoint "
                                        f"(step {_checkpoint_step(run_dir)}) is kept in {run_dir / CHECKPOINT}")
                save_checkpoint(run_dir / CHECKPOINT, flow, config, step, optimizer, scheduler, generator, data_rng)
        bar.close()

    final = evaluate(flow, config.eval_batch, config.batch_size, seed=config.seed + 1) if config.eval_batch \
        else {"ess": None, "acceptance": None, "var_log_w": None, "n": 0}
    summary = {"model": flow.name, "objective": config.objective, "steps": step,
               "final_loss": last.get("loss", math.nan), "train_time_s": last.get("time", 0.0),
               "ess": final["ess"], "acceptance": final["acceptance"], "var_log_w": final["var_log_w"],
               "eval_samples": final["n"], **theory_identity(flow.theory)}
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _checkpoint_step(run_dir: Path) -> int:
    try:
        return read_checkpoint(run_dir)["step"]
    except ValueError:
        return 0


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run continues from."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(ln + "\n" for ln in lines))


def _last_metric(path: Path, key: str) -> float:
    if not path.exists():
        return 0.0
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return float(json.loads(lines[-1])[key]) if lines else 0.0
