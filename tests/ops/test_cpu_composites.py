"""The CPU ``composite`` backends that ``auto`` picks on CPU tensors (softcapped CE, LeakyReLU² MLP).

Each is checked against float64 with the op's own tolerances, for every reduction and dtype, in
the loss and the lse gradient; the MLP composite must equal the records' eager MLP under autograd
bit for bit (it is that code); ``backend="reference"`` still runs the precise reference; and a
composite never writes into its inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import golf_fast
from golf_fast.ops import fused_mlp as fm
from golf_fast.ops import softcapped_ce as sc
from golf_fast.ops.dispatch import COMPOSITE, resolved_backends, triton_in_interpreter

from test_softcapped_ce import C, assert_grad_rounded, assert_loss_close, exact64, make


@pytest.fixture(autouse=True)
def _no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert triton_in_interpreter() is not None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("n,v", [(1, 45), (7, 300)])
def test_ce_composite_matches_float64(dtype, reduction, n, v):
    torch.manual_seed(2601 + n)
    z, t = make(n, v, dtype)
    z0 = z.clone()
    z.requires_grad_(True)
    loss = golf_fast.softcapped_cross_entropy(z, t, C, reduction)
    assert resolved_backends()["softcapped_ce@cpu"] == COMPOSITE
    g = torch.randn(loss.shape, dtype=torch.float32)
    loss.backward(g)
    e_loss, _, e_grad = exact64(z, t)  # d loss_i / dz, summed over rows
    scale = {"mean": 1.0 / n, "sum": 1.0, "none": None}[reduction]
    if scale is None:
        assert_loss_close(loss.detach(), e_loss)
        z64 = z.detach().double().requires_grad_(True)
        s = C * torch.tanh(z64 / C)
        (F.cross_entropy(s, t, reduction="none") * g.double()).sum().backward()
        e_grad = z64.grad
    else:
        assert_loss_close(loss.detach().view(1), (e_loss.sum() * scale).view(1))
        e_grad = e_grad * scale * float(g)
    assert_grad_rounded(z.grad, e_grad)
    assert torch.equal(z.detach(), z0)  # the input is never written


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_ce_composite_lse_gradient(dtype):
    torch.manual_seed(2605)
    z, t = make(4, 70, dtype, scale=5.0)
    z.requires_grad_(True)
    loss, lse = sc.CE_OP(z, t, C)
    _, e_lse, _ = exact64(z, t)
    assert_loss_close(lse.detach(), e_lse)
    (loss.sum() + 0.5 * lse.sum()).backward()
    z64 = z.detach().double().requires_grad_(True)
    s = C * torch.tanh(z64 / C)
    lse64 = torch.logsumexp(s, -1)
    ((lse64 - s.gather(1, t[:, None])[:, 0]).sum() + 0.5 * lse64.sum()).backward()
    assert_grad_rounded(z.grad, z64.grad)


def test_ce_reference_still_runs_the_precise_reference(monkeypatch):
    calls = []
    real = sc.CE_OP.reference
    monkeypatch.setattr(sc.CE_OP, "reference", lambda *a: calls.append(1) or real(*a))
    sc.CE_OP._resolved.clear()
    try:
        z, t = make(3, 40)
        golf_fast.softcapped_cross_entropy(z, t, C, backend="reference")
        assert calls and resolved_backends()["softcapped_ce@cpu"] == "reference"
        golf_fast.softcapped_cross_entropy(z, t, C)
        assert len(calls) == 1 and resolved_backends()["softcapped_ce@cpu"] == COMPOSITE
    finally:
        sc.CE_OP._resolved.clear()


def test_ce_composite_rejects_a_dropped_tanh_derivative():
    """The tolerance used above fails the plausible wrong gradient (no (1 − tanh²) factor)."""
    torch.manual_seed(2606)
    z, t = make(5, 90, torch.float32)
    _, _, e_grad = exact64(z, t)
    th = torch.tanh(z.double() / C)
    wrong = e_grad / (1 - th * th)
    with pytest.raises(AssertionError):
        assert_grad_rounded(wrong.float(), e_grad)


@pytest.mark.parametrize("slope", [0.5, 0.0])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mlp_composite_is_the_records_eager_mlp_bit_for_bit(slope, dtype):
    torch.manual_seed(2607)
    x = torch.randn(2, 9, 32).to(dtype)
    w_up = (torch.randn(96, 32) * 0.2).to(dtype)
    w_down = (torch.randn(40, 96) * 0.1).to(dtype)
    g = torch.randn(2, 9, 40).to(dtype)
    ours = [t.clone().requires_grad_(True) for t in (x, w_up, w_down)]
    y = golf_fast.leaky_relu_square_mlp(*ours, slope)
    assert resolved_backends()["leaky_relu_square_mlp@cpu"] == COMPOSITE
    y.backward(g)
    theirs = [t.clone().requires_grad_(True) for t in (x, w_up, w_down)]
    y2 = F.linear(F.leaky_relu(F.linear(theirs[0], theirs[1]), negative_slope=slope).square(), theirs[2])
    y2.backward(g)
    assert torch.equal(y, y2)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad)


def test_mlp_reference_backend_uses_the_registered_backward(monkeypatch):
    calls = []
    real = fm.DPRE_OP.reference
    monkeypatch.setattr(fm.DPRE_OP, "reference", lambda *a: calls.append(1) or real(*a))
    fm.DPRE_OP._resolved.clear()
    try:
        x = torch.randn(5, 16).bfloat16().requires_grad_(True)
        w_up = (torch.randn(24, 16) * 0.2).bfloat16()
        w_down = (torch.randn(16, 24) * 0.2).bfloat16()
        golf_fast.leaky_relu_square_mlp(x, w_up, w_down, backend="reference").sum().backward()
        assert calls  # the float64 dpre of the precise reference
        calls.clear()
        golf_fast.leaky_relu_square_mlp(x, w_up, w_down).sum().backward()
        assert not calls  # auto on CPU: autograd's own backward
    finally:
        fm.DPRE_OP._resolved.clear()
