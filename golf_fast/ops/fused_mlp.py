"""Fused LeakyReLU² MLP: ``out = leaky_relu(x·W_upᵀ, s)² · W_downᵀ`` with the activation in GEMM epilogues.

Math, shapes, dtypes
--------------------
``x`` (..., K) bfloat16/float16; ``w_up`` (H, K) and ``w_down`` (K_out, H) in x's dtype;
``slope`` s (the records: 0.5). With ``pre = x·W_upᵀ`` (M × H), ``a = leaky_relu(pre, s)``,
``post = a²``::

    out   = post · W_downᵀ                              (..., K_out), x's dtype
    ∂post/∂pre = 2a·(pre > 0 ? 1 : s)                   (= 2·pre or 2s²·pre)
    dpre  = (g · W_down) ⊙ ∂post/∂pre,   dW_down = gᵀ·post,   dW_up = dpreᵀ·x,   dx = dpre·W_up

Implementations
---------------
* ``leaky_relu_square_mlp_ref``: eager PyTorch, exactly the model's unfused MLP
  (``F.linear`` → ``F.leaky_relu`` → ``square`` → ``F.linear``). On CPU ``auto`` runs this
  (``mlp_op_ref``) as the ``composite`` backend with PyTorch's own backward; ``backend="reference"``
  runs it with the op's registered backward (``mlp_dpre_ref``, float64).
* ``_mlp_act_matmul_kernel`` (``fused_mlp_kernels``), two uses: the up-projection whose
  epilogue writes ``post`` (and ``pre`` when a gradient is needed), then cuBLAS for the down
  projection; in the backward, ``g·W_down`` whose epilogue reads ``pre`` and writes ``dpre``;
  the three other backward GEMMs (dW_down, dW_up, dx) are plain cuBLAS. This is the records'
  fused MLP design (parameter_golf.md §7.1), with these differences: pointer-based tiles (no TMA
  descriptors, so Triton 3.6-3.9 and the interpreter run it), no transposed copy of W_down in the
  backward (the kernel reads it with its own strides), the activation rounded where eager rounds
  (so the forward matches the unfused model), and no ``pre`` written when no gradient is needed.

Per (M × H) element the forward writes 4 bytes (pre + post; 2 without a gradient) where eager
PyTorch moves 10 (GEMM write 2; leaky_relu read 2 + write 2; square read 2 + write 2); the
backward's fused GEMM reads ``pre`` and writes ``dpre`` (4 bytes) where eager moves ≥ 14.

Naming ladder: ``_mlp_act_matmul_kernel`` → ``mlp_up_triton`` / ``mlp_dpre_triton`` →
``golf_fast::leaky_relu_square_mlp`` (autograd through ``golf_fast::leaky_relu_square_mlp_dpre``)
→ ``golf_fast.leaky_relu_square_mlp``; references ``leaky_relu_square_mlp_ref`` (public level),
``mlp_op_ref`` and ``mlp_dpre_ref`` (op level).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from golf_fast.ops.compare import all_rounded_close, rounded_close
from golf_fast.ops.dispatch import COMPOSITE, KernelOp, triton_in_interpreter, triton_on_cuda
from golf_fast.ops.fused_mlp_kernels import ACT_DTYPES, BLOCK_K, BLOCK_M, BLOCK_N, GROUP_M, NUM_STAGES, NUM_WARPS
from golf_fast.ops.fused_mlp_kernels import _mlp_act_matmul_kernel
from golf_fast.ops.triton_support import cdiv, check_launch_device

# --------------------------------------------------------------------------- references


def leaky_relu_square_mlp_ref(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor,
                              slope: float = 0.5) -> torch.Tensor:
    """Eager PyTorch: ``F.linear(F.leaky_relu(F.linear(x, w_up), slope).square(), w_down)``."""
    return F.linear(F.leaky_relu(F.linear(x, w_up), negative_slope=slope).square(), w_down)


def _activation(pre: torch.Tensor, slope: float) -> torch.Tensor:
    return F.leaky_relu(pre, negative_slope=slope).square()


def mlp_op_ref(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, slope: float,
               need_pre: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Op-level reference on (M, K) ``x``: (out (M, K_out), pre (M, H) or (0, H), post (M, H))."""
    pre = F.linear(x, w_up)
    post = _activation(pre, slope)
    out = F.linear(post, w_down)
    return out, (pre if need_pre else pre.new_empty((0, pre.shape[1]))), post


