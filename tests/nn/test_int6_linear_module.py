"""Int6Linear: construction from nn.Linear (SDClip RTN) and from codes, state_dict round trip,
extra_repr, torch.compile(fullgraph=True) on CPU, gradients to the input only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import golf_fast
from golf_fast.nn import Int6Linear
from golf_fast.quant.formats import quantize_rtn


def test_from_linear_is_rtn_with_sdclip_scales():
    torch.manual_seed(7101)
    lin = nn.Linear(96, 40).to(torch.bfloat16)
    mod = Int6Linear.from_linear(lin, clip_sigmas=12.85)
    q = quantize_rtn(lin.weight.detach(), 6, 12.85)
    assert torch.equal(mod.codes(), q.codes)
    assert torch.equal(mod.scales, q.scales)
    assert torch.equal(mod.bias, lin.bias.detach())
    x = torch.randn(3, 7, 96, dtype=torch.bfloat16)
    out = mod(x)
    w = q.codes.double() * q.scales.double()[:, None]
    exact = x.double() @ w.T + lin.bias.double()
    err = (out.double() - exact).abs()
    assert out.shape == (3, 7, 40) and out.dtype == torch.bfloat16
    assert bool((err <= torch.finfo(torch.bfloat16).eps * exact.abs() + 1e-5 * exact.abs().max()).all())
    # with a clip that suits nn.Linear's uniform init it approximates the float layer to int6 accuracy
    # (the record's k = 12.85 is tuned for trained, GPTQ-quantized weights, not a uniform init)
    close = Int6Linear.from_linear(lin, clip_sigmas=2.0)
    rel = (close(x).float() - lin(x).float()).norm() / lin(x).float().norm()
    assert rel < 0.05


def test_from_quantized_with_lowrank_and_state_dict_round_trip(tmp_path):
    torch.manual_seed(7102)
    codes = torch.randint(-31, 32, (24, 50), dtype=torch.int8)
    scales = torch.rand(24) * 0.01 + 0.001
    a, b = torch.randn(24, 4) * 0.05, torch.randn(4, 50) * 0.05
    mod = Int6Linear.from_quantized(codes, scales, torch.randn(24), lowrank=(a, b), dtype=torch.float16)
    assert torch.equal(mod.codes(), codes)
    x = torch.randn(5, 50, dtype=torch.float16)
    expect = golf_fast.int6_linear(x, mod.packed, mod.scales, mod.bias, (mod.lowrank_a, mod.lowrank_b))
    assert torch.equal(mod(x), expect)

    sd = mod.state_dict()
    assert set(sd) == {"packed", "scales", "bias", "lowrank_a", "lowrank_b"}
    path = tmp_path / "m.pt"
    torch.save(sd, path)
    loaded = torch.load(path, weights_only=True)  # tensors only: no code runs on load
    fresh = Int6Linear(50, 24, bias=True, lowrank_rank=4, dtype=torch.float16)
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh(x), mod(x))
    for k in sd:
        assert torch.equal(fresh.state_dict()[k], sd[k])


def test_state_dict_shape_mismatch_is_a_clear_error():
    mod = Int6Linear(64, 8, bias=False)
    with pytest.raises(ValueError, match=r"state_dict\['packed'\]: expected uint8 of shape \(8, 48\)"):
        mod.load_state_dict({"packed": torch.zeros(8, 96, dtype=torch.uint8), "scales": torch.ones(8).half()})


def test_extra_repr():
    mod = Int6Linear(512, 256, bias=False, lowrank_rank=2)
    r = repr(mod)
    assert "in_features=512" in r and "out_features=256" in r and "bias=False" in r
    assert "bits=6" in r and "lowrank_rank=2" in r and f"weight_bytes={256 * 384}" in r


def test_torch_compile_fullgraph_cpu():
    torch.manual_seed(7105)
    lin = nn.Linear(48, 20).to(torch.bfloat16)
    mod = Int6Linear.from_linear(lin)
    x = torch.randn(2, 4, 48, dtype=torch.bfloat16)
    torch._dynamo.reset()
    compiled = torch.compile(mod, fullgraph=True)
    out = compiled(x)
    # against the float64 math: x·(code·s)ᵀ + bias, up to bf16 output rounding
    w = mod.codes().double() * mod.scales.double()[:, None]
    exact = x.double() @ w.T + mod.bias.double()
    tol = torch.finfo(torch.bfloat16).eps * exact.abs() + 1e-5 * exact.abs().max()
    assert out.shape == (2, 4, 20) and out.dtype == torch.bfloat16
    assert bool(((out.double() - exact).abs() <= tol).all())
    assert not bool(((out.double() - (exact - mod.bias.double())).abs() <= tol).all())  # rejects a dropped bias


def test_gradient_flows_to_input_not_weight():
    torch.manual_seed(7106)
    mod = Int6Linear.from_linear(nn.Linear(32, 16).to(torch.bfloat16))
    assert list(mod.parameters()) == []
    x = torch.randn(3, 32, dtype=torch.bfloat16, requires_grad=True)
    mod(x).float().sum().backward()
    w = mod.codes().float() * mod.scales.float()[:, None]
    torch.testing.assert_close(x.grad.float(), w.sum(0).expand(3, -1), rtol=1e-2, atol=1e-2)


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="in_features: expected an int >= 1"):
        Int6Linear(0, 4)
    with pytest.raises(TypeError, match="dtype: expected torch.bfloat16 or torch.float16"):
        Int6Linear(4, 4, dtype=torch.float32)
    with pytest.raises(TypeError, match="linear: expected a torch.nn.Linear"):
        Int6Linear.from_linear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="codes: int6 codes must lie in"):
        Int6Linear.from_quantized(torch.full((2, 4), 40, dtype=torch.int8), torch.ones(2))
    with pytest.raises(ValueError, match=r"scales: expected a float tensor of shape \(2,\)"):
        Int6Linear.from_quantized(torch.zeros((2, 4), dtype=torch.int8), torch.ones(3))
