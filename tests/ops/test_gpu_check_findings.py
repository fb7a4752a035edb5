"""Defects found by the first GPU check (benchmarks/gpu_results/2026-12-04-h200/summary.md, items 2-4),
each seen on the CPU where the CPU can see it.

* 2: int6_linear's low-rank half ``x·Bᵀ`` followed the caller's TF32 / autocast settings (the
  reference runs at full fp32). CPU: CPU autocast runs a matmul in bf16 (the GPU case was TF32,
  which the CPU does not have), and the precision settings in force at that matmul are recorded.
* 3: a self-check under autocast compared an autocast reference with a kernel that autocast does
  not touch. CPU: a reference with a matmul under CPU autocast (the GPU case was ``square``, which
  only CUDA autocast promotes to fp32).
* 4: the fused MLP's backward received materialized (M, H) zero gradients for its unused outputs
  ``pre`` and ``post`` and folded them into ``dpre``. CPU: the ops the backward runs are counted.

Item 1 (the CUDA Hessian kernel's accumulation) has no CPU view: its numerics are the tensor cores'.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import golf_fast
from golf_fast.ops import dispatch
from golf_fast.ops import int6_matmul as im
from golf_fast.ops.dispatch import KernelOp, precise_reference, relative_error_within
from golf_fast.ops.int6_pack import pack_int6_ref

_ids = itertools.count()


@pytest.fixture
def tf32_on():
    """The trainer's global settings: TF32 matmuls, float32 matmul precision "high"."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    yield
    torch.backends.cuda.matmul.allow_tf32 = old[0]
    torch.set_float32_matmul_precision(old[1])


class MatmulSettings(TorchFunctionMode):
    """Records (allow_tf32, float32 matmul precision, CPU autocast on) at every ``@`` / matmul."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.__matmul__, torch.matmul, torch.Tensor.matmul, torch.mm):
            self.seen.append((torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision(),
                              torch.is_autocast_enabled("cpu")))
        return func(*args, **(kwargs or {}))


@pytest.mark.interpreter
def test_int6_lowrank_half_runs_at_full_fp32_whatever_tf32_and_autocast(triton_interpret, tf32_on):
    torch.manual_seed(2601)
    m, n, k, r = 5, 45, 83, 3
    codes = torch.randint(-31, 32, (n, k), dtype=torch.int8)
    scales = (torch.rand(n) * 0.05 + 0.002).to(torch.float16)
    x = torch.randn(m, k).to(torch.bfloat16)
    bias = torch.randn(n).to(torch.bfloat16)
    a, b = torch.randn(n, r), torch.randn(r, k)
    rec = MatmulSettings()
    with torch.autocast("cpu", dtype=torch.bfloat16), rec:
        out = im.launch_tile(x, pack_int6_ref(codes), scales, bias, a, b, im.GEMV_M16, 1)
    assert rec.seen == [(False, "highest", False)], rec.seen  # the one x·Bᵀ matmul, at full fp32
    with precise_reference():
        ref = im.int6_linear_ref(x, pack_int6_ref(codes), scales, bias, a, b)
    assert im.within_output_rounding(out, ref) is None
    assert torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == "high"


def test_selfcheck_runs_kernel_and_reference_without_autocast():
    torch.manual_seed(2602)
    seen = []

    def gram_ref(x: torch.Tensor) -> torch.Tensor:  # under CPU autocast this matmul would run in bf16
        seen.append(("ref", torch.is_autocast_enabled("cpu")))
        return x @ x.T

    def gram_exact(x: torch.Tensor) -> torch.Tensor:  # a "kernel" that autocast does not touch: fp32 out
        seen.append(("kernel", torch.is_autocast_enabled("cpu")))
        return (x.double() @ x.double().T).float()

    op = KernelOp(f"_test_gram_{next(_ids)}", gram_ref, fake=lambda x: x.new_empty((x.shape[0], x.shape[0])),
                  selfcheck_inputs=lambda dev, dt: (torch.randn(6, 40, device=dev, dtype=dt),),
                  compare=relative_error_within(1e-5))
    kernel = dispatch.Backend("exact", "cpu", gram_exact, dispatch.always_available, True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        op.selfcheck(kernel, torch.device("cpu"), torch.float32)  # raised (bf16 reference) before the fix
        assert torch.is_autocast_enabled("cpu")  # the caller's autocast is back
    assert seen == [("kernel", False), ("ref", False)]


def test_precise_reference_turns_autocast_off_and_restores_it():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with precise_reference():
            assert not torch.is_autocast_enabled("cpu")
            assert not torch.is_autocast_enabled("cuda")
        assert torch.is_autocast_enabled("cpu")


class ShapesOfOutputs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.ops.append((str(func), tuple(out.shape)))
        return out


def test_fused_mlp_backward_does_no_work_for_unused_pre_and_post():
    torch.manual_seed(2604)
    m, k, h, ko = 6, 8, 12, 5
    x = torch.randn(m, k, dtype=torch.bfloat16, requires_grad=True)
    w_up = (torch.randn(h, k) * 0.3).to(torch.bfloat16).requires_grad_()
    w_down = (torch.randn(ko, h) * 0.3).to(torch.bfloat16).requires_grad_()
    y = golf_fast.leaky_relu_square_mlp(x, w_up, w_down, 0.5, backend="reference")  # the op's own backward
    with ShapesOfOutputs() as rec:
        y.float().sum().backward()
    mh = [name for name, shape in rec.ops if shape == (m, h) and "detach" not in name]
    # before: two materialized zeros, then leaky_relu, casts, where, multiplies and two adds over M × H
    assert mh == ["golf_fast.leaky_relu_square_mlp_dpre.default"], mh


def test_fused_mlp_backward_still_uses_post_and_pre_gradients_when_given():
    torch.manual_seed(2605)
    m, k, h, ko = 6, 8, 12, 5
    x = torch.randn(m, k, dtype=torch.bfloat16)
    w_up = (torch.randn(h, k) * 0.3).to(torch.bfloat16)
    w_down = (torch.randn(ko, h) * 0.3).to(torch.bfloat16)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    out, pre, post = torch.ops.golf_fast.leaky_relu_square_mlp(xs[0], w_up, w_down, 0.5, True)
    (post.float().sum() + (pre.float() ** 2).sum()).backward()  # grad_out unused; pre and post used
    p64 = xs[1].double() @ w_up.double().T
    a = torch.nn.functional.leaky_relu(p64, 0.5)
    (a.square().sum() + p64.square().sum()).backward()
    torch.testing.assert_close(xs[0].grad.double(), xs[1].grad.double(), rtol=3e-2, atol=3e-2)
