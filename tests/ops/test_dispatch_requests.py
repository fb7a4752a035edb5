"""In eager mode the backend a caller asks for is the one that runs, with autograd on and off; the
registered op is the path of compiled graphs. Each test counts which implementation ran."""

from __future__ import annotations

import collections
import itertools

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from golf_fast.ops import dispatch
from golf_fast.ops.dispatch import BackendUnavailableError, KernelOp, relative_error_within, selfcheck_disabled

_ids = itertools.count()


def make_counted_op(ran: collections.Counter) -> KernelOp:
    """``y = 3·x`` with a counting reference, a gradient ``3·grad``, and counted CPU/CUDA backends."""

    def ref(x: torch.Tensor) -> torch.Tensor:
        ran["reference"] += 1
        return x * 3

    op = KernelOp(f"_test_request_{next(_ids)}", ref, fake=lambda x: torch.empty_like(x),
                  selfcheck_inputs=lambda dev, dt: (torch.ones(3, device=dev, dtype=dt),),
                  compare=relative_error_within(1e-6))

    def kernel(name):
        def fn(x):
            ran[name] += 1
            return x * 3
        return fn

    op.add_backend("fast", "cpu", kernel("fast"))
    op.add_backend("other", "cpu", kernel("other"))
    op.add_backend("gpu", "cuda", kernel("gpu"))

    def backward(ctx, grad):
        ran["backward"] += 1
        assert ctx.needs_input_grad == (True,)  # the op's own arguments only
        return grad * 3

    op.register_autograd(backward, lambda ctx, inputs, output: None)
    return op


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
@pytest.mark.parametrize("backend", ["auto", "fast", "other", "reference"])
def test_the_requested_cpu_backend_runs(backend, grad):
    ran = collections.Counter()
    op = make_counted_op(ran)
    x = torch.linspace(-1, 1, 5, requires_grad=grad)
    y = op(x, backend=backend)
    assert torch.equal(y.detach(), x.detach() * 3)
    want = "fast" if backend == "auto" else backend
    assert ran == {want: 1}, ran
    if grad:
        y.sum().backward()
        assert torch.equal(x.grad, torch.full((5,), 3.0)) and ran["backward"] == 1


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_fallback_reference_runs_the_reference_when_the_kernel_is_unavailable(grad):
    ran = collections.Counter()
    op = make_counted_op(ran)
    op.add_backend("broken", "cpu", lambda x: x * 0, available=lambda: "not built here")
    x = torch.linspace(-1, 1, 4, requires_grad=grad)
    with pytest.raises(BackendUnavailableError, match="broken: not built here"):
        op(x, backend="broken")
    y = op(x, backend="broken", fallback="reference")
    assert ran == {"reference": 1} and torch.equal(y.detach(), x.detach() * 3)
    if grad:
        y.sum().backward()
        assert torch.equal(x.grad, torch.full((4,), 3.0))


def test_backend_reference_on_cuda_runs_the_reference():
    """CUDA tensors without a GPU: fake tensors carry the device, and the counted kernels run on them."""
    ran = collections.Counter()
    op = make_counted_op(ran)
    with FakeTensorMode():
        x = torch.empty(6, device="cuda")
        with selfcheck_disabled():
            op(x, backend="reference")
            assert ran == {"reference": 1}, ran
            op(x)
            assert ran == {"reference": 1, "gpu": 1}, ran


def test_a_backward_runs_the_requested_backend_of_the_ops_it_calls():
    """The eager backward of an op that calls another golf_fast op keeps the caller's request."""
    ran = collections.Counter()
    inner = make_counted_op(ran)
    outer_ran = collections.Counter()
    outer = make_counted_op(outer_ran)
    inner_op = getattr(torch.ops.golf_fast, inner.name)
    outer._backward = lambda ctx, grad: inner_op(grad)  # like int6_linear's backward calling dequantize_int6
    for backend, want in (("reference", "reference"), ("other", "other"), ("auto", "fast")):
        ran.clear()
        x = torch.ones(3, requires_grad=True)
        outer(x, backend=backend).sum().backward()
        assert ran == {want: 1}, (backend, ran)
        assert torch.equal(x.grad, torch.full((3,), 3.0))


@pytest.mark.parametrize("grad", [False, True], ids=["no-grad", "grad"])
def test_triton_on_cpu_without_the_interpreter_raises(grad, monkeypatch):
    from golf_fast.ops import int6_matmul
    from golf_fast.ops.int6_pack import pack_int6_ref

    monkeypatch.setattr(dispatch, "interpreter_enabled", lambda: False)
    g = torch.Generator().manual_seed(4201)
    codes = torch.randint(-31, 32, (5, 16), dtype=torch.int8, generator=g)
    x = torch.randn(2, 16, generator=g).to(torch.bfloat16).requires_grad_(grad)
    scales = torch.full((5,), 0.01, dtype=torch.float16)
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        int6_matmul.int6_linear(x, pack_int6_ref(codes), scales, backend="triton")
    y = int6_matmul.int6_linear(x, pack_int6_ref(codes), scales, backend="triton", fallback="reference")
    assert y.shape == (2, 5)
