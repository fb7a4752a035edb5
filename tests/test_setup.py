"""setup.py's decisions, on the CPU with fakes: nvcc is followed through symlinks before CUDA_HOME is
trusted, and a failing CUDA build falls back to the C++ part with the reason (the install never fails
because of CUDA). Importing setup.py builds nothing."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_module():
    spec = importlib.util.spec_from_file_location("golf_fast_setup", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)  # must not run setup()
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _toolkit(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "include" / "cuda_runtime.h").write_text("")
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    return nvcc


def test_cuda_home_symlink_resolves_to_the_real_toolkit(setup_module, tmp_path):
    real = tmp_path / "cuda-12.8"
    _toolkit(real)
    os.symlink(real, tmp_path / "cuda")
    tk, note = setup_module.find_cuda_toolkit(str(tmp_path / "cuda"), which=lambda n: None)
    assert tk.root == str(real) and tk.nvcc == str(real / "bin" / "nvcc") and "CUDA_HOME" in note


def test_a_distribution_nvcc_wrapper_on_path_is_followed_and_a_bare_cuda_home_replaced(setup_module, tmp_path):
    real_nvcc = _toolkit(tmp_path / "opt" / "cuda-12.4")
    usr_bin = tmp_path / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    os.symlink(real_nvcc, usr_bin / "nvcc")  # /usr/bin/nvcc -> the toolkit; /usr has no cuda_runtime.h
    tk, note = setup_module.find_cuda_toolkit(str(tmp_path / "usr"), which=lambda n: str(usr_bin / "nvcc"))
    assert tk.root == str(tmp_path / "opt" / "cuda-12.4")  # not /usr, which torch would have guessed
    assert "replaced" in note
    tk, note = setup_module.find_cuda_toolkit(None, which=lambda n: str(usr_bin / "nvcc"))
    assert tk.root == str(tmp_path / "opt" / "cuda-12.4") and "nvcc from PATH" in note


def test_no_toolkit_means_the_cpp_part_with_the_reason(setup_module, tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text("")  # an nvcc with no toolkit around it
    plan = setup_module.plan_build("12.8", False, True, str(tmp_path), which=lambda n: None)
    assert not plan.cuda and "no include/cuda_runtime.h" in plan.reason and "C++ part only" in plan.reason
    assert not setup_module.plan_build(None, False, True, None).cuda
    assert "GOLF_FAST_SKIP_CUDA_BUILD" in setup_module.plan_build("12.8", True, True, None).reason
    real = tmp_path / "cuda"
    _toolkit(real)
    ok = setup_module.plan_build("12.8", False, True, str(real), which=lambda n: None)
    assert ok.cuda and ok.toolkit.root == str(real)


def test_a_failing_cuda_build_falls_back_to_cpp_and_says_why(setup_module):
    calls, logs, state = [], [], {"ext": "cuda"}

    def run():
        calls.append(state["ext"])
        if state["ext"] == "cuda":
            raise RuntimeError("The detected CUDA version (13.0) mismatches the version used to compile PyTorch (12.8)")

    def cpp_only():
        if state["ext"] == "cpp":
            return False
        state["ext"] = "cpp"
        return True

    assert setup_module.run_with_fallback(run, cpp_only, logs.append) == "cpp"
    assert calls == ["cuda", "cpp"]
    assert "mismatches" in logs[0] and "C++ part only" in logs[0]
    # a failure of the C++ part itself is not hidden
    state["ext"] = "cpp"

    def broken():
        raise RuntimeError("g++ failed")

    with pytest.raises(RuntimeError, match="g\\+\\+ failed"):
        setup_module.run_with_fallback(broken, cpp_only, logs.append)
