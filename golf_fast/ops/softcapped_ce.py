"""Fused softcapped cross-entropy: ``CE(c·tanh(z/c), target)`` without materializing the softcapped logits.

Math, shapes, dtypes
--------------------
``logits`` (..., V) bfloat16/float16/float32 are the *pre-softcap* logits ``z`` (the tied head's
output); ``targets`` (...) int64 in [0, V); ``softcap`` c in (0, 40]. Per row::

    s    = c·tanh(z/c)                    (fp32)
    lse  = logsumexp_j s_j
    loss = lse − s_target                 (nats, fp32)

``reduction``: ``"mean"`` (scalar), ``"sum"`` (scalar) or ``"none"`` (targets' shape), all fp32.
The gradient with respect to ``logits`` is returned in the logits' dtype.

This is the records' ``FUSED_CE_ENABLED`` training loss (parameter_golf.md §7.1): the softcap is
applied in fp32 inside the kernel. The records' unfused path (and golf_fast's model on CPU)
computes ``c·tanh(z/c)`` in the logits' dtype first and then ``F.cross_entropy`` in fp32; the two
agree up to that rounding of the softcapped logits.

Implementations
---------------
* ``softcapped_cross_entropy_ref``: eager PyTorch, ``F.cross_entropy(c·tanh(z.float()/c), t)``.
* ``softcapped_ce_ref`` / ``softcapped_ce_backward_ref``: the op's precise reference (loss and
  log-sum-exp in fp32, hand-written fp32 gradient): ``backend="reference"`` and the self-checks.
* ``softcapped_ce_composite``: the ``composite`` CPU backend that ``auto`` runs on CPU tensors: the
  same fp32 math in ~8 passes of in-place PyTorch ops (``log_softmax`` of the softcapped logits
  saved for the backward), faster on CPU than the records' unfused loss under autograd.
* ``_softcapped_ce_fwd_kernel`` (one pass over each row, no running maximum: the softcap bounds
  the logits, see ``softcapped_ce_kernels``) writes (loss, lse) per row, 8 bytes;
  ``_softcapped_ce_bwd_kernel`` reads the logits again and writes the gradient. Bytes per element:
  forward 2 (bf16 read), backward 4 (read + write); eager PyTorch moves ≥ 62.

Naming ladder: ``_softcapped_ce_{fwd,bwd}_kernel`` → ``softcapped_ce_fwd_triton`` /
``softcapped_ce_bwd_triton`` → ``golf_fast::softcapped_ce`` (autograd through
``golf_fast::softcapped_ce_backward``) → ``golf_fast.softcapped_cross_entropy``; references
``softcapped_ce_ref`` / ``softcapped_ce_backward_ref`` (op level) and
``softcapped_cross_entropy_ref`` (public level).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from golf_fast.ops.compare import all_rounded_close, rounded_close
from golf_fast.ops.dispatch import COMPOSITE, KernelOp, triton_in_interpreter, triton_on_cuda
from golf_fast.ops.softcapped_ce_kernels import (BLOCK_V, LOGIT_DTYPES, MAX_SOFTCAP, NUM_WARPS,
                                                 _softcapped_ce_bwd_kernel, _softcapped_ce_fwd_kernel)
from golf_fast.ops.triton_support import check_launch_device

REDUCTIONS = ("mean", "sum", "none")

# --------------------------------------------------------------------------- references


def softcapped_ce_ref(logits: torch.Tensor, targets: torch.Tensor, softcap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager reference of the op: (N, V) logits, (N,) targets → (loss (N,), lse (N,)), fp32."""
    s = softcap * torch.tanh(logits.float() / softcap)
    lse = torch.logsumexp(s, dim=-1)
    loss = F.cross_entropy(s, targets, reduction="none")
    return loss, lse


def softcapped_ce_backward_ref(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
                               grad_loss: torch.Tensor, grad_lse: Optional[torch.Tensor],
                               softcap: float) -> torch.Tensor:
    """Eager reference of the gradient: ``((g_loss + g_lse)·softmax(s) − g_loss·onehot)·(1 − tanh²)``."""
    th = torch.tanh(logits.float() / softcap)
    p = torch.exp(softcap * th - lse[:, None])
    g_all = grad_loss.float() if grad_lse is None else grad_loss.float() + grad_lse.float()
    grad_s = g_all[:, None] * p
    grad_s.scatter_add_(1, targets[:, None], -grad_loss.float()[:, None])
    return (grad_s * (1.0 - th * th)).to(logits.dtype)


def softcapped_cross_entropy_ref(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 30.0,
                                 reduction: str = "mean") -> torch.Tensor:
    """Eager PyTorch: ``F.cross_entropy(softcap·tanh(logits.float()/softcap), targets)`` in fp32."""
    v = logits.shape[-1]
    s = softcap * torch.tanh(logits.float().reshape(-1, v) / softcap)
    loss = F.cross_entropy(s, targets.reshape(-1), reduction=reduction)
    return loss.view(targets.shape) if reduction == "none" else loss


