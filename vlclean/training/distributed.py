"""Where a training process runs: rank, world size and device, under torchrun or alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from vlclean.devices import resolve_device
from vlclean.params import Device


# -- devices, distribution -----------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """Where this process runs: rank, world size and device."""

    rank: int
    world_size: int
    device: Any  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Device) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (nccl on CUDA, gloo on CPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, key="runtime.train.device", local_rank=local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank if world > 1 else 0, world_size=world, device=dev)


def all_sum(values: list[float], dist_ctx: Dist) -> list[float]:
    if not dist_ctx.distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=dist_ctx.device if dist_ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def barrier(dist_ctx: Dist) -> None:
    if dist_ctx.distributed:
        import torch.distributed as dist

        dist.barrier()
