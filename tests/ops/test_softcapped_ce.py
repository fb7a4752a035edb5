"""softcapped_cross_entropy: reference vs float64, Triton kernels in the interpreter, sm_90
compiles (zero spills), gradients, bad inputs, opcheck, torch.compile, the GPU tier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.ops import dispatch
from golf_fast.ops import softcapped_ce as sc
from golf_fast.ops import softcapped_ce_kernels as sck
from golf_fast.ops.dispatch import KernelSelfCheckError

from conftest import requires_cuda

C = 30.0


def make(n: int, v: int, dtype=torch.bfloat16, scale: float = 20.0, device="cpu"):
    """Logits spread over the softcap's curved range (|z| up to ~3c) and random targets."""
    z = (torch.randn(n, v, device=device) * scale).to(dtype)
    return z, torch.randint(0, v, (n,), device=device)


def exact64(z: torch.Tensor, t: torch.Tensor, softcap: float = C):
    """(loss, lse, d loss_i / d z) in float64, by autograd of the plain math."""
    z64 = z.detach().double().requires_grad_(True)
    s = softcap * torch.tanh(z64 / softcap)
    lse = torch.logsumexp(s, dim=-1)
    loss = lse - s.gather(1, t[:, None])[:, 0]
    grad, = torch.autograd.grad(loss.sum(), z64)
    return loss.detach(), lse.detach(), grad


def assert_loss_close(out: torch.Tensor, exact: torch.Tensor, rel: float = 2e-6) -> None:
    """fp32 result of a V-term sum: a few fp32 ulps of the row's lse (|loss| ≤ lse + 2c)."""
    err = (out.double() - exact).abs()
    tol = rel * (exact.abs() + 2 * C)
    assert bool((err <= tol).all()), f"max excess {float((err - tol).max())}"


def assert_grad_rounded(out: torch.Tensor, exact: torch.Tensor) -> None:
    """The fp32 gradient rounded once to out's dtype (plus a small floor for near-zero entries)."""
    eps = torch.finfo(out.dtype).eps
    tol = eps * exact.abs() + 1e-6 + 1e-4 * eps * float(exact.abs().max())
    err = (out.double() - exact).abs()
    assert bool((err <= tol).all()), f"max excess {float((err - tol).max())}"


SHAPES = [(1, 45), (5, 2 * sck.BLOCK_V + 77), (3, 1000), (2, sck.BLOCK_V)]  # M=1, tails, V < block, exact block


# --------------------------------------------------------------------------- reference tier


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n,v", SHAPES)
def test_reference_matches_float64(dtype, n, v):
    torch.manual_seed(1801)
    z, t = make(n, v, dtype)
    loss, lse = sc.softcapped_ce_ref(z, t, C)
    e_loss, e_lse, e_grad = exact64(z, t)
    assert loss.dtype == torch.float32 and loss.shape == (n,)
    assert_loss_close(loss, e_loss)
    assert_loss_close(lse, e_lse)
    grad = sc.softcapped_ce_backward_ref(z, t, lse, torch.ones(n), None, C)
    assert grad.dtype == dtype
    assert_grad_rounded(grad, e_grad)


def test_public_reference_equals_eager_cross_entropy():
    torch.manual_seed(1802)
    z, t = make(2 * 3, 77)
    z3, t3 = z.view(2, 3, 77), t.view(2, 3)
    eager = F.cross_entropy(C * torch.tanh(z.float() / C), t, reduction="none")
    for red in ("mean", "sum", "none"):
        out = golf_fast.softcapped_cross_entropy(z3, t3, C, reduction=red)
        ref = golf_fast.softcapped_cross_entropy_ref(z3, t3, C, reduction=red)
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)  # mean/sum: summation order only
    assert torch.equal(golf_fast.softcapped_cross_entropy(z3, t3, C, "none"),
                       golf_fast.softcapped_cross_entropy_ref(z3, t3, C, "none"))
    assert golf_fast.softcapped_cross_entropy(z3, t3, C, "none").shape == (2, 3)
    torch.testing.assert_close(golf_fast.softcapped_cross_entropy(z3, t3, C, "none").flatten(), eager)
    torch.testing.assert_close(golf_fast.softcapped_cross_entropy(z3, t3, C), eager.mean())


def test_tolerances_reject_a_dropped_column_and_a_missing_softcap():
    """The checks above would catch the plausible wrong answers."""
    torch.manual_seed(1803)
    z, t = make(4, 300, torch.float32, scale=1.0)
    t = torch.where(t == 299, 0, t)
    z[:, -1] = 0.0  # an ordinary column (p ≈ 2e-3), not an outlier
    e_loss, e_lse, e_grad = exact64(z, t)
    no_last, _, _ = exact64(z[:, :-1].contiguous(), t)
    with pytest.raises(AssertionError):
        assert_loss_close(no_last.float(), e_loss)
    with pytest.raises(AssertionError):  # plain CE without the softcap
        assert_loss_close(F.cross_entropy(z.float(), t, reduction="none"), e_loss)
    g = sc.softcapped_ce_backward_ref(z, t, e_lse.float(), torch.ones(4), None, C)
    th = torch.tanh(z.double() / C)
    with pytest.raises(AssertionError):  # gradient without the tanh derivative
        assert_grad_rounded((g.double() / (1 - th * th)).float(), e_grad)


