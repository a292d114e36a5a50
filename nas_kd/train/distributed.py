"""Data-parallel training over ``torchrun`` processes (gloo on CPU, NCCL on CUDA).

Every rank runs the same loop on the same global batch order, keeps its slice of each batch
(``shard``) and samples the same architectures (the sampler is seeded by (seed, epoch, step),
not by rank). After the whole sandwich has been back-propagated, ``average_gradients`` makes
one all-reduce per parameter tensor: the same update as PyTorch's DistributedDataParallel,
without its per-backward hooks, which fire once per sandwich member and expect every
parameter to be used. Only rank 0 writes checkpoints, metrics and results.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn


def world_size() -> int:
    """Number of processes (1 when not launched by torchrun)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    """True on the process that writes files."""
    return rank() == 0


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (no-op for a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def local_device(device: torch.device) -> torch.device:
    """On CUDA with several local processes, the GPU of this process's local rank."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    return device


def shard(*batch: torch.Tensor) -> list[torch.Tensor]:
    """This rank's slice (every ``world_size``-th sample) of each tensor of a global batch."""
    n = world_size()
    return list(batch) if n == 1 else [t[rank()::n] for t in batch]


def broadcast_model(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size() > 1:
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)


def average_gradients(model: nn.Module) -> None:
    """Average accumulated gradients over ranks.

    Parameters without a gradient are skipped; every rank ran the same architectures, so
    the set of parameters with gradients is the same on every rank.
    """
    n = world_size()
    if n == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(n)


def sum_over_ranks(value: float, device: torch.device) -> float:
    """``value`` summed over ranks (itself for a single process): e.g. a batch's correct count, so that every
    rank takes the same decision from the whole batch."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if world_size() > 1:
        dist.barrier()

