"""Shared fixtures and skip helpers (DESIGN.md, "Verifying GPU code without a GPU").

Tiers and their markers:
* reference tests: plain CPU tests, no marker;
* ``interpreter``: the Triton kernels themselves under ``TRITON_INTERPRET=1`` (fixture
  ``triton_interpret``; the package itself corrects the interpreter's bf16 ``tl.dot`` and
  fp32→bf16 casts during its launches, golf_fast/ops/interpreter.py, so no test-side patch exists);
* ``sm90``: ahead-of-time compilation for sm_90 / sm_90a (fixture ``sm90_report``, cached per run);
* ``gpu``: needs a CUDA device (``requires_cuda``).

Tests of tiny models (the folders in ``ONE_CPU_THREAD_DIRS``) run with one intra-op thread.
"""

from __future__ import annotations

import importlib.util
import pathlib
import shutil
from typing import Optional

import pytest

import torch

import golf_fast
from golf_fast.tools.sm90 import find_nvcc

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
requires_triton = pytest.mark.skipif(not golf_fast.HAS_TRITON, reason="needs Triton (pip install triton==3.9.0)")
requires_ext = pytest.mark.skipif(not golf_fast.HAS_EXT, reason="needs golf_fast._C (pip install --no-build-isolation -e .)")
requires_nvcc = pytest.mark.skipif(find_nvcc() is None, reason="needs nvcc")
requires_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None and
                                       importlib.util.find_spec("torch.distributed.run") is None,
                                       reason="needs torch.distributed.run")


INTERPRETER_TRITON = "3.9."
"""The Triton release the interpreter tests are known to pass with (pyproject's test extra pins
triton==3.9.0). Triton 3.6's interpreter, on the GPU machine (torch 2.11), fails differently
(numpy 2.x and interpreter API differences), so there those tests are skipped with this reason and
the GPU machine's pytest stays green; the GPU tests cover the kernels there."""


def _interpreter_skip_reason() -> Optional[str]:
    if not golf_fast.HAS_TRITON:
        return None  # the fixture skips with its own reason
    import triton

    if not triton.__version__.startswith(INTERPRETER_TRITON):
        return (f"interpreter tests are pinned to Triton {INTERPRETER_TRITON}x; this is Triton {triton.__version__}, "
                "whose interpreter differs (numpy/interpreter API differences)")
    return None


def pytest_collection_modifyitems(config, items):
    reason = _interpreter_skip_reason()
    if reason is None:
        return
    for item in items:
        if "triton_interpret" in getattr(item, "fixturenames", ()) or item.get_closest_marker("interpreter"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def triton_interpret(monkeypatch):
    """Run Triton kernels in the interpreter on CPU tensors for the duration of one test."""
    if not golf_fast.HAS_TRITON:
        pytest.skip("needs Triton (pip install triton==3.9.0)")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


_SM90_CACHE: dict = {}


def _compile_sm90(cfg):
    from golf_fast.tools.sm90 import compile_triton_sm90

    key = (cfg.name, cfg.label(), tuple(sorted(cfg.signature.items())))
    if key not in _SM90_CACHE:
        _SM90_CACHE[key] = compile_triton_sm90(cfg)
    return _SM90_CACHE[key]


@pytest.fixture(scope="session")
def sm90_report():
    """``sm90_report(config) -> CompileReport``, each configuration compiled once per test run."""
    if not golf_fast.HAS_TRITON:
        pytest.skip("needs Triton (pip install triton==3.9.0)")
    return _compile_sm90


TESTS_DIR = pathlib.Path(__file__).resolve().parent
ONE_CPU_THREAD_DIRS = frozenset({"data", "eval", "model", "train"})
"""Test folders of tiny models: on a shared 2-core machine more intra-op threads only add contention."""


@pytest.fixture(autouse=True)
def _one_cpu_thread(request):
    """One torch intra-op thread for the tests under ``ONE_CPU_THREAD_DIRS``; restored afterwards."""
    try:
        folder = pathlib.Path(str(request.node.fspath)).resolve().relative_to(TESTS_DIR).parts[0]
    except ValueError:
        folder = None
    if folder not in ONE_CPU_THREAD_DIRS:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
