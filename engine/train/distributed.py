"""Train stage: training on several processes (GPUs or machines) launched by torchrun.

torchrun starts one process per device and sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous
address in the environment. Every process runs the same train_pair: the model is wrapped in
DistributedDataParallel (gradients averaged across processes each step, so the weights stay equal),
each process draws its own batches (its own data seed), and the first process alone saves, reports
and writes previews. Without torchrun (WORLD_SIZE unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    """How many processes train together (1 when not launched by torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """The process that saves, reports and writes previews (the only one without torchrun)."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; returns this process's device.

    gloo on CPU, nccl on CUDA (where each process takes the GPU of its LOCAL_RANK).
    """
    if not is_distributed():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """The module wrapped in DistributedDataParallel when distributed, else itself."""
    if not is_distributed() or not dist.is_initialized():
        return module
    ids = [device.index] if device.type == "cuda" else None
    # the weights are broadcast from rank 0 here, so every process starts from the same model
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def shared_seed(seed: int, device: torch.device) -> int:
    """Rank 0's `seed` on every process: random choices that must agree (lr dropout masks)."""
    if not is_distributed() or not dist.is_initialized():
        return seed
    t = torch.tensor([seed], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t.item())


def data_seed(seed: int | None) -> int | None:
    """A different data seed per process: the same seed everywhere would train on the same batches."""
    if seed is None:
        return None
    return seed + 1000 * rank()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def from_main(obj: object) -> object:
    """Rank 0's `obj` on every process (what the main process decided: stop, commands)."""
    if not is_distributed() or not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]