def mlp_dpre_ref(grad_out: torch.Tensor, w_down: torch.Tensor, pre: torch.Tensor, slope: float) -> torch.Tensor:
    """``(g·W_down) ⊙ 2a·(pre > 0 ? 1 : s)`` (a = leaky(pre) rounded like eager), rounded once.

    Computed in float64 (exact products of the bf16/fp16 inputs; no TF32 whatever the global
    matmul settings), so it is also the self-check's ground truth."""
    a = F.leaky_relu(pre, negative_slope=slope).double()
    deriv = 2.0 * a * torch.where(pre > 0, 1.0, slope).double()
    return ((grad_out.double() @ w_down.double()) * deriv).to(pre.dtype)


def _op_fake(x, w_up, w_down, slope, need_pre):
    m, h = x.shape[0], w_up.shape[0]
    return (x.new_empty((m, w_down.shape[0])), x.new_empty((m if need_pre else 0, h)), x.new_empty((m, h)))


def _dpre_fake(grad_out, w_down, pre, slope):
    return torch.empty_like(pre)


# --------------------------------------------------------------------------- launchers


def _grid(m: int, n: int) -> tuple[int]:
    return (cdiv(m, BLOCK_M) * cdiv(n, BLOCK_N),)


def mlp_up_triton(x: torch.Tensor, w_up: torch.Tensor, need_pre: bool, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre, post) of (M, K) ``x``: one fused GEMM launch; ``pre`` is (0, H) unless ``need_pre``."""
    m, k = x.shape
    h = w_up.shape[0]
    x = x.contiguous()
    w_up = w_up.contiguous()
    post = torch.empty((m, h), dtype=x.dtype, device=x.device)
    pre = torch.empty((m if need_pre else 0, h), dtype=x.dtype, device=x.device)
    if m == 0 or h == 0:
        return pre, post
    _mlp_act_matmul_kernel[_grid(m, h)](x, w_up, pre if need_pre else post, post, m, h, k, x.stride(0),
                                        w_up.stride(0), post.stride(0), float(slope), FORWARD=True,
                                        STORE_PRE=need_pre, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K,
                                        GROUP_M=GROUP_M, num_warps=NUM_WARPS, num_stages=NUM_STAGES)
    return pre, post


def mlp_op_triton(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, slope: float,
                  need_pre: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused up-projection + activation, then the down projection (``F.linear``, cuBLAS on a GPU)."""
    check_launch_device(x, w_up, w_down, what="leaky_relu_square_mlp")
    pre, post = mlp_up_triton(x, w_up, need_pre, slope)
    return F.linear(post, w_down), pre, post


def mlp_dpre_triton(grad_out: torch.Tensor, w_down: torch.Tensor, pre: torch.Tensor, slope: float) -> torch.Tensor:
    """``dpre`` (M, H) from ``grad_out`` (M, K_out), ``w_down`` (K_out, H), ``pre`` (M, H): one launch."""
    check_launch_device(grad_out, w_down, pre, what="leaky_relu_square_mlp backward")
    m, k = grad_out.shape
    h = w_down.shape[1]
    g = grad_out.contiguous()
    w_down = w_down.contiguous()
    pre = pre.contiguous()
    dpre = torch.empty((m, h), dtype=pre.dtype, device=pre.device)
    if m == 0 or h == 0:
        return dpre
    _mlp_act_matmul_kernel[_grid(m, h)](g, w_down, dpre, pre, m, h, k, g.stride(0), w_down.stride(0),
                                        dpre.stride(0), float(slope), FORWARD=False, STORE_PRE=True,
                                        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K, GROUP_M=GROUP_M,
                                        num_warps=NUM_WARPS, num_stages=NUM_STAGES)
    return dpre


