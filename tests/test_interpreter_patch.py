"""The single workaround for the interpreter's bf16 ``tl.dot`` (tests/interpreter_patch.py)."""

from __future__ import annotations

import pytest
import torch

from golf_fast.ops.triton_support import tl, triton_kernel
from conftest import requires_triton

pytestmark = [pytest.mark.interpreter, requires_triton]


@triton_kernel
def _dot_kernel(a_ptr, b_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], tl.dot(a, b))


def run_dot(dtype):
    a = torch.randn(16, 32).to(dtype)
    b = torch.randn(32, 16).to(dtype)
    c = torch.empty(16, 16)
    _dot_kernel[(1,)](a, b, c, M=16, N=16, K=32)
    return c, a.float() @ b.float()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dot_in_interpreter_with_workaround(triton_interpret, dtype):
    torch.manual_seed(9101)
    got, want = run_dot(dtype)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_the_bug_still_exists_without_the_workaround(monkeypatch):
    """If this fails, Triton fixed the bf16 dot: delete interpreter_patch.py and its use."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.manual_seed(9102)
    got, want = run_dot(torch.bfloat16)
    assert not torch.allclose(got, want, rtol=1e-2, atol=1e-2)
