"""Where a command runs: the torch device it names, and the process group when torchrun starts it.

Every command resolves `device=` here (irem-train, irem-eval, irem-study, irem-generate), so a
device the machine lacks is refused with the same message everywhere. Under `torchrun` (WORLD_SIZE >
1) a training joins the process group (gloo on CPU, NCCL on GPUs) and wraps its model in
DistributedDataParallel; each process then draws its own batches (the global batch is world size x
batch_size) and rank 0 alone logs and checkpoints.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from irem.errors import SettingError

DEVICE_CHOICES = "cpu, cuda, cuda:<index>, auto (cuda when available, else cpu)"


def resolve_device(name: str) -> torch.device:
    """The torch device `device=` names, refused with the choices when this machine lacks it: a
    CUDA device asked for without CUDA used to fail with a bare AssertionError inside torch."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise SettingError(f"device={name} is not a torch device. Valid choices: {DEVICE_CHOICES}.") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError(
                f"device={name} but torch.cuda.is_available() is False (no CUDA GPU or a CPU-only torch); "
                "use device=cpu or device=auto."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError(
                f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; use one of those, device=cuda or device=auto."
            )
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    return device


def distributed_world(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when started by torchrun with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def data_parallel(module: torch.nn.Module, device: torch.device, world_size: int) -> torch.nn.Module:
    """`module` wrapped for data-parallel training when there are several processes (DDP
    synchronises the gradients of what its module's forward computed), else itself."""
    if world_size <= 1:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def all_agree(flags: tuple[bool, ...], world_size: int) -> tuple[bool, ...]:
    """Each flag true when it is on any process: one process stopping alone would leave the others
    waiting in the next gradient all-reduce."""
    if world_size == 1:
        return flags
    both = torch.tensor([float(f) for f in flags])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in both)
