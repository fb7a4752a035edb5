"""HessianCollector: GPTQ Hessians ``H = Σ XᵀX`` of chosen matrices' inputs during calibration.

What it does (parameter_golf.md §5.1):

* ``attach(modules)`` registers forward hooks; the hook takes the module's first positional input
  ``x`` ((..., K), flattened to (T, K)). A model that exposes its matmul inputs can instead call
  ``add(name, x)`` (or ``add(("c_q", "c_k", "c_v"), x)`` to declare a shared input).
* One accumulation per distinct input: modules that consume the same tensor object (q, k and v
  read the same normed attention input) form a group the first time they see it, and the group
  accumulates each distinct input once. A tensor is "the same" when it is the same Python object
  (tracked by weak reference, so no activation is kept alive) at the same in-place version.
  Groups are checked: every member must consume every input of its group exactly once, else a
  ``RuntimeError`` says which module broke the pattern.
* Modules visited more than once per forward (depth recurrence) accumulate once per visit.
* Token counts per group; ``finalize(reduction)`` returns the Hessians as the plain sum
  (``"sum"``) or divided by the token count (``"mean"``, the default: ``H = Σ XᵀX / tokens``).
* ``all_reduce=True``: ``finalize`` sums Hessians and token counts over the ranks of
  ``process_group`` (through ``golf_fast.distributed``, on the group's device), so every rank
  holds the global ``Σ XᵀX`` and the global token count, and the mean is the global mean.
* ``side_stream=True``: on CUDA, accumulations run on a side stream that waits for the producing
  stream; ``finalize`` makes the current stream wait for it.

The accumulation is ``golf_fast.hessian_accumulate_`` (fp32 H, bf16/fp16/fp32 X).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch

from golf_fast import distributed
from golf_fast.ops.hessian import hessian_accumulate_

REDUCTIONS = ("mean", "sum")


@dataclass
class HessianResult:
    """What ``finalize`` returns.

    ``hessians[name]``: (K, K) float32, the sum ``Σ XᵀX`` or the mean ``Σ XᵀX / tokens`` as
    ``reduction`` says; names of one group share one tensor object (clone before modifying).
    ``tokens[name]``: rows of X accumulated (global when all-reduced). ``groups``: the names that
    shared one accumulation. ``accumulations[name]``: accumulate calls made for its group.
    """

    hessians: dict[str, torch.Tensor]
    tokens: dict[str, int]
    reduction: str
    groups: list[tuple[str, ...]]
    accumulations: dict[str, int] = field(default_factory=dict)


@dataclass
class _Group:
    names: list[str]
    H: Optional[torch.Tensor] = None
    tokens: int = 0
    accumulations: int = 0
    last: Optional[weakref.ref] = None  # the input accumulated last
    last_version: int = -1
    consumers: set[str] = field(default_factory=set)  # members that consumed `last`
    sealed: bool = False  # membership is fixed once a second input arrives


class HessianCollector:
    """Accumulate ``XᵀX`` for named matrices; see the module docstring.

    ``device``: where the Hessians live (default: the device of the first input of each group).
    ``all_reduce``/``process_group``: sum over ranks in ``finalize``. ``side_stream``: run CUDA
    accumulations on a side stream. ``backend``: passed to ``hessian_accumulate_``.
    """

    def __init__(self, *, device: Optional[Union[str, torch.device]] = None, all_reduce: bool = False,
                 process_group: Any = None, side_stream: bool = False, backend: str = "auto") -> None:
        if not isinstance(all_reduce, bool):
            raise TypeError(f"all_reduce: expected a bool, got {all_reduce!r}")
        if not isinstance(side_stream, bool):
            raise TypeError(f"side_stream: expected a bool, got {side_stream!r}")
        self.device = torch.device(device) if device is not None else None
        self.all_reduce = all_reduce
        self.process_group = process_group
        self.side_stream = side_stream
        self.backend = backend
        self._groups: list[_Group] = []
        self._group_of: dict[str, _Group] = {}
        self._hooks: list[Any] = []
        self._streams: dict[torch.device, Any] = {}
        self._finalized = False

    # ---- attaching

    def attach(self, modules: Union[Mapping[str, torch.nn.Module], Iterable[tuple[str, torch.nn.Module]]]
               ) -> "HessianCollector":
        """Hook ``modules`` ({name: module} or (name, module) pairs); returns self (a context manager)."""
        items = list(modules.items()) if isinstance(modules, Mapping) else list(modules)
        if not items:
            raise ValueError("modules: expected at least one (name, module)")
        for item in items:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], torch.nn.Module)):
                raise TypeError(f"modules: expected (name: str, module: nn.Module) pairs, got {item!r}")
        for name, module in items:
            self._hooks.append(module.register_forward_hook(self._make_hook(name)))
        return self

    def _make_hook(self, name: str):
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                raise TypeError(f"HessianCollector: module {name!r} was called without a tensor as its first "
                                "positional input; call collector.add(name, x) from the model instead")
            self.add(name, args[0])

        return hook

    def remove(self) -> None:
        """Remove every hook this collector registered."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def __enter__(self) -> "HessianCollector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ---- accumulating

    def add(self, name: Union[str, Sequence[str]], x: torch.Tensor) -> None:
        """Accumulate ``xᵀx`` for ``name`` (or declare that the names of a tuple share ``x``)."""
        if self._finalized:
            raise RuntimeError("HessianCollector: add() after finalize(); make a new collector")
        names = [name] if isinstance(name, str) else list(name)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise TypeError(f"name: expected a non-empty str or a sequence of them, got {name!r}")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] < 1:
            raise ValueError(f"x: expected a (..., K) tensor with K >= 1, got shape {tuple(x.shape)}")
        if len(names) > 1:
            self._declare_group(names)
        for n in names:
            self._add_one(n, x)

    def _declare_group(self, names: list[str]) -> None:
        known = {id(self._group_of[n]) for n in names if n in self._group_of}
        if not known:
            g = _Group(names=list(names))
            self._groups.append(g)
            for n in names:
                self._group_of[n] = g
        elif len(known) > 1 or any(n not in self._group_of for n in names):
            raise RuntimeError(f"name: {tuple(names)} do not form one existing group "
                               f"(groups: {[tuple(g.names) for g in self._groups]})")

    def _same_input(self, g: _Group, x: torch.Tensor) -> bool:
        return g.last is not None and g.last() is x and x._version == g.last_version

    def _add_one(self, name: str, x: torch.Tensor) -> None:
        g = self._group_of.get(name)
        if g is None:  # first call for this name: join the group whose current input is x, if any
            g = next((c for c in self._groups if not c.sealed and self._same_input(c, x)), None)
            if g is None:
                g = _Group(names=[name])
                self._groups.append(g)
            else:
                g.names.append(name)
            self._group_of[name] = g
        if self._same_input(g, x):
            if name in g.consumers:
                raise RuntimeError(f"HessianCollector: {name!r} consumed the same input twice before its group "
                                   f"{tuple(g.names)} saw a new one")
            g.consumers.add(name)
            return
        if g.last is not None:  # a new input: every member must have consumed the previous one
            missing = [n for n in g.names if n not in g.consumers]
            if missing:
                raise RuntimeError(f"HessianCollector: {name!r} received a new input while {missing} of its "
                                   f"group {tuple(g.names)} did not consume the previous one; modules are "
                                   "grouped when they first see the same input tensor, and must keep doing so")
            g.sealed = True
        self._accumulate(g, x)
        g.last, g.last_version, g.consumers = weakref.ref(x), x._version, {name}

    def _accumulate(self, g: _Group, x: torch.Tensor) -> None:
        k = x.shape[-1]
        x2 = x.detach().reshape(-1, k)
        device = self.device or x2.device
        if g.H is None:
            g.H = torch.zeros(k, k, dtype=torch.float32, device=device)
        elif g.H.shape[0] != k:
            raise ValueError(f"x: group {tuple(g.names)} has K={g.H.shape[0]}, got an input with K={k}")
        if x2.device != g.H.device:
            x2 = x2.to(g.H.device, non_blocking=True)
        if self.side_stream and x2.is_cuda:
            stream = self._streams.get(x2.device)
            if stream is None:
                stream = self._streams[x2.device] = torch.cuda.Stream(device=x2.device)
            stream.wait_stream(torch.cuda.current_stream(x2.device))
            with torch.cuda.stream(stream):
                hessian_accumulate_(g.H, x2, backend=self.backend)
            x2.record_stream(stream)
        else:
            hessian_accumulate_(g.H, x2, backend=self.backend)
        g.tokens += x2.shape[0]
        g.accumulations += 1

    # ---- results

    def groups(self) -> list[tuple[str, ...]]:
        return [tuple(g.names) for g in self._groups]

    def finalize(self, reduction: str = "mean") -> HessianResult:
        """Wait for side streams, all-reduce if asked, and return the Hessians and token counts.

        ``reduction``: ``"mean"`` (``Σ XᵀX / tokens``) or ``"sum"`` (``Σ XᵀX``). Removes the hooks.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
        if self._finalized:
            raise RuntimeError("HessianCollector: finalize() was already called")
        self.remove()
        for dev, stream in self._streams.items():
            torch.cuda.current_stream(dev).wait_stream(stream)
        groups = [g for g in self._groups if g.H is not None]
        if self.all_reduce:
            self._all_reduce(groups)
        out, tokens, acc = {}, {}, {}
        for g in groups:
            h = g.H
            if reduction == "mean" and g.tokens > 0:
                h.div_(g.tokens)
            for n in g.names:
                out[n], tokens[n], acc[n] = h, g.tokens, g.accumulations
        self._finalized = True
        return HessianResult(hessians=out, tokens=tokens, reduction=reduction,
                             groups=[tuple(g.names) for g in groups], accumulations=acc)

    def _all_reduce(self, groups: list[_Group]) -> None:
        if not distributed.is_initialized():
            raise RuntimeError("all_reduce: torch.distributed is not initialized (call init_process_group first)")
        # every rank must hold the same groups in the same order, or the collectives would mismatch
        names = "\n".join(",".join(g.names) for g in groups)
        distributed.check_same_str(names, "all_reduce: ranks collected different Hessian groups",
                                   self.process_group)
        if not groups:
            return
        counts = torch.tensor([g.tokens for g in groups], dtype=torch.int64)
        distributed.all_reduce(counts, "sum", self.process_group)
        for g, c in zip(groups, counts.tolist()):
            distributed.all_reduce(g.H, "sum", self.process_group)
            g.tokens = int(c)
