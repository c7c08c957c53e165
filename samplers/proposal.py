"""The proposal interface: how the generator uses any learned model with an exact density.

A learned model (a normalizing flow now; autoregressive and diffusion models later) implements

    sample(n, generator) -> (x, log_q)   n configurations, batch first (PHYSICS.md layouts), and the
                                         exact log-density log q(x) of the model at each, float64
    log_q(x) -> log_q                    the same exact log-density at given configurations
    theory                               the theory (and lattice) the model was made for

(``samplers.flows.Flow`` does). Names of the log-densities, never in doubt about sign or direction:
log q = the model's normalized log-density; log p = -S, the target's unnormalized log-density
(the float64 Numba action of the theory); log w = log p - log q, the log importance weight.

``ModelProposal`` wraps a trained model (a run folder of ``python -m train``) for the Markov chains
of samplers/learned_mh.py and samplers/hybrid.py, with no model-specific code there:

- exact densities in float64: by default the model runs in float64 for sampling and for log q, so
  log q is the log-density of the very float64 map that produced x (a float32 model's samples
  would not have exactly the density its float64 copy assigns to them). ``dtype="float32"`` is
  offered for speed and is an approximation (labeled so in the file's settings);
- a deterministic stream: proposal number i is entry i % B of batch i // B, whose prior draws come
  from a torch generator seeded by (seed, chain, i // B) (``stream_seed``; chain 0 of a set has a
  single chain's stream). A resumed chain regenerates the batch it stopped in, so it continues bit
  for bit; the chain itself stays sequential;
- many chains, one pass: the chains of a set each have their own stream but share one loaded model
  (``_shared_net``), and ``sample_batches`` / ``log_q_batch`` serve all of them in one model pass:
  the prior draws of each chain's batch come from that chain's generator, and a model's ``push``
  (the deterministic map from prior draws to samples and log q) treats rows independently, so
  chain k's proposals are those it would get alone (bitwise on CPU in our tests; exactly the same
  map in any case). Autoregressive models, which draw site by site, have no ``push`` but a
  ``sample_streams``: one pass over the sites for all chains, each chain's rows drawing from its own
  generator at every site (the same draws as alone). Only a model without either (a diffusion
  model's reverse SDE) samples each chain's batch in its own pass; log q is one pass for all chains;
- ``symmetrize="z2"`` (phi^4 only): the exact mixture q_sym(x) = [q(x) + q(-x)] / 2, sampled by
  drawing x ~ q and flipping its sign with probability 1/2; log q_sym needs one more pass (log q
  at -x). This restores the phi -> -phi symmetry a RealNVP does not have, changing log q with it
  (never a sign flip applied after sampling with the old log q);
- ``sampling``: options of how the model generates, for models that have them (diffusion:
  ``{"sampler": "ode"|"sde", "n_steps": ..., "integrator": ..., "corrector_steps": ..., "snr": ...}``,
  see samplers/diffusion/model.py). A model whose samples come without a density (a diffusion model's
  reverse SDE, log q = NaN) serves model-samples only; learned-mh and hybrid refuse it;
- ``target``: generate at another coupling than the model was trained at (diffusion: ``{"beta": b}``
  for u1/xy, ``{"kappa": k}`` for phi4); the proposal's theory becomes the target theory, and the
  log q of the retargeted model is still exact, so chains at the new coupling are exact.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

SYMMETRIES = {"none": (), "z2": ("phi4",)}  # symmetrize option -> theories it applies to


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint of a run folder (or the file itself)."""
    from .training import CHECKPOINT

    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


