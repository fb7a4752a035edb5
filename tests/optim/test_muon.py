"""Muon (single process): the update order of parameter-golf §4.1, banks, warmup, bad input."""

from __future__ import annotations

import pytest
import torch

import golf_fast
from golf_fast.ops.newton_schulz import newton_schulz_ref
from golf_fast.optim import Muon, shape_scale


def expected_steps(p0, grads, *, lr, mu_of_step, wd=0.0, nesterov=True, row_normalize=False,
                   coefficients="polar_express", dtype=torch.bfloat16):
    """The update written out from the reference text, one step at a time."""
    p, buf = p0.clone(), torch.zeros_like(p0)
    for t, g in enumerate(grads):
        mu = mu_of_step(t)
        buf = mu * buf + g
        u = g + mu * buf if nesterov else buf
        if row_normalize:
            u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-7)
        u = newton_schulz_ref(u, 5, coefficients, 1e-7, dtype)
        p = p * (1 - lr * wd)
        p = p - lr * max(1.0, p.shape[-2] / p.shape[-1]) ** 0.5 * u.float()
    return p


@pytest.mark.parametrize("shape", [(24, 16), (3, 16, 24), (2, 40, 10)])
@pytest.mark.parametrize("nesterov, row_normalize, wd", [(True, False, 0.0), (True, True, 0.095),
                                                         (False, True, 0.5)])
def test_steps_match_written_out_update(shape, nesterov, row_normalize, wd):
    p = torch.nn.Parameter(torch.randn(shape))
    p0 = p.detach().clone()
    grads = [torch.randn(shape) for _ in range(3)]
    opt = Muon([p], lr=0.03, momentum=0.9, nesterov=nesterov, weight_decay=wd, row_normalize=row_normalize)
    for g in grads:
        p.grad = g
        opt.step()
    expect = expected_steps(p0, grads, lr=0.03, mu_of_step=lambda t: 0.9, wd=wd, nesterov=nesterov,
                            row_normalize=row_normalize)
    torch.testing.assert_close(p.detach(), expect, rtol=1e-6, atol=1e-6)


def test_momentum_warmup_is_linear_then_constant():
    p = torch.nn.Parameter(torch.randn(8, 8))
    opt = Muon([p], momentum=0.99, momentum_warmup_start=0.92, momentum_warmup_steps=4)
    seen = []
    for _ in range(6):
        seen.append(Muon.current_momentum(opt.param_groups[0]))
        p.grad = torch.randn(8, 8)
        opt.step()
    assert seen == pytest.approx([0.92, 0.9375, 0.955, 0.9725, 0.99, 0.99])
    p0 = torch.randn(6, 10)
    q = torch.nn.Parameter(p0.clone())
    grads = [torch.randn(6, 10) for _ in range(3)]
    opt = Muon([q], lr=0.02, momentum=0.99, momentum_warmup_start=0.92, momentum_warmup_steps=2,
               coefficients="quintic")
    for g in grads:
        q.grad = g
        opt.step()
    expect = expected_steps(p0, grads, lr=0.02, mu_of_step=lambda t: 0.92 + 0.07 * min(1, t / 2),
                            coefficients="quintic")
    torch.testing.assert_close(q.detach(), expect, rtol=1e-6, atol=1e-6)


def test_bank_equals_its_matrices_one_by_one():
    bank = torch.nn.Parameter(torch.randn(3, 12, 20))
    mats = [torch.nn.Parameter(bank.detach()[i].clone()) for i in range(3)]
    opt_b = Muon([bank], lr=0.05, weight_decay=0.1, row_normalize=True, ns_dtype=torch.float64)
    opt_m = Muon(mats, lr=0.05, weight_decay=0.1, row_normalize=True, ns_dtype=torch.float64)
    for _ in range(2):
        g = torch.randn(3, 12, 20)
        bank.grad = g
        for i, m in enumerate(mats):
            m.grad = g[i].clone()
        opt_b.step()
        opt_m.step()
    torch.testing.assert_close(bank.detach(), torch.stack([m.detach() for m in mats]), rtol=1e-6, atol=1e-6)


def test_shape_scale_and_skip_params_without_grad():
    assert shape_scale(2048, 512) == 2.0 and shape_scale(512, 2048) == 1.0 and shape_scale(512, 512) == 1.0
    a, b = torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4, 4))
    a.grad = torch.randn(4, 4)
    before = b.detach().clone()
    Muon([a, b]).step()
    assert torch.equal(b.detach(), before) and "momentum_buffer" not in Muon([b]).state[b]
    assert golf_fast.optim.Muon is Muon


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"lr": -1.0}, ValueError, "lr"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"momentum_warmup_start": 1.5}, ValueError, "momentum_warmup_start"),
    ({"momentum_warmup_steps": -3}, ValueError, "momentum_warmup_steps"),
    ({"ns_steps": 0}, ValueError, "steps"),
    ({"coefficients": "cubic"}, ValueError, "coefficients"),
    ({"ns_dtype": torch.int8}, ValueError, "ns_dtype"),
    ({"comm_config": "auto"}, TypeError, "comm_config"),
    ({"distributed": True}, RuntimeError, "distributed: Parallel Muon needs an initialized"),
])
def test_bad_arguments_are_clear_errors(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Muon([torch.nn.Parameter(torch.randn(4, 4))], **kwargs)


def test_non_matrix_params_are_rejected():
    with pytest.raises(ValueError, match=r"params: Muon updates 2-D matrices .* shape \(7,\)"):
        Muon([torch.nn.Parameter(torch.randn(7))])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_whole_step_captured_in_cuda_graph():
    """A whole Muon step (momentum, MuonEq-R, Triton NS, WD, apply) replays from a CUDA graph."""
    params = [torch.nn.Parameter(torch.randn(s, device="cuda")) for s in [(3, 512, 512), (2, 2048, 512)]]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = Muon(params, lr=0.02, momentum=0.95, weight_decay=0.095, row_normalize=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm up: compile kernels, self-check, allocate state and workspaces
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    saved = [(p.detach().clone(), opt.state[p]["momentum_buffer"].clone()) for p in params]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    opt.param_groups[0]["step"] -= 1
    graph.replay()
    torch.cuda.synchronize()
    replayed = [p.detach().clone() for p in params]
    for p, (w, buf) in zip(params, saved):
        p.data.copy_(w)
        opt.state[p]["momentum_buffer"].copy_(buf)
    opt.step()
    for p, r in zip(params, replayed):
        assert torch.equal(p.detach(), r)