# --------------------------------------------------------------------------- self-check


def _op_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    dt = dtype if dtype in ACT_DTYPES else torch.bfloat16
    m, k, h, ko = BLOCK_M + 3, 2 * BLOCK_K + 5, BLOCK_N + 9, 37  # tails in M, K and H
    x = torch.randn(m, k, device=device).to(dt)
    return (x, (torch.randn(h, k, device=device) * k ** -0.5).to(dt),
            (torch.randn(ko, h, device=device) * h ** -0.5).to(dt), 0.5, True)


def _dpre_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    x, w_up, w_down, slope, _ = _op_selfcheck_inputs(device, dtype)
    pre = F.linear(x, w_up)
    return (torch.randn(x.shape[0], w_down.shape[0], device=device).to(x.dtype), w_down, pre, slope)


def compare_mlp(out, ref) -> Optional[str]:
    """(out, pre, post). ``pre`` and ``post`` are the same fp32 accumulations rounded to the
    activation dtype (``post`` is a function of the rounded ``pre``: where ``pre`` rounds the other
    way it moves by ~2 ulps); ``out`` is ``F.linear(post, W_down)`` in both paths, so it only
    carries ``post``'s differences: relative Frobenius error ≤ 2 eps of the dtype."""
    problem = all_rounded_close(out[1:], ref[1:], ("pre", "post"), ulps=4.0, floor=2.0 ** -6)
    if problem is not None:
        return problem
    o, r = out[0].double(), ref[0].double()
    if o.shape != r.shape or not torch.isfinite(o).all():
        return f"out: shape {tuple(o.shape)} vs {tuple(r.shape)} or NaN/inf"
    err = float((o - r).norm() / r.norm().clamp_min(1e-30))
    tol = 2 * torch.finfo(out[0].dtype).eps
    return None if err <= tol else f"out: relative Frobenius error {err:.3e} > {tol:.3e}"


def compare_dpre(out, ref) -> Optional[str]:
    return rounded_close(out, ref, ulps=2.0, floor=2.0 ** -6, name="dpre")


# --------------------------------------------------------------------------- ops and autograd

MLP_OP = KernelOp("leaky_relu_square_mlp", mlp_op_ref, fake=_op_fake, selfcheck_inputs=_op_selfcheck_inputs,
                  compare=compare_mlp)
MLP_OP.add_backend("triton", "cuda", mlp_op_triton, available=triton_on_cuda)
MLP_OP.add_backend("triton", "cpu", mlp_op_triton, available=triton_in_interpreter)
MLP_OP.add_backend(COMPOSITE, "cpu", mlp_op_ref, native_autograd=True)  # the records' eager MLP, autograd's backward

DPRE_OP = KernelOp("leaky_relu_square_mlp_dpre", mlp_dpre_ref, fake=_dpre_fake,
                   selfcheck_inputs=_dpre_selfcheck_inputs, compare=compare_dpre)
DPRE_OP.add_backend("triton", "cuda", mlp_dpre_triton, available=triton_on_cuda)
DPRE_OP.add_backend("triton", "cpu", mlp_dpre_triton, available=triton_in_interpreter)


def _setup_context(ctx, inputs, output) -> None:
    x, w_up, w_down, slope, need_pre = inputs
    _, pre, post = output
    ctx.slope = float(slope)
    ctx.save_for_backward(x, w_up, w_down, pre, post)


