"""Int6Bank / bank_linear / lora_linear: the math in float64, gradients to the LoRA factors,
the fused one-document path, the Triton kernel on a bank slice in the interpreter, bad inputs."""

import pytest
import torch

from golf_fast.nn import Int6Bank, Int6Matrix, bank_linear, lora_linear
from golf_fast.ops.int6_matmul import within_output_rounding

N, K = 24, 40


def _bank(seed, b=3, n=N, k=K, lowrank_rank=0):
    g = torch.Generator().manual_seed(seed)
    codes = [torch.randint(-31, 32, (n, k), generator=g, dtype=torch.int8) for _ in range(b)]
    scales = [torch.rand(n, generator=g) * 0.05 + 0.01 for _ in range(b)]
    lr = [(torch.randn(n, lowrank_rank, generator=g) * 0.1, torch.randn(lowrank_rank, k, generator=g) * 0.1)
          for _ in range(b)] if lowrank_rank else None
    return Int6Bank.from_quantized(codes, scales, lr), codes, scales, lr


def _dense64(codes, scales, lr=None):
    w = codes.double() * scales.to(torch.float16).double()[:, None]
    if lr is not None:
        w = w + lr[0].to(torch.bfloat16).double() @ lr[1].to(torch.bfloat16).double()
    return w


def test_bank_slices_are_the_matrices():
    bank, codes, scales, lr = _bank(1801, lowrank_rank=2)
    assert len(bank) == 3 and bank.packed.shape == (3, N, 36)  # K = 40 → 48 padded → 36 bytes
    for i in range(3):
        m = bank[i]
        assert isinstance(m, Int6Matrix) and m.shape == (N, K)
        torch.testing.assert_close(m.dequantize(torch.float64), _dense64(codes[i], scales[i], lr[i]),
                                   rtol=1e-6, atol=1e-7)
    assert bank.dequantize().shape == (3, N, K)
    with pytest.raises(IndexError, match="i"):
        bank[3]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bank_linear_int6_is_the_fp32_product_rounded_once(dtype):
    bank, codes, scales, lr = _bank(1802, lowrank_rank=3)
    x = torch.randn(2, 5, K, generator=torch.Generator().manual_seed(2)).to(dtype)
    y = bank_linear(x, bank[1])
    exact = (x.double() @ _dense64(codes[1], scales[1], lr[1]).T).to(dtype)
    assert y.dtype == dtype and y.shape == (2, 5, N)
    assert within_output_rounding(y, exact) is None
    # a dense slice takes F.linear, bit for bit what the model did before
    w = torch.randn(N, K)
    torch.testing.assert_close(bank_linear(x, w), torch.nn.functional.linear(x, w.to(dtype)), rtol=0, atol=0)


def test_bank_linear_fp32_activations():
    bank, codes, scales, _ = _bank(1803)
    x = torch.randn(7, K, generator=torch.Generator().manual_seed(3))
    y = bank_linear(x, bank[0])  # no autocast: the fp32 reference
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), x.double() @ _dense64(codes[0], scales[0]).T, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bank_linear(x, bank[0]).dtype == torch.bfloat16


@pytest.mark.parametrize("nb", [1, 3])
def test_lora_linear_value_and_gradients_match_float64(nb):
    """y[b] = x[b]·Wᵀ + s·(x[b]·A[b]ᵀ)·B[b]ᵀ; gradients to A and B from the fused int6 op (nb = 1)
    or the batched matmuls (nb = 3) equal the float64 ones within bf16-input rounding."""
    bank, codes, scales, lr = _bank(1804 + nb, lowrank_rank=2)
    g = torch.Generator().manual_seed(5 + nb)
    x = torch.randn(nb, 6, K, generator=g).to(torch.bfloat16)
    a = (torch.randn(nb, 4, K, generator=g) * 0.3).requires_grad_()
    b = (torch.randn(nb, N, 4, generator=g) * 0.3).requires_grad_()
    s = 0.75
    y = lora_linear(x, bank[2], a, b, s)
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    base64 = x.double() @ _dense64(codes[2], scales[2], lr[2]).T
    y64 = base64 + s * (x.double() @ a64.transpose(1, 2)) @ b64.transpose(1, 2)
    if nb == 1:  # fused: one fp32 sum rounded once
        assert within_output_rounding(y.detach(), y64.detach().to(y.dtype)) is None
    else:  # the base rounded to bf16, then base + adapter rounded again: half an ulp of each
        eps = torch.finfo(torch.bfloat16).eps
        err = (y.detach().double() - y64.detach()).abs()
        assert bool((err <= eps * (base64.abs() + y64.detach().abs()) + 1e-6).all())
    gy = torch.randn(y.shape, generator=g)
    (y.float() * gy).sum().backward()
    (y64 * gy.double()).sum().backward()
    for got, want in ((a.grad, a64.grad), (b.grad, b64.grad)):
        err = (got.double() - want).norm() / want.norm()
        assert err < 2e-2, float(err)  # bf16 y and x·Aᵀ; a dropped factor s or a transposed B is > 0.2
    # the adapters are per row: row 0's gradient does not depend on row 1's data
    if nb > 1:
        assert a.grad[1].abs().sum() > 0 and not torch.equal(a.grad[0], a.grad[1])


