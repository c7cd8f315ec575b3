"""PyTorch DDP plumbing for ``torchrun``: process group, device, sharding work across ranks and gathering it on
rank 0. Used by training (``engine/``) and by prediction and evaluation (``predict/``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
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


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (NCCL on GPUs, gloo on CPU).

    Without ``WORLD_SIZE`` > 1 in the environment this is a single process and nothing is initialised.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistInfo]:
    """:func:`init_distributed` for the duration of a ``with`` block, then :func:`shutdown`."""
    info = init_distributed(device)
    try:
        yield info
    finally:
        shutdown(info)


def resolve_device(requested: str, info: DistInfo) -> torch.device:
    """``auto`` is the local rank's GPU when there is one, else the CPU."""
    if requested == "auto":
        return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{requested}' requested but CUDA is not available")
    if device.type == "cuda" and info.enabled:
        return torch.device(f"cuda:{info.local_rank}")
    return device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo, include_parameters: bool = False) -> None:
    """Copy rank 0's buffers (batch-norm statistics), and optionally parameters, to every rank.

    DDP keeps parameters identical and broadcasts buffers at the start of each forward, but the statistics that
    the last forward of an epoch updated differ per rank until then; call this before evaluating or saving.
    """
    if not info.enabled:
        return
    tensors = list(module.buffers()) + (list(module.parameters()) if include_parameters else [])
    for t in tensors:
        dist.broadcast(t.data, src=0)


def shard(count: int, info: DistInfo) -> list[int]:
    """This rank's share of ``count`` items: indices ``rank, rank + world_size, ...`` (no padding, no repeats)."""
    return list(range(info.rank, count, info.world_size))


def gather_shards(values: list[T], info: DistInfo) -> list[T] | None:
    """On rank 0, every rank's ``values`` (each rank's :func:`shard` of the same items) merged back into item
    order; ``None`` on the other ranks. Single process: ``values`` itself. Values must be picklable."""
    if not info.enabled:
        return values
    per_rank: list[list[T]] | None = [[] for _ in range(info.world_size)] if info.is_main else None
    dist.gather_object(values, per_rank, dst=0)
    if per_rank is None:
        return None
    merged: list[T] = []
    for k in range(max(len(v) for v in per_rank)):
        merged.extend(v[k] for v in per_rank if k < len(v))
    return merged