@dataclass
class ModelProposal:
    """Proposals from the trained model at ``path`` (run folder or checkpoint file).

    path: the run folder; sha256: the checkpoint's hash ("" = take the file's, else it must match);
    batch_size: proposals drawn per model pass; device: torch device; dtype: "float64" (exact) or
    "float32" (approximate log q); seed: of the proposal stream; symmetrize: "none" or "z2".
    """

    path: str
    sha256: str = ""
    batch_size: int = 256
    device: str = "cpu"
    dtype: str = "float64"
    seed: int = 0
    chain: int = 0
    symmetrize: str = "none"
    sampling: dict = field(default_factory=dict)
    target: dict = field(default_factory=dict)
    model: str = field(default="", init=False)
    theory: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        ckpt = checkpoint_file(self.path)
        if not ckpt.exists():
            raise ValueError(f"{self.path}: no trained model (no {ckpt.name})")
        digest = file_sha256(ckpt)
        if self.sha256 and digest != self.sha256:
            raise ValueError(f"{ckpt} changed since the chain started (sha256 {digest[:12]} != "
                             f"{self.sha256[:12]}); a chain continues only with the model it began with")
        self.sha256 = digest
        if self.batch_size < 1:
            raise ValueError(f"--proposal-batch must be >= 1, got {self.batch_size}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"proposal dtype must be float32 or float64, got {self.dtype!r}")
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise ValueError(f"unknown --device {self.device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device}: CUDA is not available on this machine")
        self.net, self.model = _shared_net(ckpt, digest, self.device, self.dtype, self.sampling, self.target)
        self.theory = self.net.theory
        if self.symmetrize not in SYMMETRIES:
            raise ValueError(f"unknown symmetrize {self.symmetrize!r}; choose from {', '.join(SYMMETRIES)}")
        if self.symmetrize != "none" and self.theory.name not in SYMMETRIES[self.symmetrize]:
            raise ValueError(f"symmetrize {self.symmetrize} is for {', '.join(SYMMETRIES[self.symmetrize])}, "
                             f"not {self.theory.name}")
        self._batch_index = -1
        self._batch: tuple[np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------- settings (what files store)
    def settings(self) -> dict:
        s = {k: v for k, v in asdict(self).items() if k not in ("model", "theory")}
        s["path"] = str(self.path)
        s["exact"] = self.dtype == "float64" and self.has_density
        return s

    @property
    def has_density(self) -> bool:
        """Whether the model returns log q with its samples (all do, but a diffusion model's SDE)."""
        return getattr(self.net, "exact_density", True)

    @classmethod
    def from_settings(cls, settings: dict) -> "ModelProposal":
        return cls(**{k: v for k, v in settings.items() if k != "exact"})

    # ---------------------------------------------------------------- densities
    def _generator(self, batch: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(stream_seed(self.seed, self.chain, batch))

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=self.device, dtype=getattr(torch, self.dtype))

    def _log_q_torch(self, x: torch.Tensor, log_q_x: torch.Tensor | None = None) -> torch.Tensor:
        """log q (or log q_sym) at a batch x; log_q_x: log q(x) if already known."""
        lq = self.net.log_q(x) if log_q_x is None else log_q_x
        if self.symmetrize == "z2":
            lq = torch.logaddexp(lq, self.net.log_q(-x)) - math.log(2.0)
        return lq

    def sample_batch(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch number ``batch`` of the stream: configurations (B, *config_shape) float64 and log q."""
        return sample_batches([self], [batch])[0]

    def proposal(self, index: int) -> tuple[np.ndarray, float]:
        """Proposal number ``index`` of the stream and its exact log q (float64)."""
        b, j = divmod(int(index), self.batch_size)
        if b != self._batch_index:
            self.hold_batch(b, self.sample_batch(b))
        x, lq = self._batch
        return x[j], float(lq[j])

    def needs_batch(self, index: int) -> int | None:
        """The batch proposal ``index`` lies in, if it is not the one held (None if it is)."""
        b = int(index) // self.batch_size
        return None if b == self._batch_index else b

    def hold_batch(self, batch: int, content: tuple[np.ndarray, np.ndarray]) -> None:
        """Keep batch number ``batch`` (from ``sample_batches``) for the proposals that follow."""
        self._batch_index, self._batch = batch, content

    def log_q(self, x: np.ndarray) -> float:
        """Exact log q of one configuration (e.g. the current state of a chain, or a hot start)."""
        return float(self.log_q_batch(x[None])[0])

    def log_q_batch(self, xs: np.ndarray) -> np.ndarray:
        """Exact log q of configurations xs (n, *config_shape), one model pass, float64."""
        with torch.no_grad():
            return self._log_q_torch(self._tensor(xs)).detach().cpu().numpy().astype(np.float64)

    def check_theory(self, theory) -> None:
        """One-line refusal of a model made for another theory, coupling or lattice."""
        if theory != self.theory:
            mine = ", ".join(f"{k}={v}" for k, v in self.theory.params().items())
            want = ", ".join(f"{k}={v}" for k, v in theory.params().items())
            raise ValueError(f"the model in {self.path} is for {self.theory.name} ({mine}) on "
                             f"{'x'.join(map(str, self.theory.shape))}, not {theory.name} ({want}) on "
                             f"{'x'.join(map(str, theory.shape))}"
                             + ("; generate at another coupling with --target-beta / --target-kappa"
                                if hasattr(self.net, "retarget") else ""))


def stream_seed(seed: int, chain: int, batch: int) -> int:
    """The torch seed of batch ``batch`` of chain ``chain``'s proposal stream: chain 0 keeps a single
    chain's SeedSequence([seed, batch]); chain k > 0 is its spawned child (spawn key (k,)), distinct
    from every other (seed, chain, batch)."""
    ss = np.random.SeedSequence([seed, batch], spawn_key=(chain,) if chain else ())
    return int(ss.generate_state(1, np.uint64)[0])


_NETS: dict = {}


def _shared_net(ckpt: Path, digest: str, device: str, dtype: str, sampling: dict, target: dict):
    """The model of checkpoint ``ckpt`` (hash ``digest``) on ``device`` in ``dtype`` with its sampling
    and target options, loaded once per process and shared by every chain that uses it (the model
    is read-only while chains run). Returns (net, model name)."""
    import json

    from .training import load_model

    key = (str(ckpt.resolve()), digest, str(device), dtype, json.dumps(sampling, sort_keys=True),
           json.dumps(target, sort_keys=True))
    if key not in _NETS:
        net, info = load_model(ckpt, device=device)
        net.to(dtype=getattr(torch, dtype)).eval()
        for option, method, value in (("sampling", "set_sampling", sampling), ("target", "retarget", target)):
            if value:
                if not hasattr(net, method):
                    raise ValueError(f"{info['model']} models have no {option} options (diffusion models do)")
                getattr(net, method)(**value)
        _NETS[key] = (net, info["model"])
    return _NETS[key]


def sample_batches(proposals: list[ModelProposal], batches: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batch ``batches[i]`` of the stream of ``proposals[i]``, for every i, in as few model passes as
    possible: one for all proposals of one shared model whose net has a ``push`` (prior draws from
    each stream's own generator, then one push) or a ``sample_streams`` (autoregressive: one pass over
    the sites, each stream's conditional draws from its own generator), else one per proposal. Each result is what
    ``proposals[i]`` gives alone: configurations (B, *config_shape) float64 and log q float64."""
    out: list = [None] * len(proposals)
    groups: dict = {}
    for i, p in enumerate(proposals):
        groups.setdefault((id(p.net), p.symmetrize), []).append(i)
    for members in groups.values():
        head = proposals[members[0]]
        gens = [proposals[i]._generator(batches[i]) for i in members]
        sizes = [proposals[i].batch_size for i in members]
        with torch.no_grad():  # not inference_mode: exact densities may need autograd (diffusion Jacobians)
            if hasattr(head.net, "push") and head.has_density:
                z = torch.cat([head.net.sample_prior(n, g) for n, g in zip(sizes, gens)])
                x, lq = head.net.push(z)
            elif hasattr(head.net, "sample_streams"):  # autoregressive: one pass over the sites, own draws
                x, lq = head.net.sample_streams(sizes, gens)
            else:
                pairs = [head.net.sample(n, g) for n, g in zip(sizes, gens)]
                x, lq = torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])
            if head.symmetrize == "z2":  # q_sym(s x) = q_sym(x) = [q(x) + q(-x)] / 2 for either sign s
                lq = head._log_q_torch(x, lq)
                sign = torch.cat([torch.randint(0, 2, (n,), generator=g, device=x.device) for n, g in zip(sizes, gens)])
                x = x * (sign * 2 - 1).to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        xs = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float64)
        lqs = lq.detach().cpu().numpy().astype(np.float64)
        start = 0
        for i, n in zip(members, sizes):
            out[i] = (xs[start:start + n], lqs[start:start + n])
            start += n
    return out