class _CompositeCE(torch.autograd.Function):
    """The op's math from a few in-place PyTorch ops, for CPU tensors (the ``composite`` backend).

    Forward: ``th = tanh(z.float()/c)``, ``lp = log_softmax(c·th)`` (fp32), ``loss = −lp_t``,
    ``lse = c·th_t − lp_t``. Backward: ``(g_loss + g_lse)·exp(lp) − g_loss·onehot``, times
    ``1 − th²``, rounded once to the logits' dtype. Saves ``th`` and ``lp`` (8 bytes per logit)
    and makes ~8 passes over them in all, where ``F.cross_entropy((c·tanh(z/c)).float(), t)`` under
    autograd makes more (and rounds the softcapped logits to the logits' dtype first).
    """

    @staticmethod
    def forward(ctx, logits, targets, softcap):
        th = (torch.div(logits, softcap) if logits.dtype == torch.float32  # never in place on the input
              else logits.float().div_(softcap)).tanh_()
        lp = torch.log_softmax(th * softcap, dim=1)
        idx = targets[:, None]
        loss = lp.gather(1, idx).squeeze(1).neg_()
        lse = th.gather(1, idx).squeeze(1).mul_(softcap).add_(loss)
        ctx.save_for_backward(th, targets, lp)
        ctx.logits_dtype = logits.dtype
        return loss, lse

    @staticmethod
    def backward(ctx, grad_loss, grad_lse):
        th, targets, lp = ctx.saved_tensors
        n = th.shape[0]
        g_loss = grad_loss.float() if grad_loss is not None else th.new_zeros(n)
        g_all = g_loss + grad_lse.float() if grad_lse is not None else g_loss
        grad = lp.exp().mul_(g_all[:, None])
        grad.scatter_add_(1, targets[:, None], g_loss.neg()[:, None])
        grad.mul_(th.square().neg_().add_(1.0))
        return grad.to(ctx.logits_dtype), None, None


def softcapped_ce_composite(logits: torch.Tensor, targets: torch.Tensor,
                            softcap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, lse) of the op from in-place PyTorch ops with a hand-written backward
    (:class:`_CompositeCE`): the CPU ``composite`` backend, what ``auto`` runs on CPU tensors."""
    return _CompositeCE.apply(logits, targets, float(softcap))


def _fwd_fake(logits, targets, softcap):
    n = logits.shape[0]
    return logits.new_empty((n,), dtype=torch.float32), logits.new_empty((n,), dtype=torch.float32)


def _bwd_fake(logits, targets, lse, grad_loss, grad_lse, softcap):
    return torch.empty_like(logits)


# --------------------------------------------------------------------------- launchers


def softcapped_ce_fwd_triton(logits: torch.Tensor, targets: torch.Tensor,
                             softcap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel (one program per row). Inputs are assumed valid."""
    check_launch_device(logits, targets, what="softcapped_cross_entropy")
    n, v = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    loss = torch.empty((n,), dtype=torch.float32, device=logits.device)
    lse = torch.empty((n,), dtype=torch.float32, device=logits.device)
    if n == 0:
        return loss, lse
    _softcapped_ce_fwd_kernel[(n,)](logits, targets.contiguous(), loss, lse, v, logits.stride(0), float(softcap),
                                    BLOCK_V=BLOCK_V, num_warps=NUM_WARPS, num_stages=1)
    return loss, lse


def softcapped_ce_bwd_triton(logits: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
                             grad_loss: torch.Tensor, grad_lse: Optional[torch.Tensor],
                             softcap: float) -> torch.Tensor:
    """Launch the backward kernel; returns the gradient (N, V) in the logits' dtype."""
    check_launch_device(logits, targets, lse, grad_loss, what="softcapped_cross_entropy backward")
    n, v = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    grad = torch.empty((n, v), dtype=logits.dtype, device=logits.device)
    if n == 0:
        return grad
    gl = grad_loss.float()
    gs = grad_lse.float() if grad_lse is not None else gl
    _softcapped_ce_bwd_kernel[(n,)](logits, targets.contiguous(), lse.contiguous(), gl, gs, grad, v,
                                    logits.stride(0), grad.stride(0), gl.stride(0), gs.stride(0), float(softcap),
                                    HAS_GLSE=grad_lse is not None, BLOCK_V=BLOCK_V, num_warps=NUM_WARPS,
                                    num_stages=1)
    return grad


# --------------------------------------------------------------------------- self-check inputs and comparisons


def _fwd_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    n, v = 7, 2 * BLOCK_V + 45  # two full blocks and a tail
    logits = (torch.randn(n, v, device=device) * 20).to(dtype if dtype in LOGIT_DTYPES else torch.bfloat16)
    return (logits, torch.randint(0, v, (n,), device=device), 30.0)


def _bwd_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    logits, targets, c = _fwd_selfcheck_inputs(device, dtype)
    _, lse = softcapped_ce_ref(logits, targets, c)
    return (logits, targets, lse, torch.rand(logits.shape[0], device=device) + 0.5, None, c)


def compare_losses(out, ref) -> Optional[str]:
    """(loss, lse) in fp32 from different summation orders and exp routines: 64 fp32 ulps (~8e-6
    relative). A dropped column shifts the lse of the check input by ≥ 1e-4 relative."""
    return all_rounded_close(out, ref, ("loss", "lse"), ulps=64.0, floor=64.0)


