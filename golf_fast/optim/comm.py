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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

MODES = ("auto", "native", "all_reduce")


@dataclass(frozen=True)
class CommConfig:
    """How Parallel Muon's reduce-scatter is carried out (see the module docstring)."""

    reduce_scatter: str = "auto"

    def __post_init__(self) -> None:
        if self.reduce_scatter not in MODES:
            raise ValueError(f"reduce_scatter: expected one of {MODES}, got {self.reduce_scatter!r}")


class _Pending:
    """A collective in flight plus the local work to finish it at ``wait()``."""

    def __init__(self, work: Any, finish=None) -> None:
        self._work = work
        self._finish = finish
        self._done = False

    def wait(self) -> None:
        if self._done:
            return
        if self._work is not None:
            self._work.wait()
        if self._finish is not None:
            self._finish()
        self._done = True


_NATIVE_FAILED: set[str] = set()


def _backend(group: Optional[dist.ProcessGroup]) -> str:
    return str(dist.get_backend(group)).lower()


def reduce_scatter_avg(out: torch.Tensor, inp: torch.Tensor, group: Optional[dist.ProcessGroup] = None,
                       config: CommConfig = CommConfig()) -> _Pending:
    """Start ``out = mean_r(inp_r[rank slice])``; ``inp`` may be overwritten (it is scratch)."""
    world = dist.get_world_size(group)
    if inp.shape[0] != out.shape[0] * world:
        raise ValueError(f"inp: expected leading dim {out.shape[0] * world} (= out rows × world), "
                         f"got {tuple(inp.shape)}")
    backend = _backend(group)
    if backend == "nccl" and config.reduce_scatter != "all_reduce":
        return _Pending(dist.reduce_scatter_tensor(out, inp, op=dist.ReduceOp.AVG, group=group, async_op=True))
    native = config.reduce_scatter == "native" or (config.reduce_scatter == "auto" and backend not in _NATIVE_FAILED)
    if native:
        try:
            work = dist.reduce_scatter_tensor(out, inp, op=dist.ReduceOp.SUM, group=group, async_op=True)
            return _Pending(work, lambda: out.div_(world))
        except (RuntimeError, NotImplementedError, ValueError):
            if config.reduce_scatter == "native":
                raise
            _NATIVE_FAILED.add(backend)  # every rank runs the same torch, so every rank lands here
    rank = dist.get_rank(group)
    rows = out.shape[0]
    work = dist.all_reduce(inp, op=dist.ReduceOp.SUM, group=group, async_op=True)

    def finish() -> None:
        out.copy_(inp[rank * rows:(rank + 1) * rows])
        out.div_(world)

    return _Pending(work, finish)


def all_gather(out: torch.Tensor, inp: torch.Tensor, group: Optional[dist.ProcessGroup] = None) -> _Pending:
    """Start ``out[r·s:(r+1)·s] = inp of rank r`` (``s = inp.shape[0]``)."""
    world = dist.get_world_size(group)
    if out.shape[0] != inp.shape[0] * world:
        raise ValueError(f"out: expected leading dim {inp.shape[0] * world} (= inp rows × world), "
                         f"got {tuple(out.shape)}")
    return _Pending(dist.all_gather_into_tensor(out, inp, group=group, async_op=True))
