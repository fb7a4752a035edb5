"""Muon's step made CUDA-graph capturable: lr and μ in device tensors give the same steps, the step
body never reads a device value back to the host, and after the first step it creates no state or
workspace (every buffer keeps its address); on a GPU, the graphed step equals the eager one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from golf_fast.ops import newton_schulz as ns_module
from golf_fast.optim import GraphedOptimizerStep, Muon

aten = torch.ops.aten

SYNC_OPS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default, aten.equal.default,
            aten.item.default}
"""Ops that read a device value back to the host (``.item()``, ``bool(t)``, ``nonzero``, ``torch.equal``)."""
STATE_FACTORY_OPS = {aten.zeros.default, aten.zeros_like.default, aten.ones.default, aten.full.default,
                     aten.new_zeros.default}
"""Ops that create initialized buffers (momentum and shard buffers are zeros). Uninitialized ``empty``
is not listed: op outputs are temporaries, which a CUDA graph serves from its private pool."""


class OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))

    def seen(self, which):
        return [str(f) for f in self.ops if f in which]


def _params(seed, shapes=((3, 16, 24), (2, 40, 10), (24, 16))):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]


def _muon(params, **kw):
    return Muon(params, lr=0.03, momentum=0.95, momentum_warmup_start=0.85, momentum_warmup_steps=3,
                weight_decay=0.095, row_normalize=True, **kw)


def test_device_hyperparameters_give_the_same_steps():
    """lr and μ as 0-d tensors (filled per step, lr changed by a schedule, μ warming up) update the
    parameters like the host-float path, to fp32 rounding."""
    a, b, start = _params(1901), _params(1901), _params(1901)
    oa, ob = _muon(a), _muon(b)
    ob.enable_device_hyperparameters()
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        for group in (oa.param_groups[0], ob.param_groups[0]):
            group["lr"] = 0.03 * (1 - 0.15 * step)
        for pa, pb in zip(a, b):
            pa.grad = torch.randn(pa.shape, generator=g)
            pb.grad = pa.grad.clone()
        oa.step()
        ob.step()
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pb.detach(), pa.detach(), rtol=2e-6, atol=2e-6)
    # the steps moved the weights by far more than the tolerance (a stale lr or μ would show)
    assert min(float((pa - p0).abs().max()) for pa, p0 in zip(a, start)) > 1e-3
    assert ob.param_groups[0]["step"] == 5


def test_step_body_never_reads_a_device_value():
    """No ``.item()`` / ``bool(tensor)`` / ``nonzero`` in the step body (device mode), first step or later."""
    params = _params(1902)
    opt = _muon(params)
    opt.enable_device_hyperparameters()
    for p in params:
        p.grad = torch.randn_like(p)
    for _ in range(2):
        opt.load_hyperparameters()
        with OpRecorder() as rec:
            opt.step_body()
        opt.advance()
        assert rec.seen(SYNC_OPS) == [] and len(rec.ops) > 20
    with OpRecorder() as rec:  # the detector does see a sync
        float(params[0].detach().sum())
    assert rec.seen(SYNC_OPS)


def _held_tensors(opt):
    held = {(id(p), k): (v.data_ptr(), tuple(v.shape)) for p in opt.state for k, v in opt.state[p].items()
            if isinstance(v, torch.Tensor)}
    for key, ws in ns_module._WORKSPACES.items():
        for i, t in enumerate([*ws.x, ws.a, ws.b, ws.partials]):
            held[("ns", key, i)] = (t.data_ptr(), tuple(t.shape))
    return held


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=pytest.mark.interpreter)])
def test_after_the_first_step_no_state_or_workspace_is_created(backend, request):
    """Step 1 creates the momentum buffers (and, with the Triton NS, its workspaces); later steps
    create none and every held buffer keeps its address: what a CUDA graph replay needs."""
    if backend == "triton":
        request.getfixturevalue("triton_interpret")
    ns_module.clear_workspaces()
    params = _params(1903, shapes=((2, 24, 40), (40, 24)))
    opt = _muon(params, backend=backend)
    opt.enable_device_hyperparameters()
    for p in params:
        p.grad = torch.randn_like(p)
    with OpRecorder() as first:
        opt.step()
    assert "aten.zeros_like.default" in first.seen(STATE_FACTORY_OPS)  # the lazily created momentum buffers
    held = _held_tensors(opt)
    assert len(held) >= 2 + (2 * 5 if backend == "triton" else 0)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.load_hyperparameters()
        with OpRecorder() as later:
            opt.step_body()
        opt.advance()
        assert later.seen(STATE_FACTORY_OPS) == []
        assert _held_tensors(opt) == held


def test_graphed_step_checks_its_input():
    with pytest.raises(TypeError, match="opt"):
        GraphedOptimizerStep(torch.optim.SGD(_params(1904), lr=0.1))
    with pytest.raises(ValueError, match="CUDA"):
        GraphedOptimizerStep(_muon(_params(1905)))
    with pytest.raises(ValueError, match="warmup_steps"):
        GraphedOptimizerStep(_muon(_params(1906)), warmup_steps=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_graphed_step_equals_eager_and_never_syncs():
    """Record bank shapes, 6 steps with a changing lr and μ warmup: the graphed step (2 eager warm-up
    steps, capture, replays) gives the eager step's parameters bit for bit; replays run under
    ``torch.cuda.set_sync_debug_mode("error")``; a load_state_dict in between is rebound, not lost."""
    shapes = [(4, 512, 512), (2, 2048, 512), (2, 512, 2048)]
    torch.manual_seed(1907)
    a = [torch.nn.Parameter(torch.randn(s, device="cuda") * 0.02) for s in shapes]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    oa, ob = _muon(a), _muon(b)
    oa.enable_device_hyperparameters()
    graphed = GraphedOptimizerStep(ob, warmup_steps=2)
    for step in range(6):
        for o in (oa, ob):
            o.param_groups[0]["lr"] = 0.03 * (1 - 0.1 * step)
        for pa, pb in zip(a, b):
            pa.grad = torch.randn_like(pa)
            if pb.grad is None:
                pb.grad = pa.grad.clone()
            else:
                pb.grad.copy_(pa.grad)
        oa.step()
        if step == 4:  # new state tensors (same values): copied into the captured ones
            ob.load_state_dict(copy.deepcopy(ob.state_dict()))
        if graphed.captured:
            torch.cuda.set_sync_debug_mode("error")
        try:
            graphed.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert graphed.captured and graphed.captures == 1 and graphed.eager_steps == 2
    for pa, pb in zip(a, b):
        assert torch.equal(pa.detach(), pb.detach())