def compare_grad(out, ref) -> Optional[str]:
    """The gradient: the same fp32 value rounded to the logits' dtype (adjacent values allowed);
    for fp32 logits 1e-5 relative: ``p = exp(s − lse)`` with |s − lse| up to 2c + log V."""
    return rounded_close(out, ref, ulps=2.0, floor=2.0 ** -6, min_rel=1e-5, name="grad")


# --------------------------------------------------------------------------- ops and autograd

CE_OP = KernelOp("softcapped_ce", softcapped_ce_ref, fake=_fwd_fake, selfcheck_inputs=_fwd_selfcheck_inputs,
                 compare=compare_losses)
CE_OP.add_backend("triton", "cuda", softcapped_ce_fwd_triton, available=triton_on_cuda)
CE_OP.add_backend("triton", "cpu", softcapped_ce_fwd_triton, available=triton_in_interpreter)
CE_OP.add_backend(COMPOSITE, "cpu", softcapped_ce_composite, native_autograd=True)

CE_BWD_OP = KernelOp("softcapped_ce_backward", softcapped_ce_backward_ref, fake=_bwd_fake,
                     selfcheck_inputs=_bwd_selfcheck_inputs, compare=compare_grad)
CE_BWD_OP.add_backend("triton", "cuda", softcapped_ce_bwd_triton, available=triton_on_cuda)
CE_BWD_OP.add_backend("triton", "cpu", softcapped_ce_bwd_triton, available=triton_in_interpreter)


def _setup_context(ctx, inputs, output) -> None:
    logits, targets, softcap = inputs
    _, lse = output
    ctx.softcap = float(softcap)
    ctx.save_for_backward(logits, targets, lse)


def _backward(ctx, grad_loss, grad_lse):
    logits, targets, lse = ctx.saved_tensors
    if grad_loss is None:
        grad_loss = torch.zeros_like(lse)
    grad = torch.ops.golf_fast.softcapped_ce_backward(logits, targets, lse, grad_loss, grad_lse, ctx.softcap)
    return grad, None, None


CE_OP.register_autograd(_backward, _setup_context)


# --------------------------------------------------------------------------- public API


def _check_inputs(logits, targets, softcap, reduction) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets: expected a torch.Tensor, got {type(targets).__name__}")
    if logits.dtype not in LOGIT_DTYPES:
        raise TypeError(f"logits: expected dtype bfloat16, float16 or float32, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits: expected shape (..., V) with V >= 1, got {tuple(logits.shape)}")
    if targets.dtype != torch.int64:
        raise TypeError(f"targets: expected dtype torch.int64 (class indices), got {targets.dtype}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets: expected shape {tuple(logits.shape[:-1])} (logits without the vocab dim), "
                         f"got {tuple(targets.shape)}")
    if targets.device != logits.device:
        raise ValueError(f"targets: expected a tensor on {logits.device} (like logits), got {targets.device}")
    if (not isinstance(softcap, (int, float)) or isinstance(softcap, bool)
            or not 0.0 < float(softcap) <= MAX_SOFTCAP):
        raise ValueError(f"softcap: expected a number in (0, {MAX_SOFTCAP}], got {softcap!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if targets.device.type == "cpu" and targets.numel() and not torch.compiler.is_compiling():
        lo, hi = int(targets.min()), int(targets.max())  # free on CPU; on CUDA a bad target gives NaN
        if lo < 0 or hi >= logits.shape[-1]:
            raise ValueError(f"targets: expected class indices in [0, {logits.shape[-1]}), got values in "
                             f"[{lo}, {hi}]")


def softcapped_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, softcap: float = 30.0,
                             reduction: str = "mean", *, backend: str = "auto",
                             fallback: Optional[str] = None) -> torch.Tensor:
    """Cross-entropy (nats, fp32) of ``targets`` under ``softcap·tanh(logits/softcap)``, fused.

    ``logits`` (..., V) bf16/fp16/fp32, pre-softcap; ``targets`` (...) int64 in [0, V) (on CUDA an
    index outside that range gives a NaN loss instead of a host synchronization); ``softcap`` in
    (0, 40]; ``reduction`` ``"mean"``, ``"sum"`` or ``"none"``. Differentiable in ``logits``.
    ``backend``: ``"auto"`` (Triton on CUDA; on CPU the Triton kernel under ``TRITON_INTERPRET=1``,
    else ``"composite"``), ``"triton"``, ``"composite"`` (CPU only: the same fp32 math from a few
    in-place PyTorch ops and a hand-written backward, ``softcapped_ce_composite``; the fastest CPU
    path) or ``"reference"`` (the op's precise eager reference, ``softcapped_ce_ref``).

    Example::

        loss = golf_fast.softcapped_cross_entropy(h @ emb.T, targets, softcap=30.0)
    """
    _check_inputs(logits, targets, softcap, reduction)
    v = logits.shape[-1]
    loss, _ = CE_OP(logits.reshape(-1, v), targets.reshape(-1), float(softcap), backend=backend, fallback=fallback)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss.view(targets.shape)
