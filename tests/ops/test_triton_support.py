"""``@triton_kernel`` + ``@triton_helper``: kernels that call shared jit helpers (and ``tl.sum``,
``tl.max``, ``tl.zeros``, themselves jit functions of ``triton.language``) run in the interpreter
and compile for sm_90 in the same process, in either order."""

from __future__ import annotations

import pytest
import torch

import golf_fast
from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import nested_jit_interpreted, tl, triton_helper, triton_kernel

pytestmark = pytest.mark.skipif(not golf_fast.HAS_TRITON, reason="needs Triton (pip install triton==3.9.0)")


@triton_helper
def _affine(x, k: tl.constexpr):
    return x * k + 1.0


@triton_helper
def _affine_then_square(x, k: tl.constexpr):
    y = _affine(x, k)  # a helper calling a helper
    return y * y


@triton_kernel
def _helper_kernel(x_ptr, out_ptr, stats_ptr, N, BLOCK: tl.constexpr):
    """out = (2x + 1)²; stats = [Σ out, max out, Σ of a tl.zeros tile + 1] over the first N elements."""
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    y = _affine_then_square(x, 2.0)
    tl.store(out_ptr + offs, y, mask=mask)
    tl.store(stats_ptr, tl.sum(tl.where(mask, y, 0.0), axis=0))
    tl.store(stats_ptr + 1, tl.max(tl.where(mask, y, -1.0), axis=0))
    tl.store(stats_ptr + 2, tl.sum(tl.zeros((BLOCK,), tl.float32) + 1.0, axis=0))


HELPER_CONFIG = KernelConfig(
    name="helper_kernel", kernel=_helper_kernel,
    signature={"x_ptr": "*fp32", "out_ptr": "*fp32", "stats_ptr": "*fp32", "N": "i32", "BLOCK": "constexpr"},
    constexprs={"BLOCK": 64}, num_warps=4, num_stages=1)


def _run_interpreted():
    x = torch.randn(45, dtype=torch.float32)
    out, stats = torch.empty(45), torch.empty(3)
    _helper_kernel[(1,)](x, out, stats, 45, BLOCK=64)
    expect = (2.0 * x.double() + 1.0) ** 2
    torch.testing.assert_close(out.double(), expect, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats[0].double(), expect.sum(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats[1].double(), expect.max(), rtol=1e-6, atol=1e-6)
    assert float(stats[2]) == 64.0


def _compile_sm90():
    from golf_fast.tools.sm90 import compile_triton_sm90

    report = compile_triton_sm90(HELPER_CONFIG)
    assert report.ok, report.error
    assert report.local_bytes == 0


@pytest.mark.interpreter
@pytest.mark.sm90
def test_helpers_compile_then_interpret_then_compile(triton_interpret, monkeypatch, tmp_path):
    """Compiled for sm_90, run in the interpreter, compiled again: the interpreter leaves
    ``triton.language`` as it found it, so the second compile still sees the real language.
    Each compile gets an empty Triton cache, so the second one really compiles."""
    torch.manual_seed(9601)
    language_before = {name: dict(vars(obj)) for name, obj in (("tl", tl), ("core", tl.core))}
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "first"))
    _compile_sm90()
    _run_interpreted()
    for name, obj in (("tl", tl), ("core", tl.core)):
        changed = [k for k, v in vars(obj).items() if language_before[name].get(k) is not v]
        assert not changed, f"the interpreter left triton.language.{name} patched: {changed[:5]}"
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path / "second"))
    _compile_sm90()


@pytest.mark.interpreter
def test_helper_outside_a_kernel_still_refuses_to_run(triton_interpret):
    """Only an interpreted launch runs jit functions as device calls; outside one they raise."""
    with pytest.raises(RuntimeError, match="outside of the scope of a kernel"):
        _affine(torch.ones(3), 2.0)


@pytest.mark.interpreter
def test_nested_jit_interpreted_restores_jit_call(triton_interpret):
    from triton.runtime.jit import JITFunction

    original = JITFunction.__call__
    with nested_jit_interpreted():
        assert JITFunction.__call__ is not original
    assert JITFunction.__call__ is original


def test_every_gpu_launch_runs_on_the_tensors_device(monkeypatch):
    """Tensors on cuda:1 while cuda:0 is current: the launch runs under torch.cuda.device(cuda:1)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from golf_fast.ops import triton_support as ts

    state = {"current": 0, "launched_on": []}

    class FakeDeviceGuard:
        def __init__(self, device):
            self.device = torch.device(device)

        def __enter__(self):
            self.prev, state["current"] = state["current"], self.device.index

        def __exit__(self, *exc):
            state["current"] = self.prev

    monkeypatch.setattr(ts, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    monkeypatch.setattr(torch.cuda, "device", FakeDeviceGuard)
    kernel = ts.TritonKernel(lambda *a: None)
    kernel._jit = {(1,): lambda *args, **kw: state["launched_on"].append(state["current"])}
    with FakeTensorMode():
        on1, on0 = torch.empty(4, device="cuda:1"), torch.empty(4, device="cuda:0")
    kernel[(1,)](on1, 3, BLOCK=16)
    kernel[(1,)](7, on0, on1)
    kernel[(1,)](5)  # no tensor: the current device
    assert state["launched_on"] == [1, 0, 0] and state["current"] == 0
