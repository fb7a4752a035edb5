"""The adaptive evaluations' collectives (gloo on CPU, NCCL on CUDA; no-ops in one process).

Every tensor handed to a collective lives on the process group's device: the caller's tensors are
already on the model's device, which is the group's device (CUDA for NCCL, CPU for gloo).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist


def world_active(world_size: int) -> bool:
    return world_size > 1 and dist.is_available() and dist.is_initialized()


def all_reduce_grads(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Σ over ranks of every parameter's gradient (a missing gradient counts as zeros)."""
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not world_active(world_size):
        return
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[off:off + n].view_as(p.grad))
        off += n


def all_gather_cat(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """Concatenate (along dim 0) every rank's ``t`` (rows may differ in number), in rank order."""
    if not world_active(world_size):
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size)]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = torch.zeros((m - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = [torch.zeros((m, *t.shape[1:]), dtype=t.dtype, device=t.device) for _ in range(world_size)]
    dist.all_gather(parts, torch.cat([t, pad]))
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)])


def barrier(world_size: int) -> None:
    if world_active(world_size):
        dist.barrier()
