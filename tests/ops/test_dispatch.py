"""The dispatch module: registration, backend choice, logging, fallback, self-check, eager path."""

from __future__ import annotations

import logging
import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from golf_fast.ops import dispatch
from golf_fast.ops.dispatch import (
    BackendUnavailableError,
    KernelOp,
    KernelSelfCheckError,
    exact_match,
    relative_error_within,
    selfcheck_disabled,
)

_ids = itertools.count()


def scale2_ref(x: torch.Tensor) -> torch.Tensor:
    return x * 2


def make_op(**kw) -> KernelOp:
    """A fresh op (torch.library names are process-global, so each test gets its own)."""
    return KernelOp(f"_test_scale2_{next(_ids)}", scale2_ref, fake=lambda x: torch.empty_like(x),
                    selfcheck_inputs=lambda dev, dt: (torch.randn(5, 7, device=dev, dtype=dt),),
                    compare=relative_error_within(1e-6), **kw)


class RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_registers_a_torch_library_op_with_reference_as_cpu_kernel():
    torch.manual_seed(4101)
    op = make_op()
    x = torch.randn(3, 4)
    torch.testing.assert_close(getattr(torch.ops.golf_fast, op.name)(x), x * 2)
    torch.library.opcheck(getattr(torch.ops.golf_fast, op.name).default, (x,))


def test_cpu_auto_prefers_available_backend_and_logs_once(caplog):
    op = make_op()
    calls = []
    op.add_backend("fast", "cpu", lambda x: (calls.append(1), x + x)[1])
    with caplog.at_level(logging.INFO, logger="golf_fast.ops"):
        for _ in range(3):
            torch.testing.assert_close(op(torch.ones(2)), torch.full((2,), 2.0))
    assert len(calls) == 3
    msgs = [r.getMessage() for r in caplog.records if op.name in r.getMessage()]
    assert msgs == [f"golf_fast::{op.name} on cpu: backend fast"]
    assert dispatch.resolved_backends()[f"{op.name}@cpu"] == "fast"


def test_cpu_auto_falls_back_to_reference_with_the_reason(caplog):
    op = make_op()
    op.add_backend("fast", "cpu", lambda x: x + x, available=lambda: "library X missing")
    with caplog.at_level(logging.INFO, logger="golf_fast.ops"):
        op(torch.ones(2))
    assert any("backend reference (fast: library X missing)" in r.getMessage() for r in caplog.records)


def test_cuda_without_kernel_fails_loudly_unless_fallback_requested(caplog):
    op = make_op()
    op.add_backend("triton", "cuda", lambda x: x + x, available=lambda: "no CUDA device")
    with pytest.raises(BackendUnavailableError, match=r"triton: no CUDA device.*fallback='reference'"):
        op.resolve("cuda")
    with caplog.at_level(logging.WARNING, logger="golf_fast.ops"):
        chosen = op.resolve("cuda", fallback="reference")
    assert chosen.name == "reference"
    assert any("no CUDA device" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_explicit_backend_unavailable_is_an_error():
    op = make_op()
    op.add_backend("fast", "cpu", lambda x: x + x, available=lambda: "not built")
    with pytest.raises(BackendUnavailableError, match="fast: not built"):
        op(torch.ones(2), backend="fast")
    with pytest.raises(ValueError, match="backend: expected one of"):
        op(torch.ones(2), backend="nope")
    with pytest.raises(ValueError, match="fallback: expected None or 'reference'"):
        op(torch.ones(2), fallback="anything")


def test_selfcheck_raises_with_both_numbers_and_runs_once_per_key():
    torch.manual_seed(4106)
    op = make_op()
    wrong = dispatch.Backend("bad", "cuda", lambda x: x * 2.1, dispatch.always_available, True)
    with pytest.raises(KernelSelfCheckError, match=r"relative Frobenius error 5\.000e-02 > tolerance 1\.000e-06"):
        op.selfcheck(wrong, torch.device("cpu"), torch.float32)
    calls = []
    right = dispatch.Backend("good", "cuda", lambda x: (calls.append(1), x * 2)[1], dispatch.always_available, True)
    state = torch.random.get_rng_state()
    op.selfcheck(right, torch.device("cpu"), torch.float32)
    op.selfcheck(right, torch.device("cpu"), torch.float32)
    assert len(calls) == 1
    assert torch.equal(torch.random.get_rng_state(), state), "the self-check must not move the user's RNG"
    with selfcheck_disabled():
        op.selfcheck(wrong, torch.device("cpu"), torch.float64)  # opted out: no error


def test_eager_path_bypasses_the_dispatcher_but_compile_uses_the_op():
    torch.manual_seed(4107)
    op = make_op()
    op.add_backend("fast", "cpu", lambda x: x + x)
    x = torch.randn(4)
    with RecordOps() as rec:
        op(x)
    assert not any(op.name in n for n in rec.names), rec.names
    with RecordOps() as rec:
        op.torch_op(x)
    assert any(op.name in n for n in rec.names)

    torch._dynamo.reset()
    compiled = torch.compile(lambda t: op(t) + 1, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), x * 2 + 1)


