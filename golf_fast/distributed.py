"""Process setup and collectives: the one place that talks to ``torch.distributed``.

Setup: :func:`init_distributed` reads torchrun's contract from the environment it sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process
group (NCCL on CUDA, gloo on CPU); without torchrun it describes one plain process. Everything
else is typed configuration.

Collectives (:func:`all_reduce`, :func:`broadcast`, :func:`all_gather`, :func:`barrier`,
:func:`broadcast_str`) are thin wrappers over ``torch.distributed`` that put the tensor on the
process group's device first: ``cuda:<current device>`` under NCCL (which only reduces CUDA
tensors), CPU under gloo. A tensor on another device is copied there, reduced, and copied back
into the caller's tensor, so ``all_reduce(cpu_scalar)`` works under NCCL too. With no process
group (one process), every collective is the identity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "avg": "AVG", "product": "PRODUCT"}


@dataclass
class Dist:
    """This process's place in the job: rank, world size, local rank, its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False
    """Whether :func:`init_distributed` created the process group (then :func:`shutdown` destroys it)."""

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str = "auto") -> Dist:
    """Join torchrun's process group when launched by it (``WORLD_SIZE`` > 1), else one process.

    ``device_pref``: ``auto`` (CUDA when available), ``cuda`` or ``cpu``.
    """
    if device_pref not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device_pref: expected auto, cuda or cpu, got {device_pref!r}")
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK: expected integers from torchrun ({e})") from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise ValueError(f"RANK/WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    use_cuda = torch.cuda.is_available() if device_pref == "auto" else device_pref == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("run.device: cuda was asked for but no CUDA device is available")
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    here = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
        here = True
    return Dist(rank, world, local, device, here)


def shutdown(d: Dist) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if not isinstance(d, Dist):
        raise TypeError(f"d: expected a Dist, got {type(d).__name__}")
    if d.initialized_here and is_initialized():
        dist.destroy_process_group()


def is_initialized() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def world_size(group: Optional[Any] = None) -> int:
    """Processes in ``group`` (the default group), 1 without a process group."""
    return dist.get_world_size(group) if is_initialized() else 1


def rank(group: Optional[Any] = None) -> int:
    """This process's rank in ``group`` (the default group), 0 without a process group."""
    return dist.get_rank(group) if is_initialized() else 0


def device_for_backend(backend: str, cuda_index: Optional[int] = None) -> torch.device:
    """The device a backend's collectives take: ``cuda:<cuda_index>`` for NCCL (default: the current
    CUDA device, which :func:`init_distributed` set to ``LOCAL_RANK``), CPU otherwise (gloo, mpi)."""
    if not isinstance(backend, str) or not backend:
        raise ValueError(f"backend: expected a backend name such as 'nccl' or 'gloo', got {backend!r}")
    if cuda_index is not None and not (isinstance(cuda_index, int) and cuda_index >= 0):
        raise ValueError(f"cuda_index: expected a non-negative int or None, got {cuda_index!r}")
    if "nccl" in backend.lower():
        return torch.device("cuda", torch.cuda.current_device() if cuda_index is None else cuda_index)
    return torch.device("cpu")


def group_device(group: Optional[Any] = None) -> torch.device:
    """The device ``group``'s collectives need (CPU without a process group)."""
    if not is_initialized():
        return torch.device("cpu")
    return device_for_backend(str(dist.get_backend(group)))


def _reduce_op(op: str):
    if op not in _OPS:
        raise ValueError(f"op: expected one of {sorted(_OPS)}, got {op!r}")
    return getattr(dist.ReduceOp, _OPS[op])


def _check_tensor(tensor: Any, name: str = "tensor") -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")


class _Done:
    """A finished collective: ``wait()`` returns at once (the handle of a staged async collective)."""

    def wait(self) -> bool:
        return True


def all_reduce(tensor: torch.Tensor, op: str = "sum", group: Optional[Any] = None, async_op: bool = False):
    """Reduce ``tensor`` over ``group`` in place (``op``: sum, max, min, avg, product); returns the tensor,
    or the work handle when ``async_op`` (a tensor staged through the group's device completes at once).

    ``avg`` needs NCCL; on gloo use ``sum`` and divide.
    """
    _check_tensor(tensor)
    red = _reduce_op(op)
    if not is_initialized():
        return _Done() if async_op else tensor
    dev = group_device(group)
    if tensor.device == dev:
        work = dist.all_reduce(tensor, op=red, group=group, async_op=async_op)
        return work if async_op else tensor
    staged = tensor.to(dev)
    dist.all_reduce(staged, op=red, group=group)
    tensor.copy_(staged)
    return _Done() if async_op else tensor


def broadcast(tensor: torch.Tensor, src: int = 0, group: Optional[Any] = None) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s; returns it."""
    _check_tensor(tensor)
    if not isinstance(src, int) or src < 0:
        raise ValueError(f"src: expected a non-negative rank, got {src!r}")
    if not is_initialized():
        if src != 0:
            raise ValueError(f"src: expected 0 without a process group, got {src}")
        return tensor
    dev = group_device(group)
    if tensor.device == dev:
        dist.broadcast(tensor, src=src, group=group)
        return tensor
    staged = tensor.to(dev)
    dist.broadcast(staged, src=src, group=group)
    return tensor.copy_(staged)


def all_gather(tensor: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
    """Every rank's ``tensor`` stacked along a new dim 0: shape (world, *tensor.shape), on ``tensor``'s device.

    All ranks must pass the same shape and dtype.
    """
    _check_tensor(tensor)
    if not is_initialized():
        return tensor.unsqueeze(0).clone()
    dev = group_device(group)
    inp = tensor.to(dev).contiguous()
    parts = [torch.empty_like(inp) for _ in range(world_size(group))]
    dist.all_gather(parts, inp, group=group)
    return torch.stack(parts).to(tensor.device)


def barrier(group: Optional[Any] = None) -> None:
    """Wait for every rank of ``group`` (nothing without a process group)."""
    if is_initialized():
        dist.barrier(group=group)


def broadcast_str(text: str, src: int = 0, group: Optional[Any] = None) -> str:
    """Rank ``src``'s ``text`` on every rank (UTF-8 bytes in a uint8 tensor; no pickle)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if not is_initialized():
        return text
    raw = text.encode("utf-8")
    n = int(broadcast(torch.tensor([len(raw)], dtype=torch.int64), src, group))
    buf = torch.tensor(list(raw), dtype=torch.uint8) if rank(group) == src else torch.zeros(n, dtype=torch.uint8)
    if n:
        broadcast(buf, src, group)
    return bytes(buf.tolist()).decode("utf-8")
