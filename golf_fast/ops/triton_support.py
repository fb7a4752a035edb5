"""Triton kernels that run on a GPU, or in Triton's interpreter on the CPU.

``@triton_kernel`` replaces ``@triton.jit`` for the package's kernels. It keeps the plain
Python function and builds, on first use, either a compiled ``JITFunction`` (GPU launches and
the ahead-of-time sm_90 compile checks of ``golf_fast.cli.inspect``) or an
``InterpretedFunction``. Which one runs is decided at launch time, from ``TRITON_INTERPRET``
(``interpreter_enabled()``), not when the module is imported, so one test process can both
compile a kernel for sm_90 and run it in the interpreter.

Every GPU launch runs under ``torch.cuda.device(<the first CUDA tensor argument's device>)``:
Triton launches on the *current* device and its current stream, so a call on tensors that live
on ``cuda:1`` while ``cuda:0`` is current would otherwise run on the wrong GPU and fault.

Kernels may call shared ``@triton_helper`` functions (device functions) and the ``@jit``
functions of ``triton.language`` (``tl.sum``, ``tl.max``, ``tl.zeros``...). A helper is always a
compiled-form ``JITFunction``, whatever ``TRITON_INTERPRET`` said at import, so the sm_90
compile sees a device function. Under the interpreter, triton itself only runs nested jit
functions that were *created* while ``TRITON_INTERPRET=1`` (its ``@jit`` then returns an
``InterpretedFunction``); a ``JITFunction`` called from an interpreted kernel raises. So an
interpreted launch runs inside ``nested_jit_interpreted()``: for its duration a
``JITFunction`` called from kernel code runs as an ``InterpretedFunction`` (exactly what the
import-time interpreter mode would have built), and afterwards every attribute the
interpreter patched on ``triton.language`` is put back, so a later sm_90 compile in the same
process sees the real language.

Every interpreted launch also runs inside ``golf_fast.ops.interpreter.interpreter_fixes()``: the
interpreter's bf16 ``tl.dot`` and float32 → bfloat16 casts are corrected for the launch's
duration (the one place the package works around interpreter bugs), so a user's
``TRITON_INTERPRET=1`` run of any kernel here is right, not just the test suite's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Iterator

import torch

from golf_fast._availability import triton_status

try:  # Triton is optional: without it the kernels' modules still import, and only launching fails.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised by the no-triton import test in a subprocess
    triton = None
    tl = None


def interpreter_enabled() -> bool:
    """True when Triton kernels should run in the interpreter (``TRITON_INTERPRET=1``)."""
    knobs = getattr(triton, "knobs", None) if triton is not None else None
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def require_triton(what: str) -> None:
    ok, why = triton_status()
    if not ok:
        raise RuntimeError(f"{what} needs Triton: {why}")


class TritonKernel:
    """A Triton kernel launchable as ``kernel[grid](*args, **meta)`` on GPU or interpreter."""

    def __init__(self, fn: Callable[..., Any], **jit_options: Any) -> None:
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._jit_options = jit_options
        self._jit = None
        self._interpreted = None

    @property
    def jit(self):
        """The compiled form (a ``triton.runtime.jit.JITFunction``)."""
        if self._jit is None:
            self._jit = self._build(interpreted=False)
        return self._jit

    @property
    def interpreted(self):
        """The interpreter form (runs on CPU tensors)."""
        if self._interpreted is None:
            self._interpreted = self._build(interpreted=True)
        return self._interpreted

    def _build(self, interpreted: bool):
        require_triton(f"kernel {self.__name__}")
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction

        return (InterpretedFunction if interpreted else JITFunction)(self.fn, **self._jit_options)

    def __getitem__(self, grid):
        if interpreter_enabled():
            launch = self.interpreted[grid]

            def interpreted_launch(*args, **kwargs):
                from golf_fast.ops.interpreter import interpreter_fixes

                with nested_jit_interpreted(), interpreter_fixes():
                    return launch(*args, **kwargs)

            return interpreted_launch
        launch = self.jit[grid]

        def guarded_launch(*args, **kwargs):
            device = launch_device(args)
            if device is None or device.index == torch.cuda.current_device():
                return launch(*args, **kwargs)
            with torch.cuda.device(device):
                return launch(*args, **kwargs)

        return guarded_launch


def launch_device(args) -> "torch.device | None":
    """The device of the first CUDA tensor among a launch's arguments (None when there is none)."""
    for a in args:
        if isinstance(a, torch.Tensor) and a.device.type == "cuda":
            return a.device if a.device.index is not None else torch.device("cuda", torch.cuda.current_device())
    return None


