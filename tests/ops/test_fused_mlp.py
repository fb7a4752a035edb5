"""leaky_relu_square_mlp: reference vs float64, the fused GEMM kernel in the interpreter (forward
and backward epilogues), sm_90 compiles (zero spills, HGMMA), gradients, bad inputs, opcheck,
torch.compile, the GPU tier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.ops import dispatch
from golf_fast.ops import fused_mlp as fm
from golf_fast.ops import fused_mlp_kernels as fmk
from golf_fast.ops.dispatch import KernelSelfCheckError

from conftest import requires_cuda

SLOPE = 0.5


def make(m: int, k: int, h: int, ko: int, dtype=torch.bfloat16, device="cpu"):
    x = torch.randn(m, k, device=device).to(dtype)
    w_up = (torch.randn(h, k, device=device) * k ** -0.5).to(dtype)
    w_down = (torch.randn(ko, h, device=device) * h ** -0.5).to(dtype)
    return x, w_up, w_down


def assert_rounded_from(out: torch.Tensor, exact: torch.Tensor, ulps: float = 1.0, floor: float = 1e-3) -> None:
    """``out`` is the exact value rounded to its dtype, up to fp32 summation slack and, for
    values computed from rounded intermediates, ``ulps`` of its dtype."""
    eps = torch.finfo(out.dtype).eps
    tol = ulps * eps * exact.abs() + floor * eps * float(exact.abs().max())
    err = (out.double() - exact).abs()
    assert bool((err <= tol).all()), f"max excess {float((err - tol).max())}"


def assert_chain(out, pre, post, x, w_up, w_down, slope=SLOPE):
    """Each stage is its exact value (float64 from the previous stage's rounded output) rounded
    once: pre from x, post from pre, out from post."""
    assert_rounded_from(pre, x.double() @ w_up.double().T)
    assert_rounded_from(post, F.leaky_relu(pre.double(), slope).square(), ulps=1.0 if slope == 0.5 else 2.0)
    assert_rounded_from(out, post.double() @ w_down.double().T)


SHAPES = [(1, 40, 72, 24), (37, 133, 137, 45), (130, 64, 256, 64)]  # M=1, tails in M, K, H, exact tiles


# --------------------------------------------------------------------------- reference tier


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,k,h,ko", SHAPES)
def test_reference_matches_float64(dtype, m, k, h, ko):
    torch.manual_seed(1821)
    x, w_up, w_down = make(m, k, h, ko, dtype)
    out, pre, post = fm.mlp_op_ref(x, w_up, w_down, SLOPE, True)
    assert_chain(out, pre, post, x, w_up, w_down)
    assert torch.equal(golf_fast.leaky_relu_square_mlp_ref(x, w_up, w_down, SLOPE), out)


def test_public_function_shapes_and_cpu_backend():
    torch.manual_seed(1822)
    x, w_up, w_down = make(6, 16, 40, 16)
    x3 = x.view(2, 3, 16)
    out = golf_fast.leaky_relu_square_mlp(x3, w_up, w_down)
    assert out.shape == (2, 3, 16) and out.dtype == torch.bfloat16
    assert torch.equal(out, golf_fast.leaky_relu_square_mlp_ref(x3, w_up, w_down))
    assert golf_fast.leaky_relu_square_mlp(x3[:0], w_up, w_down).shape == (0, 3, 16)


def test_pre_is_kept_only_when_a_gradient_is_needed(monkeypatch):
    seen = []
    real = fm.MLP_OP

    class Spy:
        def __call__(self, *args, **kw):
            seen.append(args[4])
            return real(*args, **kw)

    monkeypatch.setattr(fm, "MLP_OP", Spy())
    torch.manual_seed(1823)
    x, w_up, w_down = make(4, 8, 16, 8)
    fm.leaky_relu_square_mlp(x, w_up, w_down)
    fm.leaky_relu_square_mlp(x.requires_grad_(True), w_up, w_down)
    with torch.no_grad():
        fm.leaky_relu_square_mlp(x, w_up, w_down)
    assert seen == [False, True, False]


def _grads64(x, w_up, w_down, g, slope=SLOPE):
    x64, u64, d64 = (t.detach().double().requires_grad_(True) for t in (x, w_up, w_down))
    out = F.linear(F.leaky_relu(F.linear(x64, u64), slope).square(), d64)
    return torch.autograd.grad(out, (x64, u64, d64), g.double())


def _assert_grads(got, want, rel=3e-2):
    """bf16 gradients from bf16 intermediates: a few bf16 ulps of each tensor's scale."""
    for name, a, b in zip(("x", "w_up", "w_down"), got, want):
        err = float((a.double() - b).abs().max())
        assert err <= rel * float(b.abs().max()), f"d/d{name}: max error {err:.3g} vs scale {float(b.abs().max()):.3g}"


@pytest.mark.parametrize("slope", [0.5, 0.1])
def test_gradients_match_float64(slope):
    """Autograd through golf_fast::leaky_relu_square_mlp and its dpre op, against float64; the
    tolerance rejects a backward that uses relu² (no slope) or forgets the factor 2."""
    torch.manual_seed(1824)
    x, w_up, w_down = make(9, 24, 48, 24)
    x, w_up, w_down = (t.requires_grad_(True) for t in (x, w_up, w_down))
    out = golf_fast.leaky_relu_square_mlp(x, w_up, w_down, slope)
    g = torch.randn_like(out)
    out.backward(g)
    want = _grads64(x, w_up, w_down, g, slope)
    _assert_grads((x.grad, w_up.grad, w_down.grad), want)
    with pytest.raises(AssertionError):
        _assert_grads((x.grad / 2, w_up.grad / 2, w_down.grad), want)
    if slope == 0.5:  # (with s = 0.1 the negative side is 2s² = 2% of the positive one: within 3%)
        with pytest.raises(AssertionError):
            _assert_grads(_grads64(x, w_up, w_down, g, 0.0), want)


def test_dpre_reference_is_one_rounding_of_the_exact_derivative():
    torch.manual_seed(1825)
    x, w_up, w_down = make(11, 20, 33, 17)
    pre = F.linear(x, w_up)
    g = torch.randn(11, 17).to(torch.bfloat16)
    a = F.leaky_relu(pre.double(), SLOPE)
    exact = (g.double() @ w_down.double()) * 2 * a * torch.where(pre > 0, 1.0, SLOPE).double()
    assert_rounded_from(fm.mlp_dpre_ref(g, w_down, pre, SLOPE), exact)


def test_opcheck():
    torch.manual_seed(1826)
    x, w_up, w_down = make(5, 16, 24, 8, torch.float16)
    torch.library.opcheck(fm.MLP_OP.torch_op, (x.requires_grad_(True), w_up, w_down, SLOPE, True))
    torch.library.opcheck(fm.MLP_OP.torch_op, (x.detach(), w_up, w_down, SLOPE, False))
    pre = F.linear(x.detach(), w_up)
    torch.library.opcheck(fm.DPRE_OP.torch_op, (torch.randn(5, 8, dtype=torch.float16), w_down, pre, SLOPE))


def test_torch_compile_fullgraph():
    """Compiled output and gradients against float64 (not against the eager op)."""
    torch.manual_seed(1827)
    x, w_up, w_down = make(6, 32, 64, 32)
    xx, uu, dd = (t.clone().requires_grad_(True) for t in (x, w_up, w_down))
    torch._dynamo.reset()
    f = torch.compile(lambda a, b, c: golf_fast.leaky_relu_square_mlp(a, b, c, SLOPE), fullgraph=True,
                      backend="aot_eager")
    out = f(xx, uu, dd)
    _, pre, post = fm.mlp_op_ref(x, w_up, w_down, SLOPE, True)
    assert_chain(out.detach(), pre, post, x, w_up, w_down)
    g = torch.randn_like(out)
    out.backward(g)
    _assert_grads((xx.grad, uu.grad, dd.grad), _grads64(x, w_up, w_down, g))


def test_bad_inputs_name_the_argument():
    torch.manual_seed(1828)
    x, w_up, w_down = make(3, 8, 16, 8)
    with pytest.raises(TypeError, match="x: expected dtype torch.bfloat16 or torch.float16"):
        golf_fast.leaky_relu_square_mlp(x.float(), w_up, w_down)
    with pytest.raises(ValueError, match=r"w_up: expected shape \(H, 8\)"):
        golf_fast.leaky_relu_square_mlp(x, w_up[:, :5], w_down)
    with pytest.raises(ValueError, match=r"w_down: expected shape \(K_out, 16\)"):
        golf_fast.leaky_relu_square_mlp(x, w_up, w_down[:, :3])
    with pytest.raises(TypeError, match="w_down: expected dtype torch.bfloat16"):
        golf_fast.leaky_relu_square_mlp(x, w_up, w_down.float())
    with pytest.raises(ValueError, match="slope: expected a number in"):
        golf_fast.leaky_relu_square_mlp(x, w_up, w_down, 1.5)
    with pytest.raises(ValueError, match="w_up: expected a tensor on meta"):
        golf_fast.leaky_relu_square_mlp(x.to("meta"), w_up, w_down.to("meta"))
    with pytest.raises(TypeError, match="w_down: expected a torch.Tensor"):
        golf_fast.leaky_relu_square_mlp(x, w_up, None)


# --------------------------------------------------------------------------- interpreter tier


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,k,h,ko", SHAPES)
def test_kernels_in_interpreter(triton_interpret, dtype, m, k, h, ko):
    """The forward epilogue (pre, post) and the backward epilogue (dpre) against float64, and
    against the eager reference to output rounding."""
    torch.manual_seed(1830)
    x, w_up, w_down = make(m, k, h, ko, dtype)
    out, pre, post = fm.mlp_op_triton(x, w_up, w_down, SLOPE, True)
    assert_chain(out, pre, post, x, w_up, w_down)
    assert fm.compare_mlp((out, pre, post), fm.mlp_op_ref(x, w_up, w_down, SLOPE, True)) is None
    g = torch.randn(m, ko).to(dtype)
    dpre = fm.mlp_dpre_triton(g, w_down, pre, SLOPE)
    a = F.leaky_relu(pre.double(), SLOPE)
    exact = (g.double() @ w_down.double()) * 2 * a * torch.where(pre > 0, 1.0, SLOPE).double()
    assert_rounded_from(dpre, exact)
    no_pre, post2 = fm.mlp_up_triton(x, w_up, False, SLOPE)
    assert no_pre.shape == (0, h) and torch.equal(post2, post)


@pytest.mark.interpreter
def test_public_function_dispatches_to_triton_in_interpreter(triton_interpret, monkeypatch):
    """Forward and backward of golf_fast.leaky_relu_square_mlp launch the fused kernel
    (interpreted): FORWARD in the forward, the dpre epilogue in the backward."""
    torch.manual_seed(1831)
    launches = []
    kernel = fm._mlp_act_matmul_kernel

    class Recorded:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                launches.append(kw["FORWARD"])
                return kernel[grid](*args, **kw)
            return launch

    monkeypatch.setattr(fm, "_mlp_act_matmul_kernel", Recorded())
    monkeypatch.setattr(fm.MLP_OP, "selfcheck", lambda *a: None)  # count only the call's own launches
    monkeypatch.setattr(fm.DPRE_OP, "selfcheck", lambda *a: None)
    x, w_up, w_down = make(5, 24, 40, 24)
    x, w_up, w_down = (t.requires_grad_(True) for t in (x, w_up, w_down))
    out = golf_fast.leaky_relu_square_mlp(x, w_up, w_down, SLOPE, backend="triton")
    g = torch.randn_like(out)
    out.backward(g)
    assert launches == [True, False]
    _assert_grads((x.grad, w_up.grad, w_down.grad), _grads64(x, w_up, w_down, g))


@pytest.mark.interpreter
def test_selfcheck_passes_and_catches_a_wrong_kernel(triton_interpret, monkeypatch):
    torch.manual_seed(1832)
    dev = torch.device("cpu")
    for op in (fm.MLP_OP, fm.DPRE_OP):
        args = op.selfcheck_inputs(dev, torch.bfloat16)
        assert op.compare(op.resolve("cpu", "triton").fn(*args), op.reference(*args)) is None
    args = fm.DPRE_OP.selfcheck_inputs(dev, torch.bfloat16)
    wrong = fm.mlp_dpre_ref(args[0], args[1], args[2], 0.0)  # relu² derivative: slope dropped
    assert fm.DPRE_OP.compare(wrong, fm.DPRE_OP.reference(*args)) is not None
    monkeypatch.setattr(dispatch._registry, "checked", set())  # earlier calls may have checked "triton"
    monkeypatch.setattr(fm.DPRE_OP, "_backends", [])
    fm.DPRE_OP._resolved.clear()
    fm.DPRE_OP.add_backend("triton", "cpu", lambda g, w, p, s: fm.mlp_dpre_triton(g, w, p, 0.0), selfcheck=True)
    try:
        with pytest.raises(KernelSelfCheckError, match="disagrees with its reference"):
            fm.DPRE_OP.selfcheck(fm.DPRE_OP.resolve("cpu", "triton"), dev, torch.bfloat16)
    finally:
        fm.DPRE_OP._resolved.clear()


# --------------------------------------------------------------------------- sm_90 compile tier


@pytest.mark.sm90
@pytest.mark.parametrize("cfg", list(fmk.SHIPPED_CONFIGS), ids=lambda c: c.name)
def test_sm90_compile(sm90_report, cfg):
    rep = sm90_report(cfg)
    assert rep.ok, rep.error
    assert rep.local_bytes == 0, f"{cfg.name} spills {rep.local_bytes} bytes of local memory"
    assert rep.shared_bytes <= 227 * 1024
    assert cfg.uses_matmul and rep.hgmma > 0, f"{cfg.name}: expected wgmma (HGMMA) on sm_90"


# --------------------------------------------------------------------------- GPU tier


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("m", [1, 4099])
def test_gpu_kernel_matches_float64(m):
    torch.manual_seed(1835)
    x, w_up, w_down = make(m, 512, 2048, 512, device="cuda")
    x, w_up, w_down = (t.requires_grad_(True) for t in (x, w_up, w_down))
    out = golf_fast.leaky_relu_square_mlp(x, w_up, w_down, SLOPE)
    with torch.no_grad():
        o2, pre, post = fm.mlp_op_triton(x, w_up, w_down, SLOPE, True)
    assert torch.equal(o2, out.detach())
    assert_chain(*(t.detach().cpu() for t in (out, pre, post, x, w_up, w_down)))
    g = torch.randn_like(out)
    out.backward(g)
    _assert_grads(tuple(t.grad.cpu() for t in (x, w_up, w_down)),
                  _grads64(x.cpu(), w_up.cpu(), w_down.cpu(), g.cpu()))
