"""The adaptive evaluations' collectives, over ``golf_fast.distributed`` (the package's one module
that talks to ``torch.distributed``; it stages tensors on the process group's device). In one
process every function is the identity."""

from __future__ import annotations

from typing import Iterable

import torch

from golf_fast import distributed as gd


def world_active(world_size: int) -> bool:
    return world_size > 1 and gd.is_initialized()


def all_reduce_grads(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Σ over ranks of every parameter's gradient (a missing gradient counts as zeros), one flat all-reduce."""
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not world_active(world_size) or not params:
        return
    gd.all_reduce_packed([p.grad for p in params], "sum")


def all_gather_list(t: torch.Tensor, world_size: int) -> list:
    """Every rank's ``t`` (the number of rows along dim 0 may differ), as a list in rank order."""
    if not world_active(world_size):
        return [t]
    sizes = gd.all_gather(torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)).view(-1).tolist()
    m = max(sizes)
    pad = torch.zeros((m - t.shape[0], *t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = gd.all_gather(torch.cat([t, pad]))
    return [parts[r, :n] for r, n in enumerate(sizes)]


def all_gather_cat(t: torch.Tensor, world_size: int) -> torch.Tensor:
    """Every rank's ``t`` concatenated along dim 0, in rank order."""
    return torch.cat(all_gather_list(t, world_size))


def all_gather_strings(items: list, world_size: int) -> list:
    """Every rank's list of strings, as a list (per rank) of lists; UTF-8 bytes, no pickle."""
    raw = torch.tensor(list("\n".join(items).encode("utf-8")), dtype=torch.uint8)
    return [bytes(p.tolist()).decode("utf-8").split("\n") if p.numel() else [] for p in all_gather_list(raw, world_size)]