def triton_kernel(fn: Callable[..., Any] | None = None, **jit_options: Any):
    """Decorator: ``@triton_kernel`` or ``@triton_kernel(do_not_specialize=[...])``."""
    if fn is None:
        return lambda f: TritonKernel(f, **jit_options)
    return TritonKernel(fn, **jit_options)


def triton_helper(fn: Callable[..., Any]):
    """Decorator for a ``@triton.jit`` device function shared by several kernels.

    Returns a ``JITFunction`` (the compiled form, whatever ``TRITON_INTERPRET`` says at import),
    which the compiler inlines into each caller; interpreted launches run it through
    ``nested_jit_interpreted()``. Without Triton the plain function is returned (nothing can
    launch then).
    """
    if triton is None:
        return fn
    from triton.runtime.jit import JITFunction

    return JITFunction(fn)


_INTERPRETED_HELPERS: dict = {}
_NESTED_LOCK = threading.RLock()


def _language_objects() -> tuple:
    """The objects whose attributes Triton's interpreter patches while a kernel runs."""
    objs = [tl, tl.core, tl.math, tl.standard, tl.tensor, tl.dtype]
    for name in ("tensor_descriptor_base", "condition"):
        if hasattr(tl.core, name):
            objs.append(getattr(tl.core, name))
    return tuple(objs)


@contextlib.contextmanager
def nested_jit_interpreted() -> Iterator[None]:
    """Let an interpreted kernel call compiled-form jit functions; restore ``triton.language`` after.

    Inside, ``JITFunction.__call__`` (which otherwise raises "Cannot call @triton.jit'd outside
    of the scope of a kernel") runs the function as an ``InterpretedFunction`` device call.
    Interpreted device calls patch ``triton.language`` modules without undoing it; the
    attributes of every such object are snapshotted on entry and restored on exit (except the
    interpreter's own names, which it adds once to the globals of the functions it rewrites
    and caches).
    """
    from triton.runtime import interpreter
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    with _NESTED_LOCK:
        snapshots = [(obj, dict(vars(obj))) for obj in _language_objects()]
        original_call = JITFunction.__call__

        def interpreted_call(self, *args, **kwargs):
            fn = _INTERPRETED_HELPERS.get(self.fn)
            if fn is None:
                fn = _INTERPRETED_HELPERS[self.fn] = InterpretedFunction(self.fn)
            return fn(*args, **kwargs)

        JITFunction.__call__ = interpreted_call
        try:
            yield
        finally:
            JITFunction.__call__ = original_call
            for obj, snap in snapshots:
                now = vars(obj)
                injected = vars(interpreter)  # names the interpreter adds to a rewritten function's globals
                for key in [k for k in now if k not in snap and injected.get(k, _MISSING) is not now[k]]:
                    delattr(obj, key)
                for key, value in snap.items():
                    if now.get(key, _MISSING) is not value:
                        setattr(obj, key, value)


_MISSING = object()


def cdiv(a: int, b: int) -> int:
    """Ceiling division of host ints for launch grids (``triton.cdiv`` is a Triton
    ``ConstexprFunction``: about 2 µs per host call against tens of ns for this)."""
    return -(-a // b)


def check_launch_device(*tensors, what: str) -> None:
    """Triton launches need CUDA tensors, or CPU tensors under the interpreter."""
    interp = interpreter_enabled()
    for t in tensors:
        if interp and t.device.type != "cpu":
            raise ValueError(f"{what}: TRITON_INTERPRET=1 runs kernels on CPU tensors, got {t.device}")
        if not interp and t.device.type != "cuda":
            raise ValueError(f"{what}: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for CPU "
                             f"tensors), got {t.device}")
