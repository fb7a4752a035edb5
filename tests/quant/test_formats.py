"""Quantized-code formats: qmax, SDClip scales, round-to-nearest, QuantizedTensor."""

from __future__ import annotations

import pytest
import torch

from golf_fast.ops.int6_pack import packed_row_bytes, unpack_int6_ref
from golf_fast.quant.formats import QuantizedTensor, dequantize_rows, qmax, quantize_rtn, sdclip_scales


def test_qmax():
    assert [qmax(b) for b in (6, 7, 8)] == [31, 63, 127]
    for bad in (1, 9, 6.0, True):
        with pytest.raises(ValueError, match="bits"):
            qmax(bad)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sdclip_scales_match_float64():
    w = torch.randn(37, 53, dtype=torch.float64, generator=_gen(201)) * 0.05
    got = sdclip_scales(w.float(), bits=6, clip_sigmas=12.85)
    want = 12.85 * w.std(dim=1, unbiased=True) / 31
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=0)


@pytest.mark.parametrize("bits", [6, 7, 8])
def test_rtn_codes_are_nearest_on_the_grid(bits):
    w = torch.randn(19, 41, generator=_gen(210 + bits)) * 0.02
    q = quantize_rtn(w, bits, clip_sigmas=3.0)
    s = q.scales.double()[:, None]
    want = torch.clamp(torch.round(w.double() / s), -qmax(bits), qmax(bits))
    assert torch.equal(q.codes.double(), want)
    inside = want.abs() < qmax(bits)
    err = (q.dequantize().double() - w.double()).abs()
    assert bool((err[inside] <= 0.5 * s.expand_as(err)[inside] + 1e-6).all())


def test_packed_forms():
    w = torch.randn(5, 23, generator=_gen(203))
    q6 = quantize_rtn(w, 6, 12.85)
    assert q6.packed().shape == (5, packed_row_bytes(23))
    assert torch.equal(unpack_int6_ref(q6.packed(), 23), q6.codes)
    q8 = quantize_rtn(w, 8, 20.0)
    assert torch.equal(q8.packed(), q8.codes)
    with pytest.raises(ValueError, match="bits"):
        quantize_rtn(w, 4, 3.0).packed()


def test_bad_inputs():
    with pytest.raises(TypeError, match="w: expected a floating-point"):
        sdclip_scales(torch.zeros(3, 3, dtype=torch.int8), 6, 1.0)
    with pytest.raises(ValueError, match="w: expected a 2-D"):
        sdclip_scales(torch.zeros(3), 6, 1.0)
    with pytest.raises(ValueError, match="w: contains NaN"):
        sdclip_scales(torch.tensor([[1.0, float("nan")]]), 6, 1.0)
    with pytest.raises(ValueError, match="clip_sigmas"):
        sdclip_scales(torch.randn(2, 4, generator=_gen(204)), 6, 0)
    with pytest.raises(ValueError, match="codes: expected values in \\[-31, 31\\]"):
        QuantizedTensor(torch.full((2, 2), 40, dtype=torch.int8), torch.ones(2, dtype=torch.float16), 6)
    with pytest.raises(ValueError, match="scales: expected float16 of shape \\(2,\\)"):
        QuantizedTensor(torch.zeros(2, 2, dtype=torch.int8), torch.ones(3, dtype=torch.float16), 6)
    with pytest.raises(ValueError, match="scales: expected a float tensor of shape \\(2,\\)"):
        dequantize_rows(torch.zeros(2, 2, dtype=torch.int8), torch.ones(3))
