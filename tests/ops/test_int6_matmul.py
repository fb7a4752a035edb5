"""int6_linear / dequantize_int6: reference vs float64, Triton kernels in the interpreter, sm_90
compiles (zero spills, HGMMA for the large-M tiles), bad inputs, opcheck, torch.compile, autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.ops import int6_matmul as im
from golf_fast.ops import int6_matmul_kernels as imk
from golf_fast.ops.dispatch import KernelSelfCheckError
from golf_fast.ops.int6_pack import pack_int6_ref, packed_row_bytes

from conftest import requires_cuda


def make(n: int, k: int, *, device="cpu"):
    codes = torch.randint(-31, 32, (n, k), dtype=torch.int8, device=device)
    scales = (torch.rand(n, device=device) * 0.05 + 0.002).to(torch.float16)
    return codes, pack_int6_ref(codes), scales


def exact64(x, codes, scales, bias=None, lowrank=None):
    """The math in float64: x·(code·s)ᵀ + bias + x·Bᵀ·Aᵀ."""
    w = codes.double() * scales.double()[:, None]
    out = x.double().reshape(-1, x.shape[-1]) @ w.T
    if bias is not None:
        out = out + bias.double()
    if lowrank is not None:
        out = out + (x.double().reshape(-1, x.shape[-1]) @ lowrank[1].double().T) @ lowrank[0].double().T
    return out.reshape(*x.shape[:-1], codes.shape[0])


def assert_rounded_from(out: torch.Tensor, exact: torch.Tensor) -> None:
    """``out`` is the exact value up to output rounding (half an ulp, plus fp32 summation slack)."""
    eps = torch.finfo(out.dtype).eps
    err = (out.double() - exact).abs()
    tol = eps * exact.abs() + 1e-5 * exact.abs().max()
    assert bool((err <= tol).all()), f"max excess {float((err - tol).max())}"


# --------------------------------------------------------------------------- reference tier


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k", [(1, 7, 33), (6, 19, 80), (40, 64, 512)])
def test_reference_matches_float64(dtype, m, n, k):
    torch.manual_seed(1101)
    codes, packed, scales = make(n, k)
    x = torch.randn(m, k).to(dtype)
    bias = torch.randn(n).to(dtype)
    lowrank = (torch.randn(n, 3) * 0.1, torch.randn(3, k) * 0.1)
    out = im.int6_linear_ref(x, packed, scales, bias, *lowrank)
    assert out.dtype == dtype and out.shape == (m, n)
    assert_rounded_from(out, exact64(x, codes, scales, bias, lowrank))
    # and it is F.linear on the dequantized weight, in fp32
    w = codes.float() * scales.float()[:, None]
    torch.testing.assert_close(im.int6_linear_ref(x, packed, scales, None, None, None),
                               F.linear(x.float(), w).to(dtype), rtol=0, atol=0)


def test_dequantize_reference_is_code_times_scale():
    torch.manual_seed(1102)
    codes, packed, scales = make(11, 45)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        out = golf_fast.dequantize_int6(packed, scales, 45, dtype)
        assert out.dtype == dtype
        torch.testing.assert_close(out, (codes.float() * scales.float()[:, None]).to(dtype), rtol=0, atol=0)


def test_public_function_batched_shapes_and_cpu_backend():
    torch.manual_seed(1103)
    codes, packed, scales = make(9, 40)
    x = torch.randn(2, 3, 40, dtype=torch.bfloat16)
    out = golf_fast.int6_linear(x, packed, scales)
    assert out.shape == (2, 3, 9)
    assert_rounded_from(out, exact64(x, codes, scales))
    assert golf_fast.int6_linear(x[:0], packed, scales).shape == (0, 3, 9)


def test_select_config_regimes():
    assert im.select_config(1, 8192, 4096)[0] is imk.GEMV_M16
    assert im.select_config(64, 512, 512)[0] is imk.GEMV_M64
    assert im.select_config(65, 512, 512)[0].kernel == "gemm"
    assert im.select_config(16384, 8192, 4096)[0] is imk.GEMM_LARGE
    assert im.select_config(16384, 512, 512)[0] is imk.GEMM_LARGE
    assert im.select_config(2048, 512, 512)[0] is imk.GEMM_MID  # 8 × 4 large tiles would leave SMs idle
    # a long-K narrow shape splits K
    assert im.select_config(1, 128, 8192)[1] > 1


# (N, K) of the record's matrices at M <= 16: (tile, splits, programs launched on 132 SMs)
RECORD_SMALL_M = {(512, 512): (imk.GEMV_M16, 1, 16), (512, 2048): (imk.GEMV_M16_K64, 11, 176),
                  (2048, 512): (imk.GEMV_M16, 1, 64), (8192, 512): (imk.GEMV_M16, 1, 256),
                  (256, 512): (imk.GEMV_M16, 1, 8)}


@pytest.mark.parametrize("m", [1, 8, 16])
@pytest.mark.parametrize("nk", sorted(RECORD_SMALL_M), ids=lambda nk: f"{nk[0]}x{nk[1]}")
def test_small_m_record_shapes_split_k_when_it_removes_load_rounds(m, nk):
    """At M <= 16: K is split (one program per SM or more, each split at least one K block) when a
    program would need more than one round of its load pipeline (> num_stages K blocks); a K that
    is one round (the record's K = 512) is not split, the fix-up would only add latency."""
    n, k = nk
    tile, split, programs = RECORD_SMALL_M[nk]
    got_tile, got_split = im.select_config(m, n, k, 132)
    assert (got_tile, got_split) == (tile, split)
    grid, k_per_split = im.gemv_grid(m, n, k, tile, split)
    assert grid[1] == split and k_per_split % tile.block_k == 0 and (split - 1) * k_per_split < k
    launched = grid[0] * grid[1] * grid[2]
    assert launched == programs
    one_round = -(-k // imk.GEMV_M16.block_k) <= imk.GEMV_M16.num_stages
    assert (split == 1) == (one_round or grid[0] >= 132)
    assert split == 1 or launched >= 132
    assert -(-k_per_split // tile.block_k) <= tile.num_stages  # each split is one round of loads


# --------------------------------------------------------------------------- gradients, compile, opcheck


def test_gradients_match_float64():
    """Every gradient against float64 autograd; the tolerances reject a backward that drops the
    low-rank term of d/dx (checked below on the same draw)."""
    torch.manual_seed(1101)
    codes, packed, scales = make(13, 37)
    x = torch.randn(4, 37, dtype=torch.float32).to(torch.bfloat16).requires_grad_(True)
    bias = torch.randn(13, dtype=torch.bfloat16, requires_grad=True)
    a = (torch.randn(13, 2) * 0.5).requires_grad_(True)
    b = (torch.randn(2, 37) * 0.5).requires_grad_(True)
    out = golf_fast.int6_linear(x, packed, scales, bias, (a, b))
    g = torch.randn_like(out)
    out.backward(g)
    x64, a64, b64 = (t.detach().double().requires_grad_(True) for t in (x, a, b))
    bias64 = bias.detach().double().requires_grad_(True)
    ref = exact64(x64, codes, scales, bias64, (a64, b64))
    ref.backward(g.double())
    # d/dx is rounded to bf16 (2^-8 relative) from a bf16 product: 1% of the element or of the max
    x_tol = dict(rtol=1e-2, atol=1e-2 * float(x64.grad.abs().max()))
    torch.testing.assert_close(x.grad.double(), x64.grad, **x_tol)
    torch.testing.assert_close(bias.grad.double(), bias64.grad, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(b.grad.double(), b64.grad, rtol=1e-3, atol=1e-3)
    # the plausible wrong answer, d/dx without the low-rank term g·A·B, is outside that tolerance
    w64 = codes.double() * scales.double()[:, None]
    without_lowrank = g.double() @ w64
    with pytest.raises(AssertionError):
        torch.testing.assert_close(without_lowrank, x64.grad, **x_tol)


def test_opcheck():
    torch.manual_seed(1106)
    codes, packed, scales = make(10, 48)
    x = torch.randn(3, 48, dtype=torch.bfloat16, requires_grad=True)
    bias = torch.randn(10, dtype=torch.bfloat16)
    torch.library.opcheck(im.LINEAR_OP.torch_op, (x, packed, scales, bias, torch.randn(10, 2), torch.randn(2, 48)))
    torch.library.opcheck(im.LINEAR_OP.torch_op, (x.detach(), packed, scales, None, None, None))
    torch.library.opcheck(im.DEQUANT_OP.torch_op, (packed, scales, 48, torch.bfloat16))


def test_torch_compile_fullgraph():
    """The compiled graph's outputs against the float64 math (not against the eager op)."""
    torch.manual_seed(1102)
    codes, packed, scales = make(10, 48)
    x = torch.randn(2, 3, 48, dtype=torch.float16)
    bias = torch.randn(10, dtype=torch.float16)

    def f(x):
        return golf_fast.int6_linear(x, packed, scales, bias), golf_fast.dequantize_int6(
            packed, scales, 48, torch.float16)

    torch._dynamo.reset()
    out, w = torch.compile(f, fullgraph=True, backend="eager")(x)
    exact = exact64(x, codes, scales, bias)
    assert out.shape == (2, 3, 10) and out.dtype == torch.float16
    assert_rounded_from(out, exact)
    assert_rounded_from(w, codes.double() * scales.double()[:, None])
    with pytest.raises(AssertionError):  # the tolerance rejects a dropped bias
        assert_rounded_from(out, exact - bias.double())


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument():
    torch.manual_seed(1108)
    codes, packed, scales = make(8, 40)
    x = torch.randn(2, 40, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="packed: x.shape\\[-1\\] = 50 needs 48 bytes.*K does not match"):
        golf_fast.int6_linear(torch.randn(2, 50, dtype=torch.bfloat16), packed, scales)
    with pytest.raises(TypeError, match="x: expected dtype torch.bfloat16 or torch.float16"):
        golf_fast.int6_linear(x.float(), packed, scales)
    with pytest.raises(TypeError, match="packed: expected a 2-D torch.uint8"):
        golf_fast.int6_linear(x, codes, scales)
    with pytest.raises(ValueError, match="scales: expected shape \\(8,\\)"):
        golf_fast.int6_linear(x, packed, scales[:7])
    with pytest.raises(TypeError, match="scales: expected torch.float16"):
        golf_fast.int6_linear(x, packed, scales.float())
    with pytest.raises(ValueError, match="bias: expected shape \\(8,\\) and dtype torch.bfloat16"):
        golf_fast.int6_linear(x, packed, scales, torch.zeros(8))
    with pytest.raises(ValueError, match="lowrank: expected A \\(8, r\\) and B \\(r, 40\\)"):
        golf_fast.int6_linear(x, packed, scales, None, (torch.zeros(8, 2), torch.zeros(3, 40)))
    with pytest.raises(TypeError, match="lowrank: expected a pair"):
        golf_fast.int6_linear(x, packed, scales, None, torch.zeros(8, 2))
    with pytest.raises(ValueError, match="num_cols: expected an int >= 1"):
        golf_fast.dequantize_int6(packed, scales, 0)
    with pytest.raises(ValueError, match="packed: num_cols = 100 needs"):
        golf_fast.dequantize_int6(packed, scales, 100)
    with pytest.raises(TypeError, match="dtype: expected"):
        golf_fast.dequantize_int6(packed, scales, 40, torch.int8)


def test_k_within_padding_is_taken_from_x():
    # K = 33 and K = 40 share a packed row size (48 columns padded): x decides, padding codes are 0
    torch.manual_seed(1109)
    codes, packed, scales = make(5, 33)
    assert packed_row_bytes(33) == packed_row_bytes(40)
    x = torch.randn(3, 40, dtype=torch.float16)
    out = golf_fast.int6_linear(x, packed, scales)
    full = torch.cat([codes, torch.zeros(5, 7, dtype=torch.int8)], dim=1)
    assert_rounded_from(out, exact64(x, full, scales))


def test_device_mixture_is_a_clear_error():
    torch.manual_seed(1110)
    codes, packed, scales = make(8, 40)
    x = torch.randn(2, 40, dtype=torch.bfloat16, device="meta")
    with pytest.raises(ValueError, match="packed: expected a tensor on meta"):
        golf_fast.int6_linear(x, packed, scales)
    with pytest.raises(ValueError, match="scales: expected a tensor on meta"):
        golf_fast.int6_linear(x, packed.to("meta"), scales)


@requires_cuda
@pytest.mark.gpu
def test_cpu_gpu_mixture_is_a_clear_error():
    torch.manual_seed(1111)
    codes, packed, scales = make(8, 40)
    x = torch.randn(2, 40, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="packed: expected a tensor on cuda"):
        golf_fast.int6_linear(x, packed, scales)


# --------------------------------------------------------------------------- interpreter tier

SHAPES = [  # (M, N, K): M=1, odd N/K with tails, the small-M / split-K / GEMM regimes
    (1, 45, 83),
    (7, 33, 50),
    (17, 70, 129),
    (3, 20, 4200),
    (70, 37, 83),
]


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_kernel_in_interpreter(triton_interpret, dtype, m, n, k):
    torch.manual_seed(1112)
    codes, packed, scales = make(n, k)
    x = torch.randn(m, k).to(dtype)
    out = im.int6_linear_triton(x, packed, scales, None, None, None)
    assert out.dtype == dtype
    assert_rounded_from(out, exact64(x, codes, scales))
    assert im.within_output_rounding(out, im.int6_linear_ref(x, packed, scales, None, None, None)) is None


@pytest.mark.interpreter
@pytest.mark.parametrize("m,n,k", [(1, 45, 83), (3, 20, 4200), (70, 37, 83)])
def test_kernel_epilogue_in_interpreter(triton_interpret, m, n, k):
    torch.manual_seed(1113)
    codes, packed, scales = make(n, k)
    x = torch.randn(m, k).to(torch.bfloat16)
    bias = torch.randn(n).to(torch.bfloat16)
    lowrank = (torch.randn(n, 19) * 0.1, torch.randn(19, k) * 0.1)  # rank 19
    out = im.int6_linear_triton(x, packed, scales, bias, *lowrank)
    assert_rounded_from(out, exact64(x, codes, scales, bias, lowrank))
    only_bias = im.int6_linear_triton(x, packed, scales, bias, None, None)
    assert_rounded_from(only_bias, exact64(x, codes, scales, bias))


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_large_m_tile_in_interpreter(triton_interpret, monkeypatch, dtype):
    # select_config picks GEMM_LARGE when its tiles fill the SMs; pretend there is one SM
    torch.manual_seed(1114)
    monkeypatch.setattr(im, "_num_sms", lambda index: 1)
    m, n, k = 67, 131, 83
    assert im.select_config(m, n, k, 1)[0] is imk.GEMM_LARGE
    codes, packed, scales = make(n, k)
    x = torch.randn(m, k).to(dtype)
    bias = torch.randn(n).to(dtype)
    lowrank = (torch.randn(n, 5) * 0.1, torch.randn(5, k) * 0.1)
    assert_rounded_from(im.int6_linear_triton(x, packed, scales, bias, *lowrank),
                        exact64(x, codes, scales, bias, lowrank))


@pytest.mark.interpreter
def test_kernel_noncontiguous_input_in_interpreter(triton_interpret):
    torch.manual_seed(1115)
    codes, packed, scales = make(24, 64)
    x = torch.randn(64, 5, dtype=torch.float16).T  # (5, 64) with stride (1, 5)
    out = golf_fast.int6_linear(x, packed, scales, backend="triton")
    assert_rounded_from(out, exact64(x, codes, scales))


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_dequant_kernel_in_interpreter(triton_interpret, dtype):
    torch.manual_seed(1116)
    codes, packed, scales = make(37, 83)
    out = im.dequantize_int6_triton(packed, scales, 83, dtype)
    exact = codes.double() * scales.double()[:, None]
    assert_rounded_from(out, exact)
    if dtype != torch.bfloat16:  # the interpreter truncates fp32→bf16 (no round-to-nearest); GPUs round
        torch.testing.assert_close(out, im.dequantize_int6_ref(packed, scales, 83, dtype), rtol=0, atol=0)


class LaunchRecorder:
    """Wraps Triton kernels and records each launch by kernel name (the launch still runs)."""

    def __init__(self):
        self.launches: list[str] = []

    def wrap(self, kernel):
        recorder = self

        class Recorded:
            def __getitem__(self, grid):
                recorder.launches.append(kernel.__name__)
                return kernel[grid]

        return Recorded()


@pytest.mark.interpreter
def test_public_op_dispatches_to_triton_in_interpreter(triton_interpret, monkeypatch):
    """golf_fast.int6_linear(backend="triton") launches the GEMV kernel (interpreted) forward, and
    the backward launches the dequantization kernel; both results are checked against float64."""
    torch.manual_seed(1103)
    rec = LaunchRecorder()
    for name in ("_int6_gemv_kernel", "_int6_gemm_kernel", "_int6_dequant_kernel"):
        monkeypatch.setattr(im, name, rec.wrap(getattr(im, name)))
    monkeypatch.setattr(im.dispatch_config, "selfcheck", False)  # count only the call's own launches
    codes, packed, scales = make(16, 32)
    x = torch.randn(2, 32, dtype=torch.bfloat16, requires_grad=True)
    out = golf_fast.int6_linear(x, packed, scales, backend="triton")
    assert rec.launches == ["_int6_gemv_kernel"]
    assert_rounded_from(out.detach(), exact64(x.detach(), codes, scales))
    out.float().sum().backward()  # backward dequantizes with the (interpreted) dequant kernel
    assert rec.launches == ["_int6_gemv_kernel", "_int6_dequant_kernel"]
    expect = (codes.float() * scales.float()[:, None]).sum(0)
    torch.testing.assert_close(x.grad.float(), expect.expand(2, -1), rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------- sm_90 compile tier


def _sm90_configs():
    """Every shipped configuration (tests/tools/test_inspect.py compiles them too; the session
    cache of ``sm90_report`` compiles each once)."""
    return list(imk.SHIPPED_CONFIGS)


@pytest.mark.sm90
@pytest.mark.parametrize("cfg", _sm90_configs(), ids=lambda c: c.name)
def test_sm90_compile(sm90_report, cfg):
    rep = sm90_report(cfg)
    assert rep.ok, rep.error
    assert rep.local_bytes == 0, f"{cfg.name} spills {rep.local_bytes} bytes of local memory"
    assert rep.shared_bytes <= 227 * 1024
    if cfg.uses_matmul:
        assert rep.hgmma > 0, f"{cfg.name}: expected wgmma (HGMMA) on sm_90"


def test_large_m_tile_is_a_wgmma_tile():
    assert imk.GEMM_LARGE.allows_wgmma and imk.GEMM_MID.allows_wgmma
    assert imk.matmul_config(imk.GEMM_LARGE, torch.bfloat16).uses_matmul


@pytest.mark.interpreter
@pytest.mark.parametrize("tile,split", [(imk.GEMV_M16, 2), (imk.GEMV_M64, 1), (imk.GEMM_MID, 1), (imk.GEMM_LARGE, 1)],
                         ids=["gemv16-split2", "gemv64", "gemm-mid", "gemm-large"])
def test_per_tile_selfcheck_in_interpreter(triton_interpret, tile, split):
    torch.manual_seed(1120)
    im.selfcheck_tile(tile, split, torch.bfloat16, torch.device("cpu"))


@pytest.mark.interpreter
def test_per_tile_selfcheck_catches_a_wrong_kernel(triton_interpret, monkeypatch):
    torch.manual_seed(1121)
    real = im._launch
    monkeypatch.setattr(im, "_launch", lambda *a, **kw: real(*a, **kw) * 1.02)
    with pytest.raises(KernelSelfCheckError, match="disagrees with its reference"):
        im.selfcheck_tile(imk.GEMV_M16, 1, torch.float16, torch.device("cpu"), epilogue=False)


@pytest.mark.interpreter
@pytest.mark.parametrize("m,n,k", [(1, 45, 1000), (16, 33, 1100), (5, 64, 900), (40, 7, 700)])
def test_split_k_fixup_in_interpreter(triton_interpret, m, n, k):
    """The one-launch split-K (the last program of a tile sums the fp32 partials): odd shapes,
    bias and low-rank epilogue, counters left at zero, and a second launch reusing them agrees
    bit for bit (the partials are summed in split order whichever program finishes last)."""
    torch.manual_seed(1122)
    tile, split = im.select_config(m, n, k)
    assert split > 1
    codes, packed, scales = make(n, k)
    x = torch.randn(m, k).to(torch.bfloat16)
    bias = torch.randn(n).to(torch.bfloat16)
    lowrank = (torch.randn(n, 4) * 0.1, torch.randn(4, k) * 0.1)
    out = im.int6_linear_triton(x, packed, scales, bias, *lowrank)
    assert_rounded_from(out, exact64(x, codes, scales, bias, lowrank))
    assert int(im.split_counters(x.device).abs().sum()) == 0
    again = im.int6_linear_triton(x, packed, scales, bias, *lowrank)
    assert torch.equal(out, again)


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nk", sorted(RECORD_SMALL_M), ids=lambda nk: f"{nk[0]}x{nk[1]}")
def test_gpu_small_m_record_shapes(dtype, nk):
    """On the device, the record's shapes at M = 1, 8, 16 (512×2048 through the split-K fix-up, the
    others one program per tile): the fp32 product rounded once, deterministic, the counters left at
    zero, and a CUDA-graph replay."""
    torch.manual_seed(1123)
    n, k = nk
    codes, packed, scales = make(n, k, device="cuda")
    for m in (1, 8, 16):
        x = torch.randn(m, k, device="cuda").to(dtype)
        out = golf_fast.int6_linear(x, packed, scales)
        assert_rounded_from(out, exact64(x, codes, scales))
        assert torch.equal(out, golf_fast.int6_linear(x, packed, scales))
    assert int(im.split_counters(x.device).abs().sum()) == 0
    static = torch.randn(16, k, device="cuda").to(dtype)
    golf_fast.int6_linear(static, packed, scales)  # warm-up on this stream's counters
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        golf_fast.int6_linear(static, packed, scales)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        y = golf_fast.int6_linear(static, packed, scales)
    for _ in range(3):
        static.copy_(torch.randn_like(static))
        g.replay()
        torch.cuda.synchronize()
        assert_rounded_from(y, exact64(static, codes, scales))
