"""Build golf_fast and its extension golf_fast._C.

* The C++ part (csrc/*.cpp) is built on every machine.
* The CUDA part (csrc/cuda/*.cu) is built when the installed torch has CUDA and a CUDA toolkit is
  found, unless GOLF_FAST_SKIP_CUDA_BUILD=1. The toolkit is found from ``nvcc`` followed through
  symlinks (``CUDA_HOME/bin/nvcc``, then ``nvcc`` on PATH): its real folder's parent is the toolkit,
  trusted only when it has ``include/cuda_runtime.h``; a ``CUDA_HOME`` that is a bare symlink farm or
  that points at ``/usr`` (where a distribution's ``nvcc`` wrapper lives) is replaced by it.
* If the CUDA build fails (a toolkit/torch CUDA version mismatch, an nvcc error), the C++ part is
  built instead and the reason is printed: the install never fails because of CUDA. Without the
  CUDA part, ``hessian_accumulate_`` on CUDA runs a torch GEMM (with a logged warning).
* Install with ``pip install --no-build-isolation -e .`` so the build uses the torch that is
  already installed (an isolated build would download another torch).

The decisions are plain functions (``find_cuda_toolkit``, ``plan_build``, ``run_with_fallback``),
tested on the CPU with fakes (tests/test_setup.py); importing this file builds nothing.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg: str) -> None:
    print(f"golf_fast setup: {msg}", file=sys.stderr)


@dataclass
class Toolkit:
    """A CUDA toolkit: its root (``root/bin/nvcc``, ``root/include/cuda_runtime.h``) and real nvcc."""

    root: str
    nvcc: str


def toolkit_of(nvcc: Optional[str], realpath: Callable[[str], str] = os.path.realpath,
               exists: Callable[[str], bool] = os.path.exists) -> tuple[Optional[Toolkit], str]:
    """The toolkit an ``nvcc`` path belongs to, following symlinks; (None, why) when it is not a toolkit."""
    if not nvcc or not exists(nvcc):
        return None, f"{nvcc or 'nvcc'} does not exist"
    real = realpath(nvcc)
    root = os.path.dirname(os.path.dirname(real))
    if not exists(os.path.join(root, "include", "cuda_runtime.h")):
        return None, f"{nvcc} resolves to {real}, whose toolkit {root} has no include/cuda_runtime.h"
    return Toolkit(root, real), ""


def find_cuda_toolkit(cuda_home: Optional[str], which: Callable[[str], Optional[str]] = shutil.which,
                      realpath: Callable[[str], str] = os.path.realpath,
                      exists: Callable[[str], bool] = os.path.exists) -> tuple[Optional[Toolkit], str]:
    """The toolkit to build with: ``cuda_home/bin/nvcc`` (followed through symlinks), else ``nvcc`` on
    PATH (followed through symlinks); returns (toolkit or None, a sentence saying what was found)."""
    tried = []
    for where, nvcc in (("CUDA_HOME", os.path.join(cuda_home, "bin", "nvcc") if cuda_home else None),
                        ("PATH", which("nvcc"))):
        if nvcc is None:
            tried.append(f"no nvcc from {where}")
            continue
        tk, why = toolkit_of(nvcc, realpath, exists)
        if tk is not None:
            note = f"nvcc from {where}: {nvcc}" + (f" -> {tk.nvcc}" if tk.nvcc != nvcc else "") + f", toolkit {tk.root}"
            if cuda_home and os.path.normpath(realpath(cuda_home)) != os.path.normpath(tk.root):
                note += f" (CUDA_HOME={cuda_home} replaced)"
            return tk, note
        tried.append(why)
    return None, "; ".join(tried)


@dataclass
class BuildPlan:
    cuda: bool
    reason: str
    toolkit: Optional[Toolkit] = None


def plan_build(torch_cuda: Optional[str], skip_cuda: bool, has_cu_sources: bool, cuda_home: Optional[str],
               which: Callable[[str], Optional[str]] = shutil.which,
               realpath: Callable[[str], str] = os.path.realpath,
               exists: Callable[[str], bool] = os.path.exists) -> BuildPlan:
    """Whether to try the CUDA part, and why (or why not)."""
    if skip_cuda:
        return BuildPlan(False, "GOLF_FAST_SKIP_CUDA_BUILD=1: building the C++ part only")
    if not has_cu_sources:
        return BuildPlan(False, "no CUDA sources: building the C++ part only")
    if torch_cuda is None:
        return BuildPlan(False, "torch has no CUDA: building the C++ part only")
    tk, note = find_cuda_toolkit(cuda_home, which, realpath, exists)
    if tk is None:
        return BuildPlan(False, f"no usable CUDA toolkit ({note}): building the C++ part only")
    return BuildPlan(True, f"building the CUDA part for torch CUDA {torch_cuda}; {note}", tk)


def run_with_fallback(run: Callable[[], None], use_cpp_only: Callable[[], bool],
                      log: Callable[[str], None] = _log) -> str:
    """``run()`` the build; if it raises and a C++-only build is possible (``use_cpp_only()`` switches
    the build to it and returns True), say why and run again. Returns ``"cuda"``, ``"cpp"`` or
    ``"as planned"`` (no CUDA part was planned)."""
    try:
        run()
        return "as planned"
    except Exception as exc:  # a CUDA toolchain failure must not fail the install
        if not use_cpp_only():
            raise
        log(f"the CUDA part failed to build ({type(exc).__name__}: {str(exc).strip()[:500]}); building the C++ "
            "part only. hessian_accumulate_ on CUDA will use a torch GEMM (with a warning); fix the toolkit "
            "(nvcc's CUDA major version must match torch.version.cuda) and reinstall for the CUDA kernel.")
    run()
    return "cpp"


def _extensions():
    try:
        import torch
    except ImportError:
        _log("torch is not installed; building without golf_fast._C "
             "(install torch first, then reinstall with --no-build-isolation)")
        return [], {}

    cu_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    plan = plan_build(torch.version.cuda, os.environ.get("GOLF_FAST_SKIP_CUDA_BUILD", "0") == "1",
                      bool(cu_sources), os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"))
    _log(plan.reason)
    if plan.cuda:  # torch.utils.cpp_extension reads CUDA_HOME at import: set it to the resolved toolkit first
        os.environ["CUDA_HOME"] = plan.toolkit.root
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cpp_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cu_glue = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp")))
    cxx_flags = ["-O3", "-std=c++17", "-fopenmp"]
    include_dirs = [os.path.join(HERE, "csrc")]
    cpp_ext = CppExtension("golf_fast._C", sources=cpp_sources, include_dirs=include_dirs,
                           extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"])
    if not plan.cuda:
        return [cpp_ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}
    cuda_ext = CUDAExtension(
        "golf_fast._C",
        sources=cpp_sources + cu_glue + cu_sources,
        include_dirs=include_dirs,
        define_macros=[("GOLF_FAST_WITH_CUDA", "1")],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo",
                     "-gencode=arch=compute_90a,code=sm_90a",
                     "-gencode=arch=compute_80,code=sm_80"],
        },
        extra_link_args=["-fopenmp"],
    )
    base = BuildExtension.with_options(no_python_abi_suffix=False)

    class BuildWithCppFallback(base):
        """Build the CUDA extension; on failure, the C++ one (see :func:`run_with_fallback`)."""

        def run(self) -> None:
            def cpp_only() -> bool:
                if self.extensions == [cpp_ext]:
                    return False
                self.extensions = [cpp_ext]
                self.distribution.ext_modules = [cpp_ext]
                return True

            run_with_fallback(lambda: base.run(self), cpp_only)

    return [cuda_ext], {"build_ext": BuildWithCppFallback}


if __name__ == "__main__":
    from setuptools import setup

    ext_modules, cmdclass = _extensions()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)
