"""The collective-communication adapter of Parallel Muon (the only place that knows backends).

Parallel Muon needs two asynchronous collectives on a process group:

* ``reduce_scatter_avg(out, inp)``: ``out = mean over ranks of inp[rank·s:(rank+1)·s]`` with
  ``s = out.shape[0]`` (inp: (world·s, ...), out: (s, ...));
* ``all_gather(out, inp)``: ``out[r·s:(r+1)·s] = inp of rank r``.

Each returns a handle with ``wait()``. NCCL runs ``reduce_scatter_tensor(op=AVG)`` natively.
Other backends (gloo) may lack ``reduce_scatter_tensor`` or ``ReduceOp.AVG`` (older torch
releases), so ``mode="auto"`` uses the native SUM reduce-scatter where the backend has it and
otherwise emulates it with an ``all_reduce(SUM)`` of the (scratch) input followed, at
``wait()``, by copying this rank's slice and dividing by the world size. ``mode`` can force
either path (``"native"``, ``"all_reduce"``), which is how the tests cover both.

Both go through ``golf_fast.distributed`` (which places the buffers on the group's device; the
bank buffers already live there, so the collectives run asynchronously and overlap the
Newton-Schulz work of the previous bank).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from golf_fast import distributed

MODES = ("auto", "native", "all_reduce")


@dataclass(frozen=True)
class CommConfig:
    """How Parallel Muon's reduce-scatter is carried out (see the module docstring)."""

    reduce_scatter: str = "auto"

    def __post_init__(self) -> None:
        if self.reduce_scatter not in MODES:
            raise ValueError(f"reduce_scatter: expected one of {MODES}, got {self.reduce_scatter!r}")


_NATIVE_FAILED: set[str] = set()


def reduce_scatter_avg(out: torch.Tensor, inp: torch.Tensor, group: Optional[Any] = None,
                       config: CommConfig = CommConfig()):
    """Start ``out = mean_r(inp_r[rank slice])``; ``inp`` may be overwritten (it is scratch).
    Returns a handle with ``wait()``."""
    world = distributed.world_size(group)
    if inp.shape[0] != out.shape[0] * world:
        raise ValueError(f"inp: expected leading dim {out.shape[0] * world} (= out rows × world), "
                         f"got {tuple(inp.shape)}")
    backend = distributed.backend_name(group)
    if backend == "nccl" and config.reduce_scatter != "all_reduce":
        return distributed.reduce_scatter_tensor(out, inp, "avg", group, async_op=True)
    native = config.reduce_scatter == "native" or (config.reduce_scatter == "auto" and backend not in _NATIVE_FAILED)
    if native:
        try:
            work = distributed.reduce_scatter_tensor(out, inp, "sum", group, async_op=True)
            return distributed.Pending(work, lambda: out.div_(world))
        except (RuntimeError, NotImplementedError, ValueError):
            if config.reduce_scatter == "native":
                raise
            _NATIVE_FAILED.add(backend)  # every rank runs the same torch, so every rank lands here
    rank = distributed.rank(group)
    rows = out.shape[0]
    work = distributed.all_reduce(inp, "sum", group, async_op=True)

    def finish() -> None:
        out.copy_(inp[rank * rows:(rank + 1) * rows])
        out.div_(world)

    return distributed.Pending(work, finish)


def all_gather(out: torch.Tensor, inp: torch.Tensor, group: Optional[Any] = None):
    """Start ``out[r·s:(r+1)·s] = inp of rank r`` (``s = inp.shape[0]``); returns a handle with ``wait()``."""
    world = distributed.world_size(group)
    if out.shape[0] != inp.shape[0] * world:
        raise ValueError(f"out: expected leading dim {inp.shape[0] * world} (= inp rows × world), "
                         f"got {tuple(out.shape)}")
    return distributed.all_gather_into_tensor(out, inp, group, async_op=True)
