"""GPTQ driver: Hessian preparation, the blocked column loop, the result and the float64 reference.

Algorithm (parameter_golf.md §5.2, parameter-golf's ``gptq_quantize_weight``; W is N × K, H is K × K):

1. scales ``s`` (N,) fp16: SDClip ``clip_sigmas · std(W_row, unbiased) / qmax`` from the original W
   unless given; the fp16 values are the ones used.
2. dead columns (``diag(H) == 0``): ``H[d, d] = 1`` and ``W[:, d] = 0`` (their codes are 0).
3. damping ``λ = damp · mean(diag H)`` added to the diagonal; act-order ``perm = argsort(diag H,
   descending)`` (stable, so ties keep their index order); ``U = chol(H⁻¹, upper)``. The reference
   computes it as the record does (chol → cholesky_inverse → chol); the driver as J·chol(J·H·J)⁻¹·J
   (J reverses the order), the same matrix in half the flops (see ``upper_factor``).
   If a factorization fails, ``damp`` is doubled (at most up to 1.0) and the attempt repeated; the
   result reports the damping that worked.
4. for each block of ``block_size`` columns: ``golf_fast.ops.gptq.gptq_block`` (quantize → error →
   rank-1 update for every column of the block), then ``W[:, i2:] −= Err @ U[i1:i2, i2:]``.
5. codes are un-permuted. The loss ``tr(ΔW·H·ΔWᵀ)`` (ΔW = W − Q·s, H as given) comes for free:
   GPTQ's errors satisfy ΔW = Err·U, so ``‖Err‖²_F = tr(ΔW·(H + λI)·ΔWᵀ)`` and
   ``loss = ‖Err‖²_F − λ‖ΔW‖²_F`` (dead columns contribute nothing to either side). When that
   difference would cancel more than half of ``‖Err‖²`` the trace is computed explicitly instead.

Cholesky and its inverse run on W's device (cuSOLVER on CUDA). The trailing update is computed in
full fp32 (TF32 is turned off for it). ``gptq_quantize_ref`` is the straightforward per-column
implementation (a Python loop per column, as in the record), in any dtype: the float64 ground truth
of the tests and the baseline of the benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from golf_fast.ops.checks import reject_meta
from golf_fast.ops.dispatch import precise_reference
from golf_fast.ops.gptq import MAX_BLOCK_COLS, gptq_block, gptq_block_ref
from golf_fast.quant.formats import QuantizedTensor, qmax, sdclip_scales
from golf_fast.quant.recipe import RECORD_RECIPE as _R

MAX_DAMP = 1.0


class GPTQFactorizationError(RuntimeError):
    """The damped Hessian could not be factorized even with the largest damping tried."""


@dataclass
class GPTQResult:
    """One quantized matrix: codes (N, K) int8 in [−qmax, qmax], scales (N,) fp16, and diagnostics.

    ``loss`` is ``tr(ΔW·H·ΔWᵀ)`` with ΔW = W − codes·scales and the H that was passed in;
    ``damp_used`` the damping fraction that factorized (``damp`` unless it had to be raised, in
    which case ``damp_raised`` is True); ``dead_columns`` the number of zero-diagonal columns.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    bits: int
    loss: float
    damp_used: float
    damp_raised: bool
    dead_columns: int

    def quantized(self) -> QuantizedTensor:
        """The artifact form: ``QuantizedTensor(codes, scales, bits)``."""
        return QuantizedTensor(codes=self.codes, scales=self.scales, bits=self.bits)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.codes.float() * self.scales.float()[:, None]).to(dtype)


@dataclass
class HessianFactor:
    """What step 3 yields for a stack of B Hessians (all K × K)."""

    u: torch.Tensor          # (B, K, K) upper factor of the permuted, damped H⁻¹
    perm: torch.Tensor       # (B, K) int64 act-order permutation
    invperm: torch.Tensor    # (B, K)
    dead: torch.Tensor       # (B, K) bool
    lam: torch.Tensor        # (B,) float64 absolute damping added to the diagonal
    damp_used: list[float]
    damp_raised: list[bool]


# --------------------------------------------------------------------------- Hessian preparation


