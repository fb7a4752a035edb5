"""Inputs the ops cannot compute are refused with an error naming the argument (issue 13)."""

from __future__ import annotations

import math

import pytest
import torch

from golf_fast.ops.gptq import gptq_block
from golf_fast.ops.hessian import hessian_accumulate_, hessian_accumulate_ref
from golf_fast.ops.int6_matmul import dequantize_int6, int6_linear
from golf_fast.ops.int6_pack import pack_int6, unpack_int6
from golf_fast.ops.newton_schulz import newton_schulz
from golf_fast.quant.gptq import gptq_quantize


def _spd(k, g):
    a = torch.randn(k, 2 * k, generator=g)
    return a @ a.T / (2 * k) + 0.01 * torch.eye(k)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_hessian_refuses_overlapping_h_and_x(backend):
    g = torch.Generator().manual_seed(1321)
    H = _spd(24, g)
    with pytest.raises(ValueError, match="X: shares memory with H"):
        hessian_accumulate_(H, H, 1.0, backend=backend)
    big = torch.randn(600, 24, generator=g)
    H2 = torch.zeros(24, 24)
    with pytest.raises(ValueError, match="X: shares memory with H"):  # a view of H's storage
        hessian_accumulate_(H2, H2[:8], 1.0, backend=backend)
    # disjoint views of one storage are fine and exact
    buf = torch.zeros(24 * 24 + 600 * 24)
    Hv, Xv = buf[:576].view(24, 24), buf[576:].view(600, 24)
    Xv.copy_(big)
    hessian_accumulate_(Hv, Xv, 0.5, backend=backend)
    ref = torch.zeros(24, 24)
    hessian_accumulate_ref(ref, big, 0.5)
    torch.testing.assert_close(Hv, ref, rtol=1e-5, atol=1e-5)


def test_hessian_scale_must_fit_fp32():
    H, X = torch.zeros(4, 4), torch.randn(3, 4, generator=torch.Generator().manual_seed(1322))
    for bad in (1e39, -1e300, math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match="scale"):
            hessian_accumulate_(H, X, bad)
    hessian_accumulate_(H, X, 3.4e38 / 1e6)


def test_meta_tensors_get_a_clear_error():
    m = torch.empty(8, 16, device="meta")
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        hessian_accumulate_(torch.empty(16, 16, device="meta"), m)
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        newton_schulz(m)
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        pack_int6(torch.empty(4, 16, dtype=torch.int8, device="meta"))
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        unpack_int6(torch.empty(4, 12, dtype=torch.uint8, device="meta"), 16)
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        gptq_quantize(m, torch.empty(16, 16, device="meta"))
    with pytest.raises(ValueError, match="meta tensors are not supported"):
        gptq_block(torch.empty(4, 8, device="meta"), torch.empty(8, 8, device="meta"), torch.empty(4, device="meta"), 31)


def test_newton_schulz_validates_eps_and_coefficients():
    G = torch.randn(8, 12, generator=torch.Generator().manual_seed(1323))
    for eps in (math.inf, math.nan, -1.0, True, 1e300):
        with pytest.raises(ValueError, match="eps"):
            newton_schulz(G, eps=eps)
    for coeffs in ([(1.0, math.nan, 0.0)], [(math.inf, 0.0, 0.0)], [(True, 0.0, 0.0)], [("a", 1, 2)]):
        with pytest.raises(ValueError, match="coefficients"):
            newton_schulz(G, steps=1, coefficients=coeffs)
    assert torch.isfinite(newton_schulz(G, steps=1, coefficients=[(1.5, -0.5, 0.0)], dtype=torch.float32)).all()


def test_int6_packed_form_is_checked_against_its_true_k():
    g = torch.Generator().manual_seed(1324)
    codes = torch.randint(-31, 32, (6, 83), dtype=torch.int8, generator=g)
    codes[:, 80:] = torch.randint(1, 32, (6, 3), dtype=torch.int8, generator=g)  # nonzero in the last columns
    packed = pack_int6(codes)
    scales = torch.rand(6, generator=g).half() + 0.01
    for k in (81, 82, 80 - 0):  # same 16-column padding (Kp = 96 for 81..96; 80 is a multiple of 16)
        if k % 16 == 0:
            continue
        with pytest.raises(ValueError, match="packed with K >= 83"):
            unpack_int6(packed, k)
        with pytest.raises(ValueError, match="packed with K >= 83"):
            dequantize_int6(packed, scales, k)
        with pytest.raises(ValueError, match="packed with K >= 83"):
            int6_linear(torch.randn(2, k, generator=g).bfloat16(), packed, scales)
    assert torch.equal(unpack_int6(packed, 83), codes)
    # a larger K in the same padding reads code-0 columns: exactly the same product, so it is allowed
    wide = unpack_int6(packed, 90)
    assert torch.equal(wide[:, :83], codes) and not wide[:, 83:].any()
    # zero codes in the dropped columns: the smaller K computes the same result, also allowed
    z = codes.clone()
    z[:, 81:] = 0
    assert torch.equal(unpack_int6(pack_int6(z), 81), z[:, :81])


def test_gptq_refuses_fp16_scale_overflow_and_non_bool_act_order():
    g = torch.Generator().manual_seed(1325)
    W = torch.randn(4, 16, generator=g)
    H = _spd(16, g)
    with pytest.raises(ValueError, match="overflows float16"):
        gptq_quantize(W * 1e7, H)
    with pytest.raises(TypeError, match="act_order"):
        gptq_quantize(W, H, act_order="no")
    res = gptq_quantize(W, H, act_order=False)
    assert torch.isfinite(res.scales.float()).all()
