"""A user's view of the interpreter: every public op with a Triton kernel, called with
``backend="triton"`` under ``TRITON_INTERPRET=1`` (nothing patched by the tests), on bf16 and fp32
inputs, matches float64 within its documented tolerance or refuses the dtype with an error that
names the argument. The shapes are the issue's (64² and a tall batch) cut to interpreter size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.ops.dispatch import resolved_backends
from golf_fast.ops.newton_schulz import _ns_eager, newton_schulz_f64, resolve_coefficients
from golf_fast.quant import quantize_rtn
from conftest import requires_triton

pytestmark = [pytest.mark.interpreter, requires_triton]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("in_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("compute", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(64, 64), (2, 96, 40)])
def test_newton_schulz(triton_interpret, in_dtype, compute, shape):
    """Error against float64 at most 2× eager PyTorch's in the same dtype (fp32: eager bf16's, the
    documented bound for a TF32 kernel)."""
    torch.manual_seed(2621)
    G = torch.randn(shape).to(in_dtype)
    out = golf_fast.newton_schulz(G, 5, dtype=compute, backend="triton")
    assert resolved_backends()["newton_schulz@cpu"] == "triton"
    f64 = newton_schulz_f64(G.double())
    eager_dtype = torch.bfloat16 if compute == torch.float32 else compute
    eager = _ns_eager(G, resolve_coefficients(5, "polar_express"), 1e-7, eager_dtype)
    assert out.dtype == compute and out.shape == G.shape
    assert _rel(out, f64) <= 2 * _rel(eager, f64)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_softcapped_cross_entropy(triton_interpret, dtype):
    torch.manual_seed(2622)
    z = (torch.randn(5, 300) * 20).to(dtype).requires_grad_(True)
    t = torch.randint(0, 300, (5,))
    loss = golf_fast.softcapped_cross_entropy(z, t, 30.0, backend="triton")
    loss.backward()
    assert resolved_backends()["softcapped_ce@cpu"] == "triton"
    z64 = z.detach().double().requires_grad_(True)
    want = F.cross_entropy(30.0 * torch.tanh(z64 / 30.0), t)
    want.backward()
    assert abs(float(loss.detach()) - float(want)) <= 2e-6 * (float(want) + 60.0)
    eps = torch.finfo(dtype).eps
    tol = max(eps, 1e-5) * z64.grad.abs() + 2 ** -6 * eps * float(z64.grad.abs().max())
    assert bool(((z.grad.double() - z64.grad).abs() <= tol).all())


def test_leaky_relu_square_mlp_bf16(triton_interpret):
    torch.manual_seed(2623)
    x = torch.randn(37, 64).bfloat16()
    w_up = (torch.randn(96, 64) * 0.125).bfloat16()
    w_down = (torch.randn(64, 96) * 0.1).bfloat16()
    y = golf_fast.leaky_relu_square_mlp(x, w_up, w_down, 0.5, backend="triton")
    assert resolved_backends()["leaky_relu_square_mlp@cpu"] == "triton"
    pre = x.double() @ w_up.double().T
    want = F.leaky_relu(pre, 0.5).square() @ w_down.double().T
    # pre, the activation and post round to bf16 like eager, then the down-projection: a few bf16 ulps
    assert _rel(y, want) <= 4 * 2 ** -8


def test_leaky_relu_square_mlp_refuses_fp32(triton_interpret):
    x = torch.randn(4, 16)
    with pytest.raises(TypeError, match="x: expected dtype torch.bfloat16 or torch.float16"):
        golf_fast.leaky_relu_square_mlp(x, torch.randn(8, 16), torch.randn(16, 8), backend="triton")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_int6_linear_and_dequantize(triton_interpret, dtype):
    torch.manual_seed(2624)
    q = quantize_rtn(torch.randn(40, 136) * 0.02, bits=6, clip_sigmas=12.85)
    packed = golf_fast.pack_int6(q.codes, backend="triton")
    assert torch.equal(golf_fast.unpack_int6(packed, num_cols=136, backend="triton"), q.codes)
    w = q.codes.double() * q.scales.double()[:, None]
    deq = golf_fast.dequantize_int6(packed, q.scales, 136, dtype, backend="triton")
    assert _rel(deq, w) <= torch.finfo(dtype).eps
    x = torch.randn(5, 136).to(dtype)
    if dtype == torch.float32:
        with pytest.raises(TypeError, match="x: expected"):
            golf_fast.int6_linear(x, packed, q.scales, backend="triton")
        return
    y = golf_fast.int6_linear(x, packed, q.scales, backend="triton")
    assert _rel(y, x.double() @ w.T) <= 2 ** -8  # fp32 accumulation, rounded once to bf16