def lower_triangular_inverse(l: torch.Tensor, leaf: int = 128) -> torch.Tensor:
    """Inverse of a lower-triangular (…, K, K) matrix by 2×2 block recursion, K³/3 flops in GEMMs:
    ``inv([[A, 0], [B, C]]) = [[A⁻¹, 0], [−C⁻¹·B·A⁻¹, C⁻¹]]``; leaves by triangular solves."""
    k = l.shape[-1]
    if k <= leaf:
        eye = torch.eye(k, dtype=l.dtype, device=l.device).expand_as(l)
        return torch.linalg.solve_triangular(l, eye, upper=False)
    h = k // 2
    ai = lower_triangular_inverse(l[..., :h, :h], leaf)
    ci = lower_triangular_inverse(l[..., h:, h:], leaf)
    out = torch.zeros_like(l)
    out[..., :h, :h] = ai
    out[..., h:, h:] = ci
    out[..., h:, :h] = -(ci @ (l[..., h:, :h] @ ai))
    return out


def upper_factor(hd: torch.Tensor, perm: torch.Tensor, route: str) -> Optional[torch.Tensor]:
    """``U = chol(H⁻¹, upper)`` of the damped H permuted by ``perm``, or None if a factorization fails.

    ``"record"``: chol → cholesky_inverse → chol(upper), the reference's route (4K³/3 flops, and
    ``cholesky_inverse`` is slow on some CPU builds). ``"flip"``: with J the reversal permutation,
    J·H·J = L·Lᵀ gives H = R·Rᵀ with R = J·L·J upper, so H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹ = J·L⁻¹·J
    (a positive diagonal, hence the unique factor): one Cholesky and one triangular inverse
    (2K³/3 flops, GEMM-rich). Both give the same U up to rounding (~1e-6 relative in fp32).
    The act-order permutation and J are applied together, as one gather.
    """
    if route == "record":
        chol, info = torch.linalg.cholesky_ex(hd[perm][:, perm])
        if int(info) != 0:
            return None
        u, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(chol), upper=True)
        if int(info) != 0:
            return None
    else:
        rev = perm.flip(0)
        chol, info = torch.linalg.cholesky_ex(hd[rev][:, rev])
        if int(info) != 0:
            return None
        u = lower_triangular_inverse(chol).flip(-2, -1)
    return u if bool(torch.isfinite(u).all()) else None


def _factor_one(h: torch.Tensor, damp: float, act_order: bool, route: str) -> Optional[tuple]:
    """Damp, permute and factorize one (K, K) H (dead columns already fixed); None on failure."""
    diag = torch.diagonal(h)
    lam = damp * diag.mean()
    hd = h.clone()
    torch.diagonal(hd).add_(lam)
    k = h.shape[0]
    if act_order:
        perm = torch.argsort(torch.diagonal(hd), descending=True, stable=True)
    else:
        perm = torch.arange(k, device=h.device)
    u = upper_factor(hd, perm, route)
    return None if u is None else (u, perm, float(lam))


def prepare_hessians(h: torch.Tensor, damp: float, act_order: bool, dtype: torch.dtype = torch.float32,
                     route: str = "flip") -> HessianFactor:
    """Steps 2–3 for a stack ``h`` (B, K, K); raises ``GPTQFactorizationError`` if damping up to
    ``MAX_DAMP`` does not make a Hessian factorizable. ``route``: how U is computed (see
    ``upper_factor``): ``"flip"`` (the driver) or ``"record"`` (the reference)."""
    if route not in ("flip", "record"):
        raise ValueError(f"route: expected 'flip' or 'record', got {route!r}")
    hs = h.to(dtype).clone()
    diag = torch.diagonal(hs, dim1=-2, dim2=-1)
    dead = diag == 0
    diag[dead] = 1
    us, perms, lams, used, raised = [], [], [], [], []
    for b in range(hs.shape[0]):
        d, out = damp, _factor_one(hs[b], damp, act_order, route)
        while out is None and d < MAX_DAMP:
            d = min(MAX_DAMP, max(d, 1e-4) * 2)
            out = _factor_one(hs[b], d, act_order, route)
        if out is None:
            raise GPTQFactorizationError(
                f"H: the Cholesky factorization of Hessian {b} failed even with damp={d} (started at {damp}); "
                "H must be symmetric positive semi-definite (e.g. XᵀX of calibration activations)")
        us.append(out[0])
        perms.append(out[1])
        lams.append(out[2])
        used.append(d)
        raised.append(d != damp)
    perm = torch.stack(perms)
    return HessianFactor(u=torch.stack(us), perm=perm, invperm=torch.argsort(perm, dim=1), dead=dead,
                         lam=torch.tensor(lams, dtype=torch.float64), damp_used=used, damp_raised=raised)


