"""A recording fake process group: every tensor that reaches ``torch.distributed`` must sit on the
group's device.

On a CPU-only machine gloo's device (the CPU) is every tensor's device, so a plain gloo run cannot
tell a collective that was handed a tensor on the wrong device from a correct one. The fake makes
the difference visible:

* ``golf_fast.distributed.group_device`` returns a device tag (``FAKE_GROUP_DEVICE``, the ``meta``
  device) that no real tensor of the run is on, so the module has to place every tensor there;
* the module's placement helpers (``_stage``, ``_empty_on``) are patched to return CPU copies that
  are *registered* as living on the group's device;
* every collective of ``torch.distributed`` (``all_reduce``, ``broadcast``, ``reduce_scatter_tensor``
  ...) is replaced by a recorder that checks each tensor handed to it is a registered one, records
  the call (collective, calling module, shape, dtype, where the tensor came from) and then performs
  the collective as if every other rank held the same tensors ("mirror ranks": a sum multiplies by
  the world size, a gather repeats, a broadcast keeps the tensor).

A collective that bypasses ``golf_fast.distributed`` (``torch.distributed.all_reduce(cpu_tensor)``)
hands the recorder an unregistered tensor and is recorded as a violation.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist

import golf_fast.distributed as gdist

FAKE_GROUP_DEVICE = torch.device("meta")

COLLECTIVES = ("all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter_tensor",
               "reduce_scatter", "reduce", "gather", "scatter", "all_to_all", "all_to_all_single",
               "all_gather_object", "broadcast_object_list", "gather_object", "scatter_object_list", "send", "recv",
               "isend", "irecv", "barrier")


@dataclass
class Call:
    collective: str
    caller: str
    """The first module outside torch and golf_fast.distributed on the stack (who asked)."""
    shapes: list
    dtypes: list
    on_group_device: bool
    """Whether every tensor handed over was placed on the group's device by golf_fast.distributed."""
    source_devices: list
    """The devices the caller's tensors were on before the module placed them."""


class _Work:
    def wait(self, *a, **k) -> bool:
        return True

    def is_completed(self) -> bool:
        return True


class Recorder:
    def __init__(self, world: int, rank: int) -> None:
        self.world, self.rank = world, rank
        self.calls: list[Call] = []
        self._placed: dict[int, tuple[weakref.ref, torch.device]] = {}

    # ---- placement (replaces golf_fast.distributed._stage / _empty_on)

    def _register(self, t: torch.Tensor, source: torch.device) -> torch.Tensor:
        self._placed[id(t)] = (weakref.ref(t), source)
        return t

    def stage(self, tensor: torch.Tensor, dev: torch.device) -> torch.Tensor:
        assert dev == FAKE_GROUP_DEVICE, f"golf_fast.distributed staged to {dev}, not the group's device"
        return self._register(tensor.detach().clone().contiguous(), tensor.device)

    def empty_on(self, dev, shape, dtype) -> torch.Tensor:
        assert dev == FAKE_GROUP_DEVICE, f"golf_fast.distributed allocated on {dev}, not the group's device"
        return self._register(torch.zeros(tuple(shape), dtype=dtype), torch.device("cpu"))

    def placed(self, t: torch.Tensor):
        hit = self._placed.get(id(t))
        return hit[1] if hit is not None and hit[0]() is t else None

    # ---- recording

    def _caller(self) -> str:
        for frame in inspect.stack()[2:]:
            mod = frame.frame.f_globals.get("__name__", "")
            if not (mod.startswith("torch") or mod in (__name__, "golf_fast.distributed")):
                return mod
        return "?"

    def record(self, name: str, tensors: list) -> None:
        sources = [self.placed(t) for t in tensors]
        self.calls.append(Call(name, self._caller(), [tuple(t.shape) for t in tensors], [t.dtype for t in tensors],
                               all(s is not None for s in sources), [str(s) for s in sources]))

    def violations(self) -> list[Call]:
        return [c for c in self.calls if not c.on_group_device]

    def table(self) -> str:
        rows = {}
        for c in self.calls:
            key = (c.collective, c.caller, tuple(sorted(set(c.source_devices))), c.on_group_device)
            rows[key] = rows.get(key, 0) + 1
        lines = [f"{'collective':<22} {'caller':<32} {'tensor device before':<22} {'on group device':<15} calls"]
        for (coll, caller, src, ok), n in sorted(rows.items()):
            lines.append(f"{coll:<22} {caller:<32} {','.join(src) or '-':<22} {str(ok):<15} {n}")
        return "\n".join(lines)


def _tensors_of(*args) -> list:
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def install(monkeypatch, world: int = 2, rank: int = 0) -> Recorder:
    """Patch torch.distributed and golf_fast.distributed (undone by ``monkeypatch``); returns the recorder."""
    rec = Recorder(world, rank)
    _SUM = (dist.ReduceOp.SUM,)

    def all_reduce(tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        rec.record("all_reduce", [tensor])
        if op in _SUM:
            tensor.mul_(world)
        elif op == dist.ReduceOp.PRODUCT:
            tensor.pow_(world)
        return _Work() if async_op else None

    def broadcast(tensor, src=0, group=None, async_op=False):
        rec.record("broadcast", [tensor])
        return _Work() if async_op else None

    def all_gather(tensor_list, tensor, group=None, async_op=False):
        rec.record("all_gather", [tensor, *tensor_list])
        for t in tensor_list:
            t.copy_(tensor)
        return _Work() if async_op else None

    def all_gather_into_tensor(out, inp, group=None, async_op=False):
        rec.record("all_gather_into_tensor", [out, inp])
        out.copy_(inp.repeat(world, *([1] * (inp.dim() - 1))))
        return _Work() if async_op else None

    def reduce_scatter_tensor(out, inp, op=dist.ReduceOp.SUM, group=None, async_op=False):
        rec.record("reduce_scatter_tensor", [out, inp])
        s = out.shape[0]
        out.copy_(inp[rank * s:(rank + 1) * s])
        if op in _SUM:
            out.mul_(world)
        return _Work() if async_op else None

    def barrier(group=None, async_op=False, device_ids=None):
        rec.record("barrier", [])
        return _Work() if async_op else None

    def unsupported(name):
        def fn(*args, **kwargs):
            rec.record(name, _tensors_of(*args, *kwargs.values()))
            rec.calls[-1].on_group_device = False  # the package must not need these (objects are pickles)
            raise AssertionError(f"torch.distributed.{name} was called; the fake supports only the package's "
                                 "collectives")
        return fn

    impl = {"all_reduce": all_reduce, "broadcast": broadcast, "all_gather": all_gather,
            "all_gather_into_tensor": all_gather_into_tensor, "reduce_scatter_tensor": reduce_scatter_tensor,
            "barrier": barrier}
    for name in COLLECTIVES:
        monkeypatch.setattr(dist, name, impl.get(name) or unsupported(name), raising=False)
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: world)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: rank)
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "fake")
    monkeypatch.setattr(gdist, "group_device", lambda group=None: FAKE_GROUP_DEVICE)
    monkeypatch.setattr(gdist, "_stage", rec.stage)
    monkeypatch.setattr(gdist, "_empty_on", rec.empty_on)
    return rec
