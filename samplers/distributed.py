"""Training on several processes: torch.distributed under torchrun, with DistributedDataParallel.

    torchrun --standalone --nproc-per-node 2 -m train ...          (one machine)
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m train ...

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; ``join()`` reads them and starts the process group:
gloo for CPU tensors, and nccl for CUDA tensors where CUDA is available (rank q trains on
cuda:LOCAL_RANK). Without torchrun it is the one-process group and starts nothing.

Shards. The global batch is drawn as S shards (``TrainConfig.shards``, by default the number of ranks
of a new run), each with its own generators seeded by (seed, r) alone: shard 0 by ``seed`` itself
(so a one-shard run is the run without shards), shard r > 0 by the SeedSequence ``chain_seed(seed,
r)``. Rank q of W draws shards q S/W ... (q + 1) S/W - 1 and accumulates their gradients; DDP
averages over the ranks. So a run computes the same numbers on any W dividing S, up to the
rounding of the gradient sum: ``torchrun --nproc-per-node 2`` and ``python -m train --shards 2``
train the same model. An ensemble (forward-kl, dsm) is split too: shard r samples only the
configurations r, r + S, r + 2S, ... of the file, and each rank reads only its shards' part.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from .chain import chain_seed


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes metrics, checkpoints and the summary, and prints."""
        return self.rank == 0


def group_from_env() -> Group:
    """The group torchrun describes in the environment (WORLD_SIZE, RANK, LOCAL_RANK)."""
    try:
        return Group(rank=int(os.environ.get("RANK", 0)), world=int(os.environ.get("WORLD_SIZE", 1)),
                     local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (they are set by torchrun)") from None


def join() -> Group:
    """This process's group; under torchrun with more than one rank, the process group is started
    (once): gloo, plus nccl for CUDA tensors where CUDA is available."""
    group = group_from_env()
    if group.world > 1 and not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return group


def leave() -> None:
    """End the process group, if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(group: Group) -> None:
    if group.world > 1:
        dist.barrier()


def rank_device(device: str, group: Group) -> torch.device:
    """The device this rank trains on: ``device``, with CUDA ranks on cuda:LOCAL_RANK under torchrun."""
    dev = torch.device(device)
    if dev.type == "cuda" and group.world > 1:
        dev = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(dev)
    return dev


# ------------------------------------------------------------------------------------ shards
def local_shards(shards: int, group: Group) -> range:
    """The shards of the global batch that this rank draws (ValueError if W does not divide S)."""
    if shards % group.world:
        raise ValueError(f"--shards {shards}: {group.world} ranks cannot share {shards} batch shards; "
                         f"use a number of ranks that divides it")
    per = shards // group.world
    return range(group.rank * per, (group.rank + 1) * per)


def shard_seeds(seed: int, shard: int) -> tuple[int, np.random.SeedSequence]:
    """(torch seed, numpy SeedSequence) of shard ``shard``: ``seed`` itself for shard 0, the spawned
    child ``chain_seed(seed, shard)`` for the others."""
    ss = chain_seed(seed, shard)
    return (seed if shard == 0 else int(ss.generate_state(1, np.uint64)[0])), ss


@dataclass
class Shard:
    """One shard of the global batch: its index, its generators and its part of the ensemble."""
    index: int
    generator: torch.Generator
    data_rng: np.random.Generator
    data: torch.Tensor | None = None

    def data_batch(self, size: int) -> torch.Tensor | None:
        """``size`` configurations drawn with replacement from this shard's part of the ensemble."""
        if self.data is None:
            return None
        return self.data[torch.as_tensor(self.data_rng.integers(0, len(self.data), size), device=self.data.device)]

    def state(self) -> dict:
        return {"generator": self.generator.get_state(), "data_rng": self.data_rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.data_rng.bit_generator.state = state["data_rng"]


# ------------------------------------------------------------------------------------ collectives
class ObjectiveModule(torch.nn.Module):
    """The model with its objective as one module whose forward is the loss, so that DDP (which
    syncs gradients of what a forward produced) wraps training as it is; one process uses it bare."""

    def __init__(self, flow, objective):
        super().__init__()
        self.flow = flow
        self.objective = objective

    def forward(self, batch_size: int, generator: torch.Generator, data):
        return self.objective.loss(self.flow, batch_size, generator, data)


def wrap(module: ObjectiveModule, group: Group, device: torch.device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel under torchrun (parameters broadcast from rank 0), else as is."""
    if group.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def sum_over_ranks(value: torch.Tensor, group: Group) -> torch.Tensor:
    if group.world > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def cat_over_ranks(value: torch.Tensor, group: Group) -> torch.Tensor:
    """The ranks' equal-sized tensors concatenated in rank order (so in shard order)."""
    if group.world == 1:
        return value
    parts = [torch.empty_like(value) for _ in range(group.world)]
    dist.all_gather(parts, value.contiguous())
    return torch.cat(parts)


def gather_to_main(items: list, group: Group) -> list | None:
    """The ranks' lists concatenated in rank order, on rank 0 (None elsewhere)."""
    if group.world == 1:
        return list(items)
    gathered = [None] * group.world if group.main else None
    dist.gather_object(items, gathered, dst=0)
    return [item for part in gathered for item in part] if group.main else None