# --------------------------------------------------------------------------- checks


def check_gptq_inputs(w, h, bits, block_size, damp, clip_sigmas, scales, batched: bool, act_order: bool = True
                      ) -> None:
    """Check GPTQ's arguments (``gptq_quantize``'s, or with ``batched`` ``gptq_quantize_batched``'s);
    raises ``TypeError`` / ``ValueError`` naming the argument (``W``, ``H``, ``bits``, ...)."""
    dims = 3 if batched else 2
    if not isinstance(act_order, bool):
        raise TypeError(f"act_order: expected True or False, got {act_order!r}")
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"W: expected a torch.Tensor, got {type(w).__name__}")
    reject_meta(W=w, H=h, scales=scales)
    if not w.is_floating_point():
        raise TypeError(f"W: expected a floating-point tensor, got {w.dtype}")
    if w.dim() != dims or w.shape[-2] < 1 or w.shape[-1] < 2:
        want = "(B, N, K)" if batched else "(N, K)"
        raise ValueError(f"W: expected a {dims}-D {want} tensor with N >= 1 and K >= 2, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("W: contains NaN or inf")
    k = w.shape[-1]
    if not isinstance(h, torch.Tensor):
        raise TypeError(f"H: expected a torch.Tensor, got {type(h).__name__}")
    if not h.is_floating_point():
        raise TypeError(f"H: expected a floating-point tensor, got {h.dtype}")
    want_h = [(k, k)] + ([(w.shape[0], k, k)] if batched else [])
    if tuple(h.shape) not in want_h:
        raise ValueError(f"H: expected shape {' or '.join(map(str, want_h))} (K × K for W with K={k} columns), "
                         f"got {tuple(h.shape)}")
    if h.device != w.device:
        raise ValueError(f"H: expected a tensor on {w.device} like W, got {h.device}")
    if not bool(torch.isfinite(h).all()):
        raise ValueError("H: contains NaN or inf")
    if bool((torch.diagonal(h, dim1=-2, dim2=-1) < 0).any()):
        raise ValueError("H: has a negative diagonal entry; expected a positive semi-definite Hessian")
    qmax(bits)  # validates bits in 2..8
    if not isinstance(block_size, int) or isinstance(block_size, bool) or not 1 <= block_size <= MAX_BLOCK_COLS:
        raise ValueError(f"block_size: expected an int in 1..{MAX_BLOCK_COLS}, got {block_size!r}")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not (0 <= damp <= MAX_DAMP):
        raise ValueError(f"damp: expected a number in [0, {MAX_DAMP}], got {damp!r}")
    if not isinstance(clip_sigmas, (int, float)) or isinstance(clip_sigmas, bool) or not clip_sigmas > 0 \
            or not math.isfinite(clip_sigmas):
        raise ValueError(f"clip_sigmas: expected a positive number, got {clip_sigmas!r}")
    if scales is not None:
        want_s = tuple(w.shape[:-1])
        if not isinstance(scales, torch.Tensor) or not scales.is_floating_point():
            raise TypeError(f"scales: expected a floating-point tensor of shape {want_s} or None")
        if tuple(scales.shape) != want_s:
            raise ValueError(f"scales: expected shape {want_s} (one per row), got {tuple(scales.shape)}")
        if scales.device != w.device:
            raise ValueError(f"scales: expected a tensor on {w.device} like W, got {scales.device}")
        s16 = scales.to(torch.float16)
        if not bool(torch.isfinite(s16).all()) or not bool((s16 > 0).all()):
            raise ValueError("scales: expected positive finite values (after rounding to fp16)")


def gptq_scales(w: torch.Tensor, bits: int, clip_sigmas: float, scales: Optional[torch.Tensor]) -> torch.Tensor:
    """Step 1: ``scales`` as fp16 if given, else the SDClip scales of ``w`` (N, K) → (N,) or of each
    matrix of a stack (B, N, K) → (B, N), float16."""
    if scales is not None:
        return scales.to(torch.float16)
    try:
        if w.dim() == 2:
            return sdclip_scales(w, bits, clip_sigmas)
        return torch.stack([sdclip_scales(m, bits, clip_sigmas) for m in w])
    except ValueError as exc:  # fp16 overflow of a scale: name GPTQ's argument
        raise ValueError(f"W{str(exc)[1:]}" if str(exc).startswith("w:") else str(exc)) from None


# --------------------------------------------------------------------------- the blocked driver


def run_gptq(w: torch.Tensor, factor: HessianFactor, h: torch.Tensor, scales16: torch.Tensor, bits: int,
             block_size: int, backend: str = "auto") -> list[GPTQResult]:
    """Steps 4–5 on a stack ``w`` (B, N, K) with its prepared ``factor``; ``h`` (B, K, K) is the
    Hessian stack as given (used only when the loss must be computed explicitly)."""
    nb, n, k = w.shape
    m = qmax(bits)
    wf = w.float().masked_fill(factor.dead[:, None, :], 0.0)
    wp = torch.gather(wf, 2, factor.perm[:, None, :].expand(nb, n, k)).contiguous()
    s32 = scales16.float()
    u = factor.u
    codes_p = torch.empty((nb, n, k), dtype=torch.int8, device=w.device)
    sum_e2 = torch.zeros(nb, dtype=torch.float64, device=w.device)
    with precise_reference():  # fp32 matmuls in full precision (no TF32); restored afterwards
        for i1 in range(0, k, block_size):
            i2 = min(i1 + block_size, k)
            c, e = gptq_block(wp[:, :, i1:i2], u[:, i1:i2, i1:i2], s32, m, backend=backend)
            codes_p[:, :, i1:i2] = c
            sum_e2 += torch.linalg.vector_norm(e, dim=(1, 2)).double().square()
            if i2 < k:
                if nb == 1:
                    wp[0, :, i2:] -= e[0] @ u[0, i1:i2, i2:]
                else:
                    wp[:, :, i2:] -= torch.bmm(e, u[:, i1:i2, i2:])
    codes = torch.gather(codes_p, 2, factor.invperm[:, None, :].expand(nb, n, k))
    dw = wf - codes.float() * s32[:, :, None]
    dw2 = torch.linalg.vector_norm(dw, dim=(1, 2)).double().square().cpu()
    sum_e2 = sum_e2.cpu()
    results = []
    for b in range(nb):
        lam_term = float(factor.lam[b]) * float(dw2[b])
        if lam_term <= 0.5 * float(sum_e2[b]):
            loss = float(sum_e2[b]) - lam_term
        else:  # heavy cancellation: compute tr(ΔW·H·ΔWᵀ) directly
            d = (w[b].double() - codes[b].double() * s32[b, :, None].double())
            loss = float(((d @ h[b].double()) * d).sum())
        results.append(GPTQResult(codes=codes[b], scales=scales16[b], bits=bits, loss=loss,
                                  damp_used=factor.damp_used[b], damp_raised=factor.damp_raised[b],
                                  dead_columns=int(factor.dead[b].sum())))
    return results


def gptq_quantize(W: torch.Tensor, H: torch.Tensor, bits: int = _R.default_bits, block_size: int = _R.block_size,
                  damp: float = _R.damp, act_order: bool = _R.act_order, clip_sigmas: float = _R.default_clip_sigmas, scales: Optional[torch.Tensor] = None, *,
                  backend: str = "auto") -> GPTQResult:
    """GPTQ-quantize one matrix ``W`` (N, K) with Hessian ``H`` (K, K); see the module docstring.

    ``bits`` 2..8 (codes in ±(2^(bits−1) − 1)), ``block_size`` columns per in-kernel block,
    ``damp`` fraction of mean(diag H) added to the diagonal, ``act_order`` process columns by
    descending diag(H), ``clip_sigmas`` the SDClip k (ignored when ``scales`` (N,) is given).
    Runs on W's device: the Triton kernel on CUDA, the C++ kernel (else the reference) on CPU;
    ``backend`` as in ``golf_fast.ops.gptq.gptq_block``. W and H are not modified.
    """
    check_gptq_inputs(W, H, bits, block_size, damp, clip_sigmas, scales, batched=False, act_order=act_order)
    s16 = gptq_scales(W, bits, clip_sigmas, scales)
    factor = prepare_hessians(H[None], damp, act_order)
    return run_gptq(W[None], factor, H[None], s16[None], bits, block_size, backend)[0]


def gptq_quantize_batched(W: torch.Tensor, H: torch.Tensor, bits: int = _R.default_bits,
                          block_size: int = _R.block_size, damp: float = _R.damp, act_order: bool = _R.act_order,
                          clip_sigmas: float = _R.default_clip_sigmas,
                          scales: Optional[torch.Tensor] = None, *, backend: str = "auto") -> list[GPTQResult]:
    """GPTQ on a stack of same-shape matrices ``W`` (B, N, K): one kernel launch and one batched GEMM
    per block for all of them. ``H`` is (B, K, K), or (K, K) shared by all (factorized once);
    ``scales`` None or (B, N). Returns one ``GPTQResult`` per matrix."""
    check_gptq_inputs(W, H, bits, block_size, damp, clip_sigmas, scales, batched=True, act_order=act_order)
    s16 = gptq_scales(W, bits, clip_sigmas, scales)
    nb = W.shape[0]
    if H.dim() == 2:
        f = prepare_hessians(H[None], damp, act_order)
        factor = HessianFactor(u=f.u.expand(nb, -1, -1), perm=f.perm.expand(nb, -1), invperm=f.invperm.expand(nb, -1),
                               dead=f.dead.expand(nb, -1), lam=f.lam.expand(nb), damp_used=f.damp_used * nb,
                               damp_raised=f.damp_raised * nb)
        H = H[None].expand(nb, -1, -1)
    else:
        factor = prepare_hessians(H, damp, act_order)
    return run_gptq(W, factor, H, s16, bits, block_size, backend)


# --------------------------------------------------------------------------- reference


def gptq_quantize_ref(W: torch.Tensor, H: torch.Tensor, bits: int = _R.default_bits, block_size: int = _R.block_size,
                      damp: float = _R.damp, act_order: bool = _R.act_order, clip_sigmas: float = _R.default_clip_sigmas, scales: Optional[torch.Tensor] = None, *,
                      dtype: torch.dtype = torch.float64, compute_loss: bool = True) -> GPTQResult:
    """The straightforward implementation: parameter-golf's loop, one Python iteration per column, in
    ``dtype`` (float64 for the tests' ground truth, float32 for the benchmark baseline). Scales are
    the same fp16 SDClip scales; the loss is computed explicitly as tr(ΔW·H·ΔWᵀ) in float64."""
    check_gptq_inputs(W, H, bits, block_size, damp, clip_sigmas, scales, batched=False, act_order=act_order)
    s16 = gptq_scales(W, bits, clip_sigmas, scales)
    factor = prepare_hessians(H[None], damp, act_order, dtype=dtype, route="record")
    n, k = W.shape
    m = qmax(bits)
    perm, invperm, u = factor.perm[0], factor.invperm[0], factor.u[0]
    wd = W.to(dtype).masked_fill(factor.dead[0][None, :], 0.0)
    work = wd[:, perm].clone()
    sf = s16.to(dtype)
    q = torch.zeros((n, k), dtype=torch.int8, device=W.device)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        c, err = gptq_block_ref(work[None, :, i1:i2], u[None, i1:i2, i1:i2], sf[None], m)
        q[:, i1:i2] = c[0]
        if i2 < k:
            work[:, i2:] -= err[0] @ u[i1:i2, i2:]
    codes = q[:, invperm]
    loss = float("nan")
    if compute_loss:
        d = W.double() - codes.double() * s16.double()[:, None]
        loss = float(((d @ H.double()) * d).sum())
    return GPTQResult(codes=codes, scales=s16, bits=bits, loss=loss, damp_used=factor.damp_used[0],
                      damp_raised=factor.damp_raised[0], dead_columns=int(factor.dead[0].sum()))
