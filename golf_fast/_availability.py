"""What this installation can run: the compiled extension, Triton, CUDA.

Nothing here initializes CUDA or compiles anything. ``load_extension()`` imports
``golf_fast._C`` once (which registers its C++ ops in the ``golf_fast::`` namespace) and
remembers why it failed, so errors elsewhere can say exactly what is missing and how to get it.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

EXT_HINT = ("build it with `pip install --no-build-isolation -e .` (or "
            "`python setup.py build_ext --inplace`) in the golf_fast checkout")
TRITON_HINT = "install it with `pip install triton` (the tests pin `triton==3.9.0`)"


@lru_cache(maxsize=None)
def load_extension() -> tuple[bool, str]:
    """Import golf_fast._C. Returns (loaded, reason it did not load or '')."""
    import torch  # noqa: F401  (loads libc10/libtorch, which golf_fast._C links against)

    try:
        importlib.import_module("golf_fast._C")
    except ImportError as exc:  # not built, or built against another torch
        return False, f"golf_fast._C could not be imported ({exc}); {EXT_HINT}"
    return True, ""


@lru_cache(maxsize=None)
def triton_status() -> tuple[bool, str]:
    """Whether Triton is importable. Returns (available, reason it is not or '')."""
    try:
        importlib.import_module("triton.language")
    except ImportError as exc:
        return False, f"Triton is not installed or failed to import ({exc}); {TRITON_HINT}"
    return True, ""


def ext_has_cuda() -> bool:
    """Whether golf_fast._C was built with its CUDA part."""
    import torch

    return load_extension()[0] and bool(torch.ops.golf_fast._ext_has_cuda())


def report() -> str:
    """A few lines saying what is available and, for what is not, how to get it."""
    import torch

    lines = [f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})"]
    ok, why = load_extension()
    lines.append("golf_fast._C: " + (f"loaded (CUDA part: {'yes' if ext_has_cuda() else 'no'})" if ok else
                                     f"MISSING - {why}"))
    ok, why = triton_status()
    if ok:
        import triton

        lines.append(f"triton {triton.__version__}: available")
    else:
        lines.append(f"triton: MISSING - {why}")
    cuda = torch.cuda.is_available()
    lines.append("CUDA device: " + (torch.cuda.get_device_name(0) if cuda else
                                    "none (GPU kernels run only in the Triton interpreter; CPU ops use "
                                    "the C++ kernels or the references)"))
    return "\n".join(lines)
