"""Process setup and collectives: the one place that talks to ``torch.distributed``.

Setup: :func:`init_distributed` reads torchrun's contract from the environment it sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins the process
group (NCCL on CUDA, gloo on CPU); without torchrun it describes one plain process. Everything
else is typed configuration.

Collectives (:func:`all_reduce`, :func:`broadcast`, :func:`all_gather`,
:func:`all_gather_into_tensor`, :func:`reduce_scatter_tensor`, :func:`barrier`,
:func:`broadcast_str`, :func:`check_same_str`) are thin wrappers over ``torch.distributed`` that put
every tensor on the process group's device first (:func:`group_device`): ``cuda:<current device>``
under NCCL (which only reduces CUDA tensors), CPU under gloo. A tensor already there is handed over
as it is (an async collective then really overlaps); a tensor on another device is staged: copied
to the group's device (:func:`_stage`), reduced there, and copied back into the caller's tensor
(at ``wait()`` for an async call), so ``all_reduce(cpu_scalar)`` works under NCCL too. With no
process group (one process), every collective is the identity. No other module of the package
calls a ``torch.distributed`` collective (tests/test_collective_devices.py checks this with a
recording fake process group).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

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


def shutdown(d: Dist, synchronize: bool = False) -> None:
    """Destroy the process group if :func:`init_distributed` created it.

    ``synchronize=True`` (the normal end of a job) first waits at a barrier, so no rank tears its
    group down while another still has collectives in flight with it (gloo's worker threads then
    abort the process at exit: "terminate called without an active exception"). On an error path
    pass False: a barrier there could wait for a rank that has already failed.
    """
    if not isinstance(d, Dist):
        raise TypeError(f"d: expected a Dist, got {type(d).__name__}")
    if not isinstance(synchronize, bool):
        raise TypeError(f"synchronize: expected a bool, got {type(synchronize).__name__}")
    if d.initialized_here and is_initialized():
        if synchronize:
            dist.barrier()
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
    """A finished collective: ``wait()`` returns at once."""

    def wait(self) -> bool:
        return True


class Pending:
    """An async collective in flight plus the local work that finishes it at ``wait()`` (copying a
    staged result back into the caller's tensor, a division); ``wait()`` is idempotent."""

    def __init__(self, work: Any, finish: Optional[Callable[[], None]] = None) -> None:
        self._work = work
        self._finish = finish
        self._done = False

    def wait(self) -> bool:
        if not self._done:
            if self._work is not None:
                self._work.wait()
            if self._finish is not None:
                self._finish()
            self._done = True
        return True


def _stage(tensor: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """``tensor`` on the group's device ``dev``, contiguous: itself when it already is, else a copy."""
    if tensor.device == dev and tensor.is_contiguous():
        return tensor
    return tensor.to(dev).contiguous()


def _empty_on(dev: torch.device, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """A new tensor on the group's device ``dev`` (the output buffer of a collective)."""
    return torch.empty(tuple(shape), dtype=dtype, device=dev)


def _copy_back(work: Any, out: torch.Tensor, staged_out: torch.Tensor, async_op: bool):
    """Finish a collective that wrote ``staged_out``: copy it into ``out`` when it is a staged copy (at
    once, or at ``wait()`` when ``async_op``); returns ``out``, or a ``Pending`` handle when ``async_op``."""
    finish = None if staged_out is out else (lambda: out.copy_(staged_out))
    if async_op:
        return Pending(work, finish)
    if finish is not None:
        finish()
    return out


def _check_world_rows(big: torch.Tensor, big_name: str, small: torch.Tensor, small_name: str, world: int) -> None:
    """Raise ``ValueError`` naming ``big_name`` unless ``big`` is (world·s, ...) for ``small`` (s, ...), same dtype."""
    if big.shape[0] != small.shape[0] * world or big.shape[1:] != small.shape[1:] or big.dtype != small.dtype:
        rows = small.shape[0] * world
        raise ValueError(f"{big_name}: expected shape ({rows}, {', '.join(map(str, small.shape[1:]))}) "
                         f"(= {small_name} rows × world) and dtype {small.dtype}, got {tuple(big.shape)} {big.dtype}")


def _staged_pair_collective(collective: str, out: torch.Tensor, inp: torch.Tensor, group: Optional[Any],
                            async_op: bool, **kwargs: Any):
    """Run ``torch.distributed.<collective>(out, inp, group=, async_op=, **kwargs)``
    (``all_gather_into_tensor`` or ``reduce_scatter_tensor``) on copies staged on the group's device;
    without a process group (world 1) ``out`` is ``inp`` copied. Returns ``out``, or a handle when
    ``async_op``."""
    if not is_initialized():
        out.copy_(inp)
        return _Done() if async_op else out
    dev = group_device(group)
    staged_in, staged_out = _stage(inp, dev), _stage(out, dev)
    work = getattr(dist, collective)(staged_out, staged_in, group=group, async_op=async_op, **kwargs)
    return _copy_back(work, out, staged_out, async_op)


def backend_name(group: Optional[Any] = None) -> str:
    """The lower-case backend name of ``group`` (``"nccl"``, ``"gloo"``), ``""`` without a process group."""
    return str(dist.get_backend(group)).lower() if is_initialized() else ""


def all_reduce(tensor: torch.Tensor, op: str = "sum", group: Optional[Any] = None, async_op: bool = False):
    """Reduce ``tensor`` over ``group`` in place (``op``: sum, max, min, avg, product); returns the tensor,
    or, when ``async_op``, a handle whose ``wait()`` completes it (a staged tensor is copied back then).

    ``avg`` needs NCCL; on gloo use ``sum`` and divide.
    """
    _check_tensor(tensor)
    red = _reduce_op(op)
    if not is_initialized():
        return _Done() if async_op else tensor
    dev = group_device(group)
    staged = _stage(tensor, dev)
    work = dist.all_reduce(staged, op=red, group=group, async_op=async_op)
    return _copy_back(work, tensor, staged, async_op)


def all_reduce_packed(tensors: Sequence[torch.Tensor], op: str = "sum", group: Optional[Any] = None) -> None:
    """Reduce every tensor of ``tensors`` (all on one device) in place with one flat all-reduce:
    ``cat`` of their flattened values (in the promoted dtype of the list), :func:`all_reduce`, copied
    back into each tensor's own dtype. Many small tensors (gradients of scalars and gates) then cost
    one collective instead of one each."""
    tensors = list(tensors)
    for i, t in enumerate(tensors):
        _check_tensor(t, f"tensors[{i}]")
    if not tensors:
        return
    if len({t.device for t in tensors}) != 1:
        raise ValueError(f"tensors: expected one device for all, got {sorted({str(t.device) for t in tensors})}")
    flat = all_reduce(torch.cat([t.reshape(-1) for t in tensors]), op, group)
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].view_as(t))
        off += t.numel()


def broadcast(tensor: torch.Tensor, src: int = 0, group: Optional[Any] = None) -> torch.Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s; returns it."""
    _check_tensor(tensor)
    if not isinstance(src, int) or src < 0:
        raise ValueError(f"src: expected a non-negative rank, got {src!r}")
    if not is_initialized():
        if src != 0:
            raise ValueError(f"src: expected 0 without a process group, got {src}")
        return tensor
    staged = _stage(tensor, group_device(group))
    dist.broadcast(staged, src=src, group=group)
    return tensor if staged is tensor else tensor.copy_(staged)


def all_gather(tensor: torch.Tensor, group: Optional[Any] = None) -> torch.Tensor:
    """Every rank's ``tensor`` stacked along a new dim 0: shape (world, *tensor.shape), on ``tensor``'s device.

    All ranks must pass the same shape and dtype.
    """
    _check_tensor(tensor)
    if not is_initialized():
        return tensor.unsqueeze(0).clone()
    dev = group_device(group)
    inp = _stage(tensor, dev)
    parts = [_empty_on(dev, inp.shape, inp.dtype) for _ in range(world_size(group))]
    dist.all_gather(parts, inp, group=group)
    return torch.stack(parts).to(tensor.device)


def all_gather_into_tensor(out: torch.Tensor, inp: torch.Tensor, group: Optional[Any] = None,
                           async_op: bool = False):
    """``out[r·s:(r+1)·s] = inp of rank r`` with ``s = inp.shape[0]`` (out: (world·s, ...)).

    Returns ``out``, or a handle when ``async_op`` (``wait()`` copies a staged result into ``out``).
    """
    _check_tensor(out, "out")
    _check_tensor(inp, "inp")
    _check_world_rows(out, "out", inp, "inp", world_size(group))
    return _staged_pair_collective("all_gather_into_tensor", out, inp, group, async_op)


def reduce_scatter_tensor(out: torch.Tensor, inp: torch.Tensor, op: str = "sum", group: Optional[Any] = None,
                          async_op: bool = False):
    """``out = op over ranks r of inp_r[rank·s:(rank+1)·s]`` with ``s = out.shape[0]`` (inp: (world·s, ...)).

    Returns ``out``, or a handle when ``async_op``. Raises what the backend raises when it lacks
    ``reduce_scatter_tensor`` or the op (gloo on older torch; ``avg`` is NCCL only).
    """
    _check_tensor(out, "out")
    _check_tensor(inp, "inp")
    red = _reduce_op(op)
    _check_world_rows(inp, "inp", out, "out", world_size(group))
    return _staged_pair_collective("reduce_scatter_tensor", out, inp, group, async_op, op=red)


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


def check_same_str(text: str, what: str, group: Optional[Any] = None) -> None:
    """Raise ``RuntimeError`` on every rank unless every rank of ``group`` passed the same ``text``
    (rank 0's is broadcast, each rank compares, and the mismatch count is all-reduced)."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    if not is_initialized():
        return
    first = broadcast_str(text, 0, group)
    bad = all_reduce(torch.tensor([0 if first == text else 1], dtype=torch.int64), "sum", group)
    if int(bad) != 0:
        raise RuntimeError(f"{what}: {int(bad)} rank(s) differ from rank 0 (rank 0 has {first[:200]!r}, "
                           f"rank {rank(group)} has {text[:200]!r})")
