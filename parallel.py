"""Processes and devices: torchrun's environment, the process group, and how the model is
wrapped for data parallelism (DDP)."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel as DDP

from errors import UserError

@dataclass
class Dist:
    ddp: bool
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def master(self):
        return self.rank == 0


def setup_distributed(cfg):
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ  # set by torchrun
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={cfg.device!r} but CUDA is not available here: use --device=cpu")
    if name == "cuda" and ddp:
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if ddp:
        backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        torch_dist.init_process_group(backend=backend)
    return Dist(ddp, rank, local_rank, world_size, device)


def all_reduce_mean(t, dist):
    if dist.ddp:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        t /= dist.world_size
    return t


def wrap_data_parallel(model, dist):
    """The model the training step calls: DDP-wrapped under torchrun, else the model itself."""
    if not dist.ddp:
        return model
    return DDP(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
