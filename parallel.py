"""Processes and devices: torchrun's environment, the process group, and how the model is spread
over the ranks: DDP (every rank holds the whole model) or FSDP2 (`fully_shard`: each rank holds
1/world_size of the weights, gradients and optimizer state)."""

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
import torch.distributed as torch_dist
from torch import Tensor
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

from errors import UserError

if TYPE_CHECKING:
    from model import GPT
    from train_config import TrainConfig


@dataclass
class Dist:
    distributed: bool  # a process group exists (torchrun, or FSDP in a single process): collectives are needed
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0


def choose_device(name: str, cuda_available: bool, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """The device of this process for the `device` key: 'auto' is CUDA when there is one, else the CPU;
    'cuda' is GPU number local_rank, always with its index, which torch.cuda.set_device needs."""
    if name == "auto":
        name = "cuda" if cuda_available else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type != "cuda":
        return device
    if not cuda_available:
        raise UserError(f"device={name!r} but CUDA is not available here: use --device=cpu")
    if device.index is not None and world_size > 1:
        raise UserError(f"device={name!r} would put all {world_size} ranks on one GPU: use device='cuda'")
    return device if device.index is not None else torch.device("cuda", local_rank)


def choose_backend(name: str, device: torch.device) -> str:
    """The process-group backend for the `backend` key: 'auto' is NCCL on CUDA, else gloo."""
    return name if name != "auto" else ("nccl" if device.type == "cuda" else "gloo")


def setup_distributed(cfg: "TrainConfig") -> Dist:
    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = choose_device(cfg.device, torch.cuda.is_available(), local_rank, world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = choose_backend(cfg.backend, device)
    if under_torchrun:
        torch_dist.init_process_group(backend=backend)
    elif cfg.parallelism == "fsdp":  # FSDP needs a process group even alone (e.g. one GPU, or resuming on 1 rank)
        torch_dist.init_process_group(backend=backend, store=torch_dist.HashStore(), rank=0, world_size=1)
    return Dist(torch_dist.is_initialized(), rank, local_rank, world_size, device)


def all_reduce_mean(t: Tensor, dist: Dist) -> Tensor:
    if dist.distributed:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        t /= dist.world_size
    return t


def parallelize(
    model: "GPT", cfg: "TrainConfig", dist: Dist, dtype: str, use_compile: bool
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Place the model (built on the CPU) for cfg.parallelism: (the module the training step calls, the one
    evaluation calls). DDP: the compiled model, DDP-wrapped under torchrun for training, bare for evaluation (no
    gradients to synchronise). FSDP2: both are the model, sharded in place: each block one unit, the root the rest
    (the tied embedding / LM head stays one parameter); each rank's shards go to its device, never the whole."""
    model.activation_checkpointing = cfg.activation_checkpointing
    if cfg.parallelism == "fsdp":
        mesh = init_device_mesh(dist.device.type, (dist.world_size,))
        # bf16 compute with fp32 master weights and fp32 gradient reduction (CUDA); fp32 elsewhere
        mp = MixedPrecisionPolicy()
        if dist.device.type == "cuda" and dtype == "bfloat16":
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in model.transformer.h:
            if use_compile:
                block.compile()  # per block, in place: FSDP's hooks stay outside the graphs and the names unchanged
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        return model, model
    model.to(dist.device)
    compiled = cast(torch.nn.Module, torch.compile(model)) if use_compile else model
    if not dist.distributed:
        return compiled, compiled
    return DDP(compiled, device_ids=[dist.device.index] if dist.device.type == "cuda" else None), compiled


def global_norm(tensors: list[Tensor]) -> Tensor:
    """The 2-norm of all tensors together, a float64 tensor equal on every rank (FSDP's DTensors: one
    all-reduce of the shards' partial norms). In float32 its rounding would depend on how the tensors are
    sharded, and so would gradient clipping, and the whole run, on the number of ranks."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float64)))
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def grad_sync(model: torch.nn.Module, last: bool) -> AbstractContextManager:
    """DDP all-reduces the gradients on the last micro-step only (no_sync before it). FSDP reduce-scatters them
    after every micro-step: holding them back would keep every rank's full unsharded gradient in memory."""
    return model.no_sync() if isinstance(model, DDP) and not last else nullcontext()
