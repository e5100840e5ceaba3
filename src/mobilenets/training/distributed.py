"""torchrun's environment: one training function for one process and many.

Under ``torchrun`` (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` set) the process group is
initialised (gloo on CPU, NCCL on CUDA); otherwise everything is a no-op on a single process.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import nn

from mobilenets.errors import ConfigError


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
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: this machine has no CUDA GPU; use cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda are supported")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    return device


def init(device: torch.device) -> DistEnv:
    """Initialise the process group when run under torchrun; return this process's place."""
    env = read_env()
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is None or "MASTER_ADDR" not in os.environ:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(
                backend, store=_round_store(env, restart), rank=env.rank, world_size=env.world_size
            )
    return env


def _round_store(env: DistEnv, restart: str) -> dist.Store:
    """The rendezvous store, with a key space of its own for each elastic restart round.

    After a worker dies and torchrun restarts the group, torch 2.14's default store can hand the
    new round the old round's gloo addresses (seen here: the restarted rank 0 dialled the dead
    worker's port and the group failed). Prefixing every key with the restart count avoids it.
    """
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        env.world_size,
        is_master=not agent_store and env.rank == 0,
        timeout=timedelta(minutes=30),
        multi_tenant=not agent_store,
    )
    return dist.PrefixStore(f"mobilenets/restart_{restart}", store)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics span every process, for CPU (gloo) runs.

    torch's ``nn.SyncBatchNorm`` runs only on CUDA. This one all-reduces the per-channel sum,
    sum of squares and count with ``torch.distributed.nn.functional.all_reduce``, which is
    differentiable, so gradients flow through the global statistics exactly as in
    ``nn.SyncBatchNorm``. Outside training or a process group it is a plain ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and dist.is_available()
            and dist.is_initialized()
            and dist.get_world_size() > 1
        ):
            return super().forward(x)
        channels = x.shape[1]
        xf = x.float()
        count = xf.new_tensor([xf.numel() / channels])
        local = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count])
        with warnings.catch_warnings():  # its suggested successor is a private module
            warnings.simplefilter("ignore", FutureWarning)
            total = dist_nn.all_reduce(local)
        n = total[-1]
        mean = total[:channels] / n
        var = total[channels:-1] / n - mean * mean
        with torch.no_grad():
            momentum = (
                self.momentum
                if self.momentum is not None
                else 1 / float(self.num_batches_tracked + 1)
            )
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            self.running_var.mul_(1 - momentum).add_(var * n / (n - 1), alpha=momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return (xf * scale[None, :, None, None] + shift[None, :, None, None]).to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Synchronise BatchNorm statistics across processes: torch's on CUDA, ours on CPU."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                sync = GlooSyncBatchNorm(
                    child.num_features,
                    child.eps,
                    child.momentum,
                    child.affine,
                    child.track_running_stats,
                )
                sync.load_state_dict(child.state_dict())
                setattr(parent, name, sync)
    return model