def test_gradient_through_public_function_matches_float64():
    torch.manual_seed(1804)
    z, t = make(6, 333)
    z.requires_grad_(True)
    loss = golf_fast.softcapped_cross_entropy(z, t, C, reduction="mean")
    loss.backward()
    e_loss, _, e_grad = exact64(z, t)
    assert_loss_close(loss.detach().view(1), e_loss.mean().view(1))
    assert_grad_rounded(z.grad, e_grad / 6)


def test_lse_gradient_is_supported():
    """The op's second output (lse) is differentiable too: ∂lse/∂z = softmax(s)·(1 − tanh²)."""
    torch.manual_seed(1805)
    z, t = make(3, 50, torch.float32, scale=5.0)
    z.requires_grad_(True)
    loss, lse = sc.CE_OP.torch_op(z, t, C)
    (loss.sum() + 0.5 * lse.sum()).backward()
    z64 = z.detach().double().requires_grad_(True)
    s = C * torch.tanh(z64 / C)
    lse64 = torch.logsumexp(s, -1)
    ((lse64 - s.gather(1, t[:, None])[:, 0]).sum() + 0.5 * lse64.sum()).backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-5, atol=1e-7)


def test_opcheck():
    torch.manual_seed(1806)
    z, t = make(4, 70, torch.float32)
    torch.library.opcheck(sc.CE_OP.torch_op, (z.requires_grad_(True), t, C))
    _, lse = sc.softcapped_ce_ref(z.detach(), t, C)
    torch.library.opcheck(sc.CE_BWD_OP.torch_op, (z.detach(), t, lse, torch.rand(4), None, C))


def test_torch_compile_fullgraph():
    """Compiled loss and gradient against float64 (not against the eager op)."""
    torch.manual_seed(1807)
    z, t = make(5, 90)

    def f(z, t):
        return golf_fast.softcapped_cross_entropy(z, t, C, reduction="sum")

    torch._dynamo.reset()
    zz = z.clone().requires_grad_(True)
    loss = torch.compile(f, fullgraph=True, backend="aot_eager")(zz, t)
    loss.backward()
    e_loss, _, e_grad = exact64(z, t)
    assert_loss_close(loss.detach().view(1), e_loss.sum().view(1), rel=1e-5)
    assert_grad_rounded(zz.grad, e_grad)


def test_bad_inputs_name_the_argument():
    torch.manual_seed(1808)
    z, t = make(3, 20)
    with pytest.raises(TypeError, match="logits: expected dtype"):
        golf_fast.softcapped_cross_entropy(z.double(), t)
    with pytest.raises(TypeError, match="targets: expected dtype torch.int64"):
        golf_fast.softcapped_cross_entropy(z, t.int())
    with pytest.raises(ValueError, match=r"targets: expected shape \(3,\)"):
        golf_fast.softcapped_cross_entropy(z, t[:2])
    with pytest.raises(ValueError, match="softcap: expected a number in"):
        golf_fast.softcapped_cross_entropy(z, t, softcap=0.0)
    with pytest.raises(ValueError, match="softcap: expected a number in"):
        golf_fast.softcapped_cross_entropy(z, t, softcap=50.0)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        golf_fast.softcapped_cross_entropy(z, t, reduction="avg")
    with pytest.raises(ValueError, match=r"targets: expected class indices in \[0, 20\)"):
        golf_fast.softcapped_cross_entropy(z, torch.tensor([0, 20, 1]))
    with pytest.raises(TypeError, match="logits: expected a torch.Tensor"):
        golf_fast.softcapped_cross_entropy([1.0], t)
    with pytest.raises(ValueError, match="targets: expected a tensor on meta"):
        golf_fast.softcapped_cross_entropy(z.to("meta"), t)


# --------------------------------------------------------------------------- interpreter tier


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("n,v", SHAPES)
def test_kernels_in_interpreter(triton_interpret, dtype, n, v):
    torch.manual_seed(1810)
    z, t = make(n, v, dtype)
    loss, lse = sc.softcapped_ce_fwd_triton(z, t, C)
    e_loss, e_lse, e_grad = exact64(z, t)
    assert_loss_close(loss, e_loss)
    assert_loss_close(lse, e_lse)
    g = torch.rand(n) + 0.5
    grad = sc.softcapped_ce_bwd_triton(z, t, lse, g, None, C)
    assert grad.dtype == dtype and grad.shape == (n, v)
    assert_grad_rounded(grad, e_grad * g.double()[:, None])
    assert sc.compare_grad(grad, sc.softcapped_ce_backward_ref(z, t, lse, g, None, C)) is None


