"""torchrun's environment: one training function for one process and many.

Under ``torchrun`` (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` set) the process group is
initialised (gloo on CPU, NCCL on CUDA); otherwise everything is a no-op on a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def read_env() -> DistEnv:
    """The torchrun variables of this process (a single process when they are absent)."""
    return DistEnv(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def pick_device(name: str, env: DistEnv) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    return device


def init(device: torch.device) -> DistEnv:
    """Initialise the process group when run under torchrun; return this process's place."""
    env = read_env()
    if env.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return env


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
