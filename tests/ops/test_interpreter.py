"""golf_fast.ops.interpreter: the package's one correction of Triton's interpreter for bfloat16.

Each bug is shown to exist in Triton's own interpreter (a plain ``InterpretedFunction`` launch,
outside the package's launch wrapper), and to be gone in a ``TritonKernel`` launch. If a
"bug still exists" test fails, Triton fixed it: delete that fix from golf_fast/ops/interpreter.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf_fast.ops.interpreter import f32_to_bf16_bits, interpreter_fixes
from golf_fast.ops.triton_support import tl, triton_kernel
from conftest import requires_triton

pytestmark = [pytest.mark.interpreter, requires_triton]


@triton_kernel
def _dot_kernel(a_ptr, b_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], tl.dot(a, b))


@triton_kernel
def _cast_kernel(x_ptr, y_ptr, N: tl.constexpr):
    r = tl.arange(0, N)
    tl.store(y_ptr + r, tl.load(x_ptr + r).to(tl.bfloat16))


def _dot_inputs(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(16, 32, generator=g).to(dtype)
    b = torch.randn(32, 16, generator=g).to(dtype)
    return a, b, a.double() @ b.double()


def _raw_launch(kernel, grid, *args, **meta):
    """Triton's interpreter exactly as Triton ships it (no golf_fast launch wrapper)."""
    from golf_fast.ops.triton_support import nested_jit_interpreted

    with nested_jit_interpreted():
        kernel.interpreted[grid](*args, **meta)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_package_launch_computes_dots_on_values(triton_interpret, dtype):
    a, b, want = _dot_inputs(dtype, 9101)
    c = torch.empty(16, 16)
    _dot_kernel[(1,)](a, b, c, M=16, N=16, K=32)
    # exact products of the rounded inputs, fp32 accumulation over K=32
    torch.testing.assert_close(c.double(), want, rtol=1e-5, atol=1e-5)


def test_the_bf16_dot_bug_still_exists_in_triton(triton_interpret):
    a, b, want = _dot_inputs(torch.bfloat16, 9102)
    c = torch.empty(16, 16)
    _raw_launch(_dot_kernel, (1,), a, b, c, M=16, N=16, K=32)
    assert not torch.allclose(c.double(), want, rtol=1e-2, atol=1e-2)


def _cast_inputs():
    g = torch.Generator().manual_seed(9103)
    x = torch.randn(256, generator=g) * 3
    # values halfway between two bf16 numbers (ties to even both ways), the largest finite float,
    # infinities and a NaN
    specials = torch.tensor([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -(1.0 + 2 ** -8), 3.4e38, float("inf"),
                             float("-inf"), float("nan"), 0.0, -0.0, 1e-40, 65504.0, 1.00390625])
    x[:specials.numel()] = specials
    return x


def test_package_launch_rounds_bf16_casts_to_nearest_even(triton_interpret):
    x = _cast_inputs()
    y = torch.empty(256, dtype=torch.bfloat16)
    _cast_kernel[(1,)](x, y, N=256)
    want = x.to(torch.bfloat16)
    assert torch.equal(y.view(torch.int16)[~x.isnan()], want.view(torch.int16)[~x.isnan()])
    assert y[x.isnan()].isnan().all()


def test_the_bf16_cast_bug_still_exists_in_triton(triton_interpret):
    x = _cast_inputs()
    y = torch.empty(256, dtype=torch.bfloat16)
    _raw_launch(_cast_kernel, (1,), x, y, N=256)
    finite = x.isfinite()
    assert not torch.equal(y.view(torch.int16)[finite], x.to(torch.bfloat16).view(torch.int16)[finite])


def test_f32_to_bf16_bits_matches_torch():
    x = torch.cat([_cast_inputs(), torch.randn(4096, generator=torch.Generator().manual_seed(9104)) * 1e30])
    got = torch.from_numpy(f32_to_bf16_bits(x.numpy()).view(np.int16))
    want = x.to(torch.bfloat16).view(torch.int16)
    ok = ~x.isnan()
    assert torch.equal(got[ok], want[ok])
    assert torch.from_numpy(f32_to_bf16_bits(x.numpy())).view(torch.bfloat16)[~ok].isnan().all()


def test_fixes_apply_only_inside_and_nest():
    from triton.runtime.interpreter import InterpreterBuilder

    before = (InterpreterBuilder.create_dot, InterpreterBuilder.cast_impl, InterpreterBuilder.create_fp_to_fp)
    with interpreter_fixes():
        inside = InterpreterBuilder.create_dot
        assert inside is not before[0]
        with interpreter_fixes():
            assert InterpreterBuilder.create_dot is inside
        assert InterpreterBuilder.create_dot is inside  # the inner exit keeps the outer fix
    assert (InterpreterBuilder.create_dot, InterpreterBuilder.cast_impl, InterpreterBuilder.create_fp_to_fp) == before


def test_fixes_restored_after_an_error():
    from triton.runtime.interpreter import InterpreterBuilder

    before = InterpreterBuilder.create_dot
    with pytest.raises(RuntimeError, match="boom"):
        with interpreter_fixes():
            raise RuntimeError("boom")
    assert InterpreterBuilder.create_dot is before