def test_gradients_go_through_the_registered_op():
    torch.manual_seed(4108)
    op = make_op()

    def setup_context(ctx, inputs, output):
        pass

    op.register_autograd(lambda ctx, grad: grad * 2, setup_context)
    x = torch.randn(3, requires_grad=True)
    op(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 2.0))


def test_comparisons():
    a = torch.tensor([1, 2, 3], dtype=torch.int8)
    assert exact_match(a, a.clone()) is None
    assert "1 of 3 elements differ (max |difference| 4" in exact_match(a, torch.tensor([1, 2, 7], dtype=torch.int8))
    assert "vs reference" in exact_match(a, a.to(torch.int16))
    cmp = relative_error_within(1e-3)
    assert cmp(torch.ones(4), torch.ones(4)) is None
    assert "NaN" in cmp(torch.tensor([float("nan")]), torch.ones(1))


def test_add_backend_rejects_duplicates():
    op = make_op()
    op.add_backend("fast", "cpu", lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        op.add_backend("fast", "cpu", lambda x: x)
    with pytest.raises(ValueError, match="already registered"):
        op.add_backend("reference", "cpu", lambda x: x)


def test_resolved_backends_reports_the_latest_call_not_the_first_resolution():
    """A cached resolution still updates resolved_backends(): after auto → reference → auto it says
    what the last call ran (it used to keep "reference" while the auto backend ran)."""
    op = make_op()
    op.add_backend("fast", "cpu", lambda x: x + x)
    key = f"{op.name}@cpu"
    op(torch.ones(2))
    assert dispatch.resolved_backends()[key] == "fast"
    op(torch.ones(2), backend="reference")
    assert dispatch.resolved_backends()[key] == "reference"
    op(torch.ones(2))  # a cache hit
    assert dispatch.resolved_backends()[key] == "fast"


def test_unknown_backend_error_lists_each_name_once_per_device():
    op = make_op()
    op.add_backend("triton", "cuda", lambda x: x + x)
    op.add_backend("triton", "cpu", lambda x: x + x, available=lambda: "no interpreter")
    op.add_backend("cpp", "cpu", lambda x: x + x)
    assert op.backends() == ["triton", "cpp", "reference"]
    with pytest.raises(ValueError) as e:
        op(torch.ones(2), backend="cudnn")
    msg = str(e.value)
    assert msg.count("'triton'") == 3  # once in the full list, once per device
    assert "cuda: ['triton']; cpu: ['triton', 'cpp']" in msg and "got 'cudnn'" in msg


def test_interpreter_triton_backends_self_check_by_default():
    op = make_op()
    op.add_backend("triton", "cpu", lambda x: x + x, available=dispatch.triton_in_interpreter)
    op.add_backend("composite", "cpu", lambda x: x + x)
    flags = {b.name: b.selfcheck for b in op._backends}
    assert flags == {"triton": True, "composite": False}