def test_lora_linear_one_row_is_one_fused_int6_call(monkeypatch):
    """nb = 1 on an int6 base: the adapter goes into int6_linear's low-rank term (one call, no bmm)."""
    import golf_fast.nn.int6_bank as ib
    bank, *_ = _bank(1806)
    calls = []
    real = ib.int6_linear
    monkeypatch.setattr(ib, "int6_linear", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    monkeypatch.setattr(torch, "bmm", lambda *a: pytest.fail("bmm used on the fused path"))
    x = torch.randn(1, 3, K).to(torch.bfloat16)
    lora_linear(x, bank[0], torch.randn(1, 2, K), torch.randn(1, N, 2), 0.5)
    assert len(calls) == 1 and calls[0][0].shape == (N, 2) and calls[0][1].shape == (2, K)


@pytest.mark.interpreter
def test_bank_slice_through_the_triton_kernel_in_interpreter(triton_interpret):
    """A slice at a non-zero offset of the bank, with its LQER term plus an extra low-rank term,
    goes through the Triton GEMV (interpreted): the fp32 product rounded once to bf16."""
    bank, codes, scales, lr = _bank(1807, b=3, n=33, k=70, lowrank_rank=2)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 70, generator=g).to(torch.bfloat16)
    extra = (torch.randn(33, 1, generator=g) * 0.1, torch.randn(1, 70, generator=g) * 0.1)
    y = bank_linear(x, bank[2], extra)
    w = _dense64(codes[2], scales[2], lr[2]) + extra[0].double() @ extra[1].double()
    assert within_output_rounding(y, (x.double() @ w.T).to(torch.bfloat16)) is None


def test_bad_inputs_name_the_argument():
    bank, *_ = _bank(1808)
    x = torch.randn(1, 2, K).to(torch.bfloat16)
    with pytest.raises(ValueError, match="x"):
        bank_linear(torch.randn(2, K + 1).to(torch.bfloat16), bank[0])
    with pytest.raises(TypeError, match="w"):
        bank_linear(x, "weights")
    with pytest.raises(ValueError, match="lowrank"):
        bank_linear(x, bank[0], (torch.randn(N, 2), torch.randn(3, K)))
    with pytest.raises(ValueError, match="lora_a"):
        lora_linear(x, bank[0], torch.randn(2, 2, K), torch.randn(1, N, 2), 1.0)
    with pytest.raises(ValueError, match="lora_b"):
        lora_linear(x, bank[0], torch.randn(1, 2, K), torch.randn(1, N, 3), 1.0)
    with pytest.raises(TypeError, match="scale"):
        lora_linear(x, bank[0], torch.randn(1, 2, K), torch.randn(1, N, 2), "1")
    with pytest.raises(TypeError, match="w: expected"):
        lora_linear(x, "weights", torch.randn(1, 2, K), torch.randn(1, N, 2), 1.0)
    with pytest.raises(ValueError, match=r"codes\[1\]"):
        Int6Bank.from_quantized([torch.zeros(N, K, dtype=torch.int8), torch.zeros(N, K + 1, dtype=torch.int8)],
                                [torch.ones(N), torch.ones(N)])
    with pytest.raises(ValueError, match="scales"):
        Int6Bank.from_quantized([torch.zeros(N, K, dtype=torch.int8)], [torch.ones(N), torch.ones(N)])
    with pytest.raises(ValueError, match="num_matrices"):
        Int6Bank(0, N, K)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("nb", [1, 3])
def test_gpu_lora_linear_gradients(nb):
    """On the device (the fused int6 kernel and its backward): value and LoRA gradients vs float64."""
    bank, codes, scales, lr = _bank(1809 + nb, n=512, k=512, b=2, lowrank_rank=2)
    bank = bank.to("cuda")
    g = torch.Generator(device="cuda").manual_seed(9)
    x = torch.randn(nb, 64, 512, device="cuda", generator=g).to(torch.bfloat16)
    a = (torch.randn(nb, 8, 512, device="cuda", generator=g) * 0.05).requires_grad_()
    b = (torch.randn(nb, 512, 8, device="cuda", generator=g) * 0.05).requires_grad_()
    y = lora_linear(x, bank[1], a, b, 2.0)
    w64 = _dense64(codes[1], scales[1], lr[1]).cuda()
    a64, b64 = a.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    y64 = x.double() @ w64.T + 2.0 * (x.double() @ a64.transpose(1, 2)) @ b64.transpose(1, 2)
    gy = torch.randn(y.shape, device="cuda", generator=g)
    (y.float() * gy).sum().backward()
    (y64 * gy.double()).sum().backward()
    assert float((y.double() - y64).norm() / y64.norm()) < 1e-2
    for got, want in ((a.grad, a64.grad), (b.grad, b64.grad)):
        assert float((got.double() - want).norm() / want.norm()) < 2e-2
