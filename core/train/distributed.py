"""torchrun DDP: the same `dfine train` command on N processes.

gloo on CPU, nccl on CUDA; each rank sees its shard of a seeded, epoch-dependent
permutation (so data order is reproducible and a resume can skip exactly the batches
already done); only rank 0 writes files and events.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. one rank got SIGTERM)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, sync_bn: bool) -> nn.Module:
    if not info.enabled:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # the mask head / denoising branches may be unused on some steps (detect task, no GT)
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


class EpochShardSampler(Sampler[int]):
    """DistributedSampler semantics (seeded permutation per epoch, padded to a multiple of
    ``world_size * batch_size`` so every rank has the same number of full batches) plus
    ``skip_batches`` to resume mid-epoch."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True, drop_last: bool = True) -> None:
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch = 0
        self.skip_batches = 0

    def batches_per_epoch(self) -> int:
        per_step = self.batch_size * self.world
        if self.drop_last and self.n >= per_step:
            return self.n // per_step
        return math.ceil(self.n / per_step)

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch = epoch
        self.skip_batches = skip_batches

    def _global_order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.batches_per_epoch() * self.batch_size * self.world
        while len(order) < total:  # pad by repeating (tiny datasets, DDP)
            order += order[: total - len(order)]
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        order = self._global_order()
        # rank r takes every world-th *batch slot*, so a global step covers order[k*B*W:(k+1)*B*W]
        mine = [order[i] for i in range(len(order)) if (i // self.batch_size) % self.world == self.rank]
        return iter(mine[self.skip_batches * self.batch_size:])

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.skip_batches) * self.batch_size
