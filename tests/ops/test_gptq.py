"""The in-block GPTQ op: reference vs float64 math, C++ and Triton (interpreter) vs reference, sm_90."""

from __future__ import annotations

import pytest
import torch

import golf_fast
from conftest import requires_cuda, requires_ext
from golf_fast.ops.gptq import gptq_block, gptq_block_compare, gptq_block_ref
from golf_fast.ops.gptq_kernels import GPTQ_BLOCK_CONFIG, SHIPPED_CONFIGS


def _block_inputs(nb: int, n: int, bs: int, qm: int = 31, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * bs + 8, bs, generator=g) @ (torch.eye(bs) + 0.3 * torch.randn(bs, bs, generator=g))
    us = []
    for _ in range(nb):
        h = x.T.double() @ x.double() / x.shape[0] + 0.01 * torch.eye(bs, dtype=torch.float64)
        us.append(torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True))
        x = x + 0.1 * torch.randn(x.shape, generator=g)
    w = torch.randn(nb, n, bs, generator=g, dtype=torch.float64) * 0.02
    scales = (12.85 * w.std(dim=-1) / qm).half().double()
    return w.to(dtype), torch.stack(us).to(dtype), scales.to(dtype), qm


def _float64_loop(w, u, s, qm):
    """Independent float64 statement of the in-block math, one row at a time."""
    nb, n, bs = w.shape
    codes = torch.zeros(nb, n, bs, dtype=torch.int64)
    err = torch.zeros(nb, n, bs, dtype=torch.float64)
    for b in range(nb):
        for r in range(n):
            row = w[b, r].double().clone()
            for j in range(bs):
                q = min(max(round(float(row[j] / s[b, r])), -qm), qm)  # Python round: half to even
                e = (float(row[j]) - q * float(s[b, r])) / float(u[b, j, j])
                row[j + 1:] -= e * u[b, j, j + 1:].double()
                codes[b, r, j], err[b, r, j] = q, e
    return codes, err


def test_reference_matches_float64_loop():
    torch.manual_seed(5101)
    w, u, s, qm = _block_inputs(2, 5, 24, dtype=torch.float64)
    codes, err = gptq_block_ref(w, u, s, qm)
    c64, e64 = _float64_loop(w, u, s, qm)
    assert torch.equal(codes.long(), c64)
    torch.testing.assert_close(err, e64, rtol=1e-12, atol=1e-14)


@requires_ext
@pytest.mark.parametrize("shape", [(1, 1, 128), (3, 37, 128), (2, 9, 61)])
def test_cpp_matches_reference_bitwise(shape):
    torch.manual_seed(5102)
    w, u, s, qm = _block_inputs(*shape, seed=sum(shape))
    codes, err = gptq_block(w, u, s, qm, backend="cpp")
    rcodes, rerr = gptq_block(w, u, s, qm, backend="reference")
    assert codes.dtype == torch.int8 and err.dtype == torch.float32
    assert torch.equal(codes, rcodes)
    assert torch.equal(err, rerr)  # same fp32 operation sequence, no FMA contraction


@requires_ext
def test_cpp_strided_input_and_unbatched_form():
    torch.manual_seed(5103)
    w, u, s, qm = _block_inputs(1, 33, 96, seed=3)
    wide = torch.zeros(33, 200)
    wide[:, 50:146] = w[0]
    view = wide[:, 50:146]  # a column slice of a larger matrix, as the driver passes it
    codes, err = gptq_block(view, u[0], s[0], qm, backend="cpp")
    rcodes, rerr = gptq_block_ref(w, u, s, qm)
    assert codes.shape == (33, 96)
    assert torch.equal(codes, rcodes[0]) and torch.equal(err, rerr[0])
    assert torch.equal(wide[:, 50:146], w[0])  # input not modified


@pytest.mark.interpreter
@pytest.mark.parametrize("shape,qm", [((1, 1, 16), 31), ((2, 19, 37), 63), ((1, 17, 128), 31)])
def test_triton_interpreter_matches_reference(triton_interpret, shape, qm):
    torch.manual_seed(5104)
    w, u, s, _ = _block_inputs(*shape, qm=qm, seed=7 + shape[1])
    codes, err = gptq_block(w, u, s, qm, backend="triton")
    rcodes, rerr = gptq_block_ref(w, u, s, qm)
    assert torch.equal(codes, rcodes)
    torch.testing.assert_close(err, rerr, rtol=1e-5, atol=1e-7)