def _backward(ctx, grad_out, grad_pre, grad_post):
    x, w_up, w_down, pre, post = ctx.saved_tensors
    if pre.shape[0] != x.shape[0]:
        raise RuntimeError("golf_fast::leaky_relu_square_mlp: a gradient needs the op called with need_pre=True")
    need_x, need_up, need_down = ctx.needs_input_grad[:3]
    grad_x = grad_up = grad_down = None
    if grad_out is None:
        grad_out = x.new_zeros((x.shape[0], w_down.shape[0]))
    if need_down:
        grad_down = grad_out.T @ post
    dpre = torch.ops.golf_fast.leaky_relu_square_mlp_dpre(grad_out, w_down, pre, ctx.slope)
    if grad_post is not None:  # only when post itself is used downstream (not by the public function)
        a = F.leaky_relu(pre, negative_slope=ctx.slope).float()
        dpre = (dpre.float() + grad_post.float() * 2.0 * a * torch.where(pre > 0, 1.0, ctx.slope)).to(dpre.dtype)
    if grad_pre is not None:
        dpre = dpre + grad_pre
    if need_up:
        grad_up = dpre.T @ x
    if need_x:
        grad_x = dpre @ w_up
    return grad_x, grad_up, grad_down, None, None


MLP_OP.register_autograd(_backward, _setup_context)


# --------------------------------------------------------------------------- public API


def _check_inputs(x, w_up, w_down, slope) -> None:
    for name, t in (("x", x), ("w_up", w_up), ("w_down", w_down)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if x.dtype not in ACT_DTYPES:
        raise TypeError(f"x: expected dtype torch.bfloat16 or torch.float16, got {x.dtype}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x: expected shape (..., K) with K >= 1, got {tuple(x.shape)}")
    k = x.shape[-1]
    if w_up.dim() != 2 or w_up.shape[1] != k or w_up.shape[0] < 1:
        raise ValueError(f"w_up: expected shape (H, {k}) (hidden × x.shape[-1]), got {tuple(w_up.shape)}")
    h = w_up.shape[0]
    if w_down.dim() != 2 or w_down.shape[1] != h or w_down.shape[0] < 1:
        raise ValueError(f"w_down: expected shape (K_out, {h}) (w_up has {h} rows), got {tuple(w_down.shape)}")
    for name, t in (("w_up", w_up), ("w_down", w_down)):
        if t.dtype != x.dtype:
            raise TypeError(f"{name}: expected dtype {x.dtype} (like x; cast the weight first), got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"{name}: expected a tensor on {x.device} (like x), got {t.device}")
    if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not 0.0 <= float(slope) < 1.0:
        raise ValueError(f"slope: expected a number in [0, 1), got {slope!r}")


def leaky_relu_square_mlp(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, slope: float = 0.5, *,
                          backend: str = "auto", fallback: Optional[str] = None) -> torch.Tensor:
    """``leaky_relu(x·W_upᵀ, slope)²·W_downᵀ`` with the activation fused into the GEMMs.

    ``x`` (..., K) bf16/fp16; ``w_up`` (H, K), ``w_down`` (K_out, H) in x's dtype; returns
    (..., K_out) in x's dtype. Differentiable in all three. ``pre = x·W_upᵀ`` is kept for the
    backward only when a gradient is needed. ``backend``: ``"auto"`` (Triton on CUDA; on CPU the
    Triton kernel under ``TRITON_INTERPRET=1``, else ``"composite"``), ``"triton"``,
    ``"composite"`` (CPU only: the records' eager ``F.linear → leaky_relu → square → F.linear``,
    differentiated by PyTorch's autograd; the fastest CPU path, bit-identical to that code forward
    and backward) or ``"reference"`` (the same forward; the backward's ``dpre`` computed in float64
    and rounded once).

    Example::

        y = golf_fast.leaky_relu_square_mlp(x, w_fc.to(x.dtype), w_proj.to(x.dtype), 0.5)
    """
    _check_inputs(x, w_up, w_down, slope)
    k = x.shape[-1]
    need_pre = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w_up, w_down))
    out, _, _ = MLP_OP(x.reshape(-1, k), w_up, w_down, float(slope), need_pre, backend=backend, fallback=fallback)
    return out.view(*x.shape[:-1], w_down.shape[0])
