"""Triton kernels that run on a GPU, or in Triton's interpreter on the CPU.

``@triton_kernel`` replaces ``@triton.jit`` for the package's kernels. It keeps the plain
Python function and builds, on first use, either a compiled ``JITFunction`` (GPU launches and
the ahead-of-time sm_90 compile checks of ``golf_fast.tools.inspect``) or an
``InterpretedFunction``. Which one runs is decided at launch time, from ``TRITON_INTERPRET``
(``interpreter_enabled()``), not when the module is imported, so one test process can both
compile a kernel for sm_90 and run it in the interpreter.

Kernels must not call other jit functions (keep helpers inline); the interpreter and the
compiler would each need their own copy of the helper.
"""

from __future__ import annotations

import os
from typing import Any, Callable

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
            require_triton(f"kernel {self.__name__}")
            from triton.runtime.jit import JITFunction

            self._jit = JITFunction(self.fn, **self._jit_options)
        return self._jit

    @property
    def interpreted(self):
        """The interpreter form (runs on CPU tensors)."""
        if self._interpreted is None:
            require_triton(f"kernel {self.__name__}")
            from triton.runtime.interpreter import InterpretedFunction

            self._interpreted = InterpretedFunction(self.fn, **self._jit_options)
        return self._interpreted

    def __getitem__(self, grid):
        return (self.interpreted if interpreter_enabled() else self.jit)[grid]


def triton_kernel(fn: Callable[..., Any] | None = None, **jit_options: Any):
    """Decorator: ``@triton_kernel`` or ``@triton_kernel(do_not_specialize=[...])``."""
    if fn is None:
        return lambda f: TritonKernel(f, **jit_options)
    return TritonKernel(fn, **jit_options)


def check_launch_device(*tensors, what: str) -> None:
    """Triton launches need CUDA tensors, or CPU tensors under the interpreter."""
    interp = interpreter_enabled()
    for t in tensors:
        if interp and t.device.type != "cpu":
            raise ValueError(f"{what}: TRITON_INTERPRET=1 runs kernels on CPU tensors, got {t.device}")
        if not interp and t.device.type != "cuda":
            raise ValueError(f"{what}: the Triton kernel needs CUDA tensors (or TRITON_INTERPRET=1 for CPU "
                             f"tensors), got {t.device}")