@pytest.mark.interpreter
def test_triton_interpreter_strided_block(triton_interpret):
    torch.manual_seed(5105)
    w, u, s, qm = _block_inputs(1, 6, 20, seed=11)
    wide = torch.randn(1, 6, 50)
    wide[:, :, 10:30] = w
    codes, err = gptq_block(wide[:, :, 10:30], u, s, qm, backend="triton")
    rcodes, rerr = gptq_block_ref(w, u, s, qm)
    assert torch.equal(codes, rcodes)
    torch.testing.assert_close(err, rerr, rtol=1e-5, atol=1e-7)


def test_round_half_to_even_at_exact_ties():
    # w / s lands exactly on .5 ties: codes must follow torch.round (half to even) in every backend
    s = torch.ones(1, 4)
    w = torch.tensor([[[0.5, 0.0], [1.5, 0.0], [-2.5, 0.0], [40.0, 0.0]]])
    u = torch.eye(2)[None].contiguous()
    codes, _ = gptq_block_ref(w, u, s, 31)
    assert codes[0, :, 0].tolist() == [0, 2, -2, 31]
    if golf_fast.HAS_EXT:
        assert torch.equal(gptq_block(w, u, s, 31, backend="cpp")[0], codes)


@pytest.mark.interpreter
def test_triton_round_half_to_even(triton_interpret):
    s = torch.ones(1, 4)
    w = torch.tensor([[[0.5, 0.0], [1.5, 0.0], [-2.5, 0.0], [40.0, 0.0]]])
    u = torch.eye(2)[None].contiguous()
    assert gptq_block(w, u, s, 31, backend="triton")[0][0, :, 0].tolist() == [0, 2, -2, 31]


def test_selfcheck_compare_detects_mismatch():
    torch.manual_seed(5108)
    w, u, s, qm = _block_inputs(1, 20, 32, seed=5)
    ref = gptq_block_ref(w, u, s, qm)
    assert gptq_block_compare(ref, ref) is None
    bad_codes = ref[0].clone()
    bad_codes[:, :, :] = 0
    assert "codes differ" in gptq_block_compare((bad_codes, ref[1]), ref)
    assert "relative error" in gptq_block_compare((ref[0], ref[1] * 1.01), ref)


def test_opcheck():
    torch.manual_seed(5109)
    w, u, s, qm = _block_inputs(2, 5, 16, seed=2)
    torch.library.opcheck(torch.ops.golf_fast.gptq_block.default, (w, u, s, qm))


@pytest.mark.parametrize("bad,match", [
    (dict(w=torch.zeros(2, 3, 4, dtype=torch.float64)), "w: expected dtype torch.float32"),
    (dict(u=torch.zeros(2, 5, 5)), r"u: expected shape \(2, 4, 4\)"),
    (dict(scales=torch.ones(2, 4)), r"scales: expected shape \(2, 3\)"),
    (dict(qmax=0), "qmax: expected an int in 1..127"),
    (dict(w=torch.zeros(3, 4)), r"u: expected shape \(1, 4, 4\)"),
])
def test_block_bad_inputs(bad, match):
    torch.manual_seed(5110)
    args = dict(w=torch.zeros(2, 3, 4), u=torch.eye(4).repeat(2, 1, 1), scales=torch.ones(2, 3), qmax=31)
    args.update(bad)
    with pytest.raises((TypeError, ValueError), match=match):
        gptq_block(args["w"], args["u"], args["scales"], args["qmax"])


@pytest.mark.sm90
def test_sm90_compile_no_spills(sm90_report):
    assert GPTQ_BLOCK_CONFIG in SHIPPED_CONFIGS
    for cfg in SHIPPED_CONFIGS:
        report = sm90_report(cfg)
        assert report.ok, report.error
        assert report.local_bytes == 0, f"{cfg.name} spills {report.local_bytes} bytes to local memory"
        assert report.registers <= 255


@pytest.mark.gpu
@requires_cuda
def test_cuda_kernel_matches_reference():
    torch.manual_seed(5112)
    w, u, s, qm = _block_inputs(3, 300, 128, seed=9)
    w, u, s = w.cuda(), u.cuda(), s.cuda()
    out = gptq_block(w, u, s, qm, backend="triton")
    ref = gptq_block_ref(w, u, s, qm)
    assert gptq_block_compare(out, ref) is None
