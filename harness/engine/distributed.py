"""torchrun support: ``torchrun --nproc-per-node N -m harness run ...``.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; we join the process group (NCCL on GPUs, gloo on
CPU), give each rank its own GPU, and let only rank 0 log and write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Dist, str]:
    """Join the process group if launched by torchrun; returns (Dist, device name to use)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device_name
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    return Dist(rank, local_rank, world), device_name


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def any_rank(d: Dist, flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on one: ranks that act on a signal must agree on the
    step, or one waits in a barrier while another is in the next step's all-reduce."""
    return all_reduce_sum(int(flag), device) > 0 if d.enabled else flag


def all_reduce_sum(value: int, device: torch.device) -> int:
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t)
    return int(t.item())