@pytest.mark.interpreter
def test_kernel_extremes_and_strided_rows_in_interpreter(triton_interpret):
    """Saturated logits (|z| ≫ c: ∂s/∂z underflows gracefully, no NaN), a row-strided view,
    an expanded (stride-0) upstream gradient, a gradient for lse, and a bad target (NaN loss)."""
    torch.manual_seed(1811)
    big = torch.randn(4, 300) * 1e4
    big[0, :5] = torch.tensor([0.0, -0.0, 1e-30, -1e38, 3e38])
    t = torch.tensor([0, 7, 299, 150])
    wide = torch.zeros(4, 310)
    wide[:, :300] = big
    z = wide[:, :300]  # row stride 310
    loss, lse = sc.softcapped_ce_fwd_triton(z, t, C)
    e_loss, e_lse, e_grad = exact64(z, t)
    assert_loss_close(loss, e_loss)
    g = torch.full((1,), 0.25).expand(4)
    g_lse = torch.rand(4)
    grad = sc.softcapped_ce_bwd_triton(z, t, lse, g, g_lse, C)
    assert torch.isfinite(grad).all()
    ref = sc.softcapped_ce_backward_ref(z, t, lse, g, g_lse, C)
    assert sc.compare_grad(grad, ref) is None
    bad, _ = sc.softcapped_ce_fwd_triton(z, torch.tensor([0, -1, 300, 3]), C)
    assert bad.isnan().tolist() == [False, True, True, False]


@pytest.mark.interpreter
def test_public_function_dispatches_to_triton_in_interpreter(triton_interpret, monkeypatch):
    """Forward and backward of golf_fast.softcapped_cross_entropy run the interpreted kernels."""
    torch.manual_seed(1812)
    launches = []
    for name in ("_softcapped_ce_fwd_kernel", "_softcapped_ce_bwd_kernel"):
        kernel = getattr(sc, name)

        class Recorded:
            def __getitem__(self, grid, kernel=kernel, name=name):
                launches.append(name)
                return kernel[grid]

        monkeypatch.setattr(sc, name, Recorded())
    for op in (sc.CE_OP, sc.CE_BWD_OP):  # count only the call's own launches, not first-use self-checks
        monkeypatch.setattr(op, "selfcheck", lambda *a: None)
    z, t = make(3, 2100)
    z.requires_grad_(True)
    loss = golf_fast.softcapped_cross_entropy(z, t, C, backend="triton")
    loss.backward()
    assert launches == ["_softcapped_ce_fwd_kernel", "_softcapped_ce_bwd_kernel"]
    e_loss, _, e_grad = exact64(z, t)
    assert_loss_close(loss.detach().view(1), e_loss.mean().view(1))
    assert_grad_rounded(z.grad, e_grad / 3)


@pytest.mark.interpreter
def test_selfcheck_passes_and_catches_a_wrong_kernel(triton_interpret, monkeypatch):
    torch.manual_seed(1813)
    dev = torch.device("cpu")
    for op in (sc.CE_OP, sc.CE_BWD_OP):
        args = op.selfcheck_inputs(dev, torch.bfloat16)
        assert op.compare(op.resolve("cpu", "triton").fn(*args), op.reference(*args)) is None
    real = sc.softcapped_ce_fwd_triton
    monkeypatch.setattr(dispatch._registry, "checked", set())  # earlier calls may have checked "triton"
    monkeypatch.setattr(sc.CE_OP, "_backends", [])
    sc.CE_OP._resolved.clear()
    sc.CE_OP.add_backend("triton", "cpu", lambda z, t, c: tuple(o * 1.0001 for o in real(z, t, c)), selfcheck=True)
    try:
        with pytest.raises(KernelSelfCheckError, match="disagrees with its reference"):
            sc.CE_OP.selfcheck(sc.CE_OP.resolve("cpu", "triton"), dev, torch.bfloat16)
    finally:
        sc.CE_OP._resolved.clear()


# --------------------------------------------------------------------------- sm_90 compile tier


@pytest.mark.sm90
@pytest.mark.parametrize("cfg", list(sck.SHIPPED_CONFIGS), ids=lambda c: c.name)
def test_sm90_compile(sm90_report, cfg):
    rep = sm90_report(cfg)
    assert rep.ok, rep.error
    assert rep.local_bytes == 0, f"{cfg.name} spills {rep.local_bytes} bytes of local memory"


def test_every_launch_variant_is_shipped():
    names = {c.name for c in sck.SHIPPED_CONFIGS}
    for d in sck.LOGIT_DTYPES:
        assert sck.fwd_config(d).name in names
        assert sck.bwd_config(d, False).name in names and sck.bwd_config(d, True).name in names


# --------------------------------------------------------------------------- GPU tier


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("n,v", [(1, 8192), (513, 8192), (7, 5003)])
def test_gpu_kernels_match_float64(n, v):
    torch.manual_seed(1815)
    z, t = make(n, v, device="cuda")
    z.requires_grad_(True)
    loss = golf_fast.softcapped_cross_entropy(z, t, C, reduction="none")
    loss.sum().backward()
    e_loss, _, e_grad = exact64(z.cpu(), t.cpu())
    assert_loss_close(loss.detach().cpu(), e_loss, rel=1e-5)  # GPU ex2/log approximations
    assert_grad_rounded(z.grad.cpu(), e_grad)
