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
acceptance an independence Metropolis-Hastings chain would have on it (samplers/weights.py). These
batch values come from ``batch_size`` samples only and overstate a poor model (the heavy tail of the
weights is rarely sampled in one batch; up to ~10x above the final value, issue 13); the summary's ESS/N
and acceptance come from ``eval_batch`` fresh samples after training.

Reproducibility: a resumed run computes the same numbers as an uninterrupted one. Everything that
changes them is in the checkpoint: the settings (TrainConfig, including the torch CPU thread count,
which changes the order of floating-point reductions), the optimizer, scheduler and RNG states.

Several processes (torchrun, samplers/distributed.py): the global batch is drawn as ``shards`` shards,
each with generators seeded by (seed, shard) alone and spread over the ranks; DistributedDataParallel
averages the gradients. Rank 0 alone writes the run folder; the NaN guard reads the loss averaged over
all ranks, so every rank stops at the same step. A run gives the same numbers on any number of ranks
that divides ``shards`` (up to the rounding of the gradient sum), and resumes on any such number.

The summary (summary.json) carries a ``warning`` (None if all is well) when training looks diverged;
see ``training_warning`` for the criterion. Writes that fail for want of room (ENOSPC, EFBIG: a full
disk or a file-size limit) end training with a TrainingError that says so, keeping the last complete
checkpoint.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lattice import __version__, theory_from_attrs
from lattice.cli import theory_identity

