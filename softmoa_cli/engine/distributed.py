"""DistributedDataParallel through ``torchrun``: process group, device, sharding, reductions.

Semantics match a single process: every rank draws the same global batch and takes its
``rank::world`` share; the loss is scaled so that DDP's gradient average equals the
gradient of the global batch mean. Evaluation shards the clips and sums confusion matrices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .devices import resolve_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items):
        return items[self.rank::self.size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes (identity for one process)."""
        if self.size > 1:
            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
        return tensor.cpu()

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (after the run's last collective)."""
        if self.size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def setup(device_name: str) -> World:
    """The world of this process: a process group when started by torchrun, else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if size == 1:
        return World(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), device)
