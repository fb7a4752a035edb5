"""Build golf_fast and its extension golf_fast._C.

* The C++ part (csrc/*.cpp) is built on every machine.
* The CUDA part (csrc/cuda/*.cu) is built when the installed torch has CUDA and nvcc is found,
  unless GOLF_FAST_SKIP_CUDA_BUILD=1.
* Install with ``pip install --no-build-isolation -e .`` so the build uses the torch that is
  already installed (an isolated build would download another torch).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(msg: str) -> None:
    print(f"golf_fast setup: {msg}", file=sys.stderr)


def _extensions():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError:
        _log("torch is not installed; building without golf_fast._C "
             "(install torch first, then reinstall with --no-build-isolation)")
        return [], {}

    cpp_sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cu_sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
    cu_glue = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cpp")))
    skip_cuda = os.environ.get("GOLF_FAST_SKIP_CUDA_BUILD", "0") == "1"
    nvcc = CUDA_HOME and shutil.which(os.path.join(CUDA_HOME, "bin", "nvcc"))
    want_cuda = bool(cu_sources) and not skip_cuda and torch.version.cuda is not None and bool(nvcc)
    if skip_cuda:
        _log("GOLF_FAST_SKIP_CUDA_BUILD=1: building the C++ part only")
    elif torch.version.cuda is None:
        _log("torch has no CUDA: building the C++ part only")
    elif not nvcc:
        _log("nvcc not found (CUDA_HOME unset?): building the C++ part only")

    cxx_flags = ["-O3", "-std=c++17", "-fopenmp"]
    include_dirs = [os.path.join(HERE, "csrc")]
    if want_cuda:
        _log(f"building the CUDA part with {nvcc}")
        ext = CUDAExtension(
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
    else:
        ext = CppExtension(
            "golf_fast._C",
            sources=cpp_sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=["-fopenmp"],
        )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