from . import distributed
from .distributed import Shard
from .flows import Flow, build_model
from .flows.nets import keep_freed_memory
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
    threads: int | None = None  # torch CPU threads (None: leave torch's setting); part of the numbers
    shards: int = 1  # the global batch drawn as this many shards of batch_size / shards (distributed.py)

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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.shards < 1 or self.batch_size % self.shards:
            raise ValueError(f"--shards must be >= 1 and divide --batch-size {self.batch_size}, got {self.shards}")


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
                    shard_states: list[dict], extra: dict | None = None) -> None:
    """Everything needed to rebuild the model and continue training, written atomically.
    ``shard_states``: the generator states of every shard of the batch, in shard order."""
    ckpt = {
        "format": FORMAT, "version": __version__, "model": flow.name, "hyper": flow.hyper,
        "theory": theory_identity(flow.theory), "config": asdict(config), "step": step,
        "state_dict": flow.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "shards": shard_states, "torch_version": torch.__version__, **(extra or {}),
    }
    buffer = io.BytesIO()  # serialized in memory, so that a failed write is a Python OSError with its errno
    torch.save(ckpt, buffer)
    write_atomically(path, buffer.getvalue())


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: a reader (or a killed or
    failed writer) sees the old file or the new one, never a part. A failed write removes the
    temporary file and raises the OSError."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, e.filename or str(path)) from None


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextmanager
def _disk_full_is_a_training_error(run_dir: Path):
    """Turn a write that failed for want of room (full disk, quota, file-size limit) into a
    one-line TrainingError that says so and what is kept; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        where = f" writing {Path(e.filename).name}" if e.filename else ""
        raise TrainingError(f"disk full{where} in {run_dir} ({os.strerror(e.errno)}); "
                            f"{_what_is_kept(run_dir)}") from None


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


def load_ensemble(path: str, theory, device, dtype, part: int = 0, parts: int = 1) -> torch.Tensor:
    """Configurations part, part + parts, part + 2 parts, ... of an ensemble of ``theory`` as a tensor
    (all of them for one part; ValueError if of another theory or if the part is empty)."""
    from samplers.ensemble import read_ensemble

    ens = read_ensemble(path, start=part, step=parts)
    if theory_from_attrs(ens.attrs) != theory:
        raise ValueError(f"{path} holds {ens.attrs['theory']} {ens.attrs['params']} on "
                         f"{'x'.join(map(str, ens.attrs['shape']))}, not the model's theory")
    if len(ens.configs) == 0:
        raise ValueError(f"{path} holds no configurations" if parts == 1 else
                         f"{path} holds too few configurations for {parts} batch shards")
    return torch.as_tensor(ens.configs, device=device, dtype=dtype)


# model samples per chunk of a diffusion model's final evaluation: each costs a full Jacobian per ODE
# step, so small chunks let the progress bar move
DIFFUSION_EVAL_CHUNK = 8


def evaluate(flow: Flow, n: int, batch_size: int, seed: int, progress: bool = False) -> dict:
    """ESS/N and independence-MH acceptance of n fresh model samples (a separate generator), drawn
    ``batch_size`` at a time (a progress bar over the samples with ``progress``)."""
    gen = torch.Generator(device=next(flow.parameters()).device).manual_seed(seed)
    chunks = []
    with torch.no_grad(), tqdm(total=n, desc="final evaluation", unit="sample", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            x, log_q = flow.sample(min(batch_size, n - start), gen)
            chunks.append((flow.log_p(x) - log_q).cpu().numpy())
            bar.update(len(x))
    log_w = np.concatenate(chunks)
    return {"ess": ess_fraction(log_w), "acceptance": imh_acceptance(log_w), "n": n,
            "var_log_w": float(np.var(log_w[np.isfinite(log_w)]))}


def train(flow: Flow, config: TrainConfig, run_dir: Path, resume: bool = False,
          progress: bool = False) -> dict | None:
    """Train ``flow`` in ``run_dir`` (checkpoint.pt, metrics.jsonl, summary.json); with ``resume``,
    continue from run_dir's checkpoint exactly where it stopped. ``config.threads``, if set, becomes
    torch's CPU thread count. A non-finite loss or parameters, or a full disk, end training with a
    one-line TrainingError that says what is kept. Under torchrun every rank calls this, rank 0 alone
    writes run_dir; returns the summary (None on the other ranks)."""
    config.check()
    run_dir = Path(run_dir)
    group = distributed.join()
    with _disk_full_is_a_training_error(run_dir):
        if group.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        return _train(flow, config, run_dir, resume, progress, group)


def _train(flow: Flow, config: TrainConfig, run_dir: Path, resume: bool, progress: bool,
           group: distributed.Group) -> dict | None:
    """The body of ``train`` (run_dir exists)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    device, dtype = distributed.rank_device(config.device, group), getattr(torch, config.dtype)
    if device.type == "cpu":
        keep_freed_memory()  # page faults cost a training step up to a third (samplers/flows/nets.py)
    flow.to(device=device, dtype=dtype)
    shards = _shards(config, flow.theory, group, device, dtype)
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.lr)
    scheduler = _scheduler(optimizer, config)
    step = _restore(run_dir, flow, optimizer, scheduler, shards, group) if resume else 0
    model = distributed.wrap(distributed.ObjectiveModule(flow, objective_for(flow, config)), group, device)
    shard_size = config.batch_size // config.shards

    t_start = time.perf_counter()
    elapsed0 = _last_metric(run_dir / METRICS, "time") if resume and group.main else 0.0
    with open(run_dir / METRICS if group.main else os.devnull, "a") as log, \
            tqdm(total=config.steps, initial=step, desc=f"{flow.name} {config.objective}",
                 disable=not (progress and group.main)) as bar:
        while step < config.steps:
            optimizer.zero_grad(set_to_none=True)
            loss, log_w = _accumulate_gradients(model, shards, shard_size, group)
            loss = distributed.sum_over_ranks(loss, group) / config.shards  # the same on every rank
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} at step {step + 1}; {_what_is_kept(run_dir)}")
            log_w = None if log_w is None else distributed.cat_over_ranks(log_w, group)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            record = _record(step, loss, log_w, scheduler, elapsed0 + time.perf_counter() - t_start)
            log.write(json.dumps(record) + "\n")
            log.flush()
            _show(bar, record)
            if step % config.checkpoint_every == 0 or step == config.steps:
                if not all(torch.isfinite(p).all() for p in flow.parameters()):
                    raise TrainingError(f"parameters became non-finite by step {step}; {_what_is_kept(run_dir)}")
                states = distributed.gather_to_main([shard.state() for shard in shards], group)
                if group.main:
                    save_checkpoint(run_dir / CHECKPOINT, flow, config, step, optimizer, scheduler, states)
    summary = None
    if group.main:
        summary = _summarize(flow, config, run_dir, step, progress, group)
        write_atomically(run_dir / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    # every rank ends together: a torchrun node whose ranks ended early may shut its launcher down
    # before the others, and a launcher that hosts the rendezvous must not go first
    distributed.barrier(group)
    return summary


def _shards(config: TrainConfig, theory, group: distributed.Group, device, dtype) -> list[Shard]:
    """This rank's shards of the batch, each with its generators and its part of the ensemble."""
    shards = []
    for r in distributed.local_shards(config.shards, group):
        torch_seed, seq = distributed.shard_seeds(config.seed, r)
        data = load_ensemble(config.ensemble, theory, device, dtype, part=r, parts=config.shards) \
            if config.ensemble else None
        shards.append(Shard(r, torch.Generator(device=device).manual_seed(torch_seed), np.random.default_rng(seq), data))
    return shards


def _accumulate_gradients(model, shards: list[Shard], shard_size: int, group: distributed.Group):
    """Forward and backward over this rank's shards, gradients summed as the mean over them (DDP
    averages over the ranks at the last shard's backward). Returns (sum of the shards' losses,
    their log-weights concatenated, or None)."""
    losses, log_ws = [], []
    for i, shard in enumerate(shards):
        last = i == len(shards) - 1
        with model.no_sync() if group.world > 1 and not last else contextlib.nullcontext():
            loss, log_w = model(shard_size, shard.generator, shard.data_batch(shard_size))
            # backward before the check of the loss: a rank must not skip the collective of DDP's backward
            (loss / len(shards)).backward()
        losses.append(loss.detach())
        log_ws.append(log_w)
    log_w = None if log_ws[0] is None else torch.cat(log_ws)
    return torch.stack(losses).sum(), log_w


def _restore(run_dir: Path, flow, optimizer, scheduler, shards: list[Shard], group: distributed.Group) -> int:
    """Load run_dir's checkpoint into the training state (every rank reads it; rank 0 drops the
    metrics written after it). Returns its step."""
    ckpt = read_checkpoint(run_dir)
    flow.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    # a checkpoint from before shards holds the one shard's states under these keys
    states = ckpt["shards"] if "shards" in ckpt else [{"generator": ckpt["generator"], "data_rng": ckpt["data_rng"]}]
    for shard in shards:
        shard.set_state(states[shard.index])
    if group.main:
        _truncate_metrics(run_dir / METRICS, ckpt["step"])
    return ckpt["step"]


def _record(step: int, loss, log_w, scheduler, elapsed: float) -> dict:
    """One line of metrics.jsonl: loss, the batch's ESS/N and independence-MH acceptance (None
    for objectives that draw no model samples), learning rate, wall time so far."""
    lw = None if log_w is None else log_w.cpu().numpy()
    return {"step": step, "loss": loss.item(), "ess": None if lw is None else ess_fraction(lw),
            "acceptance": None if lw is None else imh_acceptance(lw),
            "lr": scheduler.get_last_lr()[0], "time": elapsed}


def _show(bar, record: dict) -> None:
    """The progress bar's postfix. ESS and acceptance are of one training batch, labelled so: they
    overstate a poor model (module docstring); the final values come after training."""
    shown = {"loss": f"{record['loss']:.3f}"}
    if record["ess"] is not None:
        shown["batch ESS"] = f"{record['ess']:.2f}"
        shown["batch acc"] = f"{record['acceptance']:.2f}"
    bar.set_postfix(shown, refresh=False)


def _summarize(flow, config: TrainConfig, run_dir: Path, step: int, progress: bool,
               group: distributed.Group) -> dict:
    """The final evaluation on ``eval_batch`` fresh samples and the summary of the run."""
    t_eval = time.perf_counter()
    chunk = DIFFUSION_EVAL_CHUNK if hasattr(flow, "dsm_loss") else config.batch_size
    final = evaluate(flow, config.eval_batch, chunk, seed=config.seed + 1, progress=progress) if config.eval_batch \
        else {"ess": None, "acceptance": None, "var_log_w": None, "n": 0}
    history = read_metrics(run_dir / METRICS)
    last = history[-1] if history else {}
    return {"model": flow.name, "objective": config.objective, "steps": step,
            "final_loss": last.get("loss", math.nan), "train_time_s": last.get("time", 0.0),
            "ess": final["ess"], "acceptance": final["acceptance"], "var_log_w": final["var_log_w"],
            "eval_samples": final["n"], "eval_time_s": time.perf_counter() - t_eval,
            "threads": torch.get_num_threads(), "ranks": group.world, "shards": config.shards, "warning": training_warning(history, final),
            **theory_identity(flow.theory)}


# ------------------------------------------------------------------------------------ divergence
DIVERGED_LOSS = 1e10  # |loss| beyond this is a diverged run, whatever the lattice
LOSS_GROWTH = 10.0  # the final loss may exceed the lowest by at most this many times the lowest's scale
ESS_COLLAPSE = 2.0  # final ESS (ESS/N x N) below this: one sample carries (nearly) all the weight
ESS_ONCE_GOOD = 0.1  # ... counted as a collapse only if some training batch had ESS/N at least this


def training_warning(history: list[dict], final: dict) -> str | None:
    """A one-line warning if the run looks diverged, else None. The criterion, on the loss history
    (metrics.jsonl) and the final evaluation:

    - diverged: the final loss is not finite or |loss| > DIVERGED_LOSS (1e10);
    - the loss grew: the median loss of the last K = min(10, ceil(n / 5)) steps exceeds the lowest loss
      of the run by more than LOSS_GROWTH (10) x max(1, |lowest|) -- an order of magnitude beyond the
      loss's own scale; batch noise of a sane run stays far below that;
    - the ESS collapsed: the final evaluation's ESS/N x N is below ESS_COLLAPSE (2) although some
      training batch had ESS/N >= ESS_ONCE_GOOD (0.1).
    """
    losses = [r["loss"] for r in history]
    if not losses:
        return None
    final_loss = losses[-1]
    if not math.isfinite(final_loss) or abs(final_loss) > DIVERGED_LOSS:
        return f"the loss diverged to {final_loss:.3g} at step {len(losses)}; lower --lr or --grad-clip and train again"
    k = min(10, math.ceil(len(losses) / 5))
    tail, lowest = float(np.median(losses[-k:])), min(losses)
    if tail - lowest > LOSS_GROWTH * max(1.0, abs(lowest)):
        best_step = losses.index(lowest) + 1
        return (f"the loss grew from {lowest:.4g} (step {best_step}) to {tail:.4g} (median of the last {k} steps): "
                f"training diverged; lower --lr or --grad-clip and train again")
    batch_ess = [r["ess"] for r in history if r.get("ess") is not None]
    if final.get("ess") is not None and final["n"] and batch_ess and max(batch_ess) >= ESS_ONCE_GOOD \
            and final["ess"] * final["n"] < ESS_COLLAPSE:
        return (f"the ESS collapsed: {final['ess'] * final['n']:.2f} of {final['n']} final samples, after a "
                f"batch ESS/N of {max(batch_ess):.2f} during training; the model is not usable as it is")
    return None


# ------------------------------------------------------------------------------------ run folder
def _what_is_kept(run_dir: Path) -> str:
    """What a stopped run leaves to resume from, for the error message."""
    step = _checkpoint_step(run_dir)
    if step is None:
        return f"no checkpoint was written yet, so there is nothing to resume from in {run_dir}"
    return f"the last good checkpoint (step {step}) is kept in {run_dir / CHECKPOINT}"


def _checkpoint_step(run_dir: Path) -> int | None:
    """The step of run_dir's checkpoint, None if there is none (or none readable)."""
    try:
        return read_checkpoint(run_dir)["step"]
    except ValueError:
        return None


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl ([] if there is none); a line cut short (by a kill or a full
    disk in mid-write) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint a resumed run continues from."""
    if path.exists():
        path.write_text("".join(json.dumps(r) + "\n" for r in read_metrics(path) if r["step"] <= step))


def _last_metric(path: Path, key: str) -> float:
    records = read_metrics(path)
    return float(records[-1][key]) if records else 0.0
