"""GPTQ's in-block column loop: quantize → error → rank-1 update, all steps of one block in one call.

The math (parameter_golf.md §5.2; IST-DASLab/gptq). After act-order permutation and damping, let
``U = chol(H⁻¹, upper)`` (K × K). GPTQ walks the columns in blocks of ``bs`` (128); for one block
``[i1, i2)`` with ``Wb = W[:, i1:i2]`` (already corrected by the earlier blocks) and
``Ub = U[i1:i2, i1:i2]``, every row ``r`` (scale ``s_r``) runs, for ``j = 0 .. bs−1``::

    q[r, j]   = clamp(round_half_even(Wb[r, j] / s_r), −qmax, qmax)
    err[r, j] = (Wb[r, j] − q[r, j] · s_r) / Ub[j, j]
    Wb[r, c] −= err[r, j] · Ub[j, c]                for c > j

and the caller then applies the lazy batch update ``W[:, i2:] −= err @ U[i1:i2, i2:]`` (one GEMM).
Rows are independent once ``U`` is fixed, so each program (GPU) or thread (CPU) owns a slab of
rows and runs all ``bs`` steps without synchronizing with the others.

Op ``golf_fast::gptq_block(w, u, scales, qmax) -> (codes, err)``, batched over same-shape matrices:
``w`` (B, N, bs) float32 (any strides), ``u`` (B, bs, bs) float32 (only the upper triangle is
read), ``scales`` (B, N) float32 (the fp16 scales, widened) → ``codes`` (B, N, bs) int8 in
[−qmax, qmax] and ``err`` (B, N, bs) float32. ``qmax = 2^(bits−1) − 1``.

Backends: Triton on CUDA (``_gptq_block_kernel`` in ``gptq_kernels.py``: each program holds a BLOCK_N × 128 fp32 tile of
the block in registers, extracts column j with a masked row-sum, writes e_j into the tile's column
j, and stores codes and the error block once at the end), the C++ kernel ``golf_fast::
_gptq_block_cpp`` on CPU (csrc/gptq_cpu.cpp), and the eager reference ``gptq_block_ref``. The
whole-matrix driver is ``golf_fast.quant.gptq``.

Rounding: division is IEEE (``div_rn`` in Triton); round-half-to-even is computed exactly from
``floor`` (``torch.round`` semantics); Triton may contract ``w − q·s`` into an FMA, so the GPU
codes equal the reference's except where a value sits within rounding of a .5 boundary.
"""

from __future__ import annotations

from typing import Optional

import torch

from golf_fast.ops.checks import reject_meta
from golf_fast.ops.dispatch import KernelOp, ext_loaded, triton_in_interpreter, triton_on_cuda
from golf_fast.ops.gptq_kernels import GPTQ_BLOCK_CONFIG, block_rows, _gptq_block_kernel
from golf_fast.ops.triton_support import cdiv, check_launch_device, triton

MAX_BLOCK_COLS = 1024

# --------------------------------------------------------------------------- reference


def gptq_block_ref(w: torch.Tensor, u: torch.Tensor, scales: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager reference: the per-column loop of parameter-golf's ``gptq_quantize_weight``, vectorized
    over rows and matrices. Shapes and dtypes as in the module docstring; works in float64 too."""
    work = w.clone()
    nb, n, bs = w.shape
    codes = torch.empty((nb, n, bs), dtype=torch.int8, device=w.device)
    err = torch.empty_like(work)
    for j in range(bs):
        col = work[:, :, j]
        q = torch.clamp(torch.round(col / scales), -qmax, qmax)
        codes[:, :, j] = q.to(torch.int8)
        e = (col - q * scales) / u[:, j, j][:, None]
        err[:, :, j] = e
        work[:, :, j:] -= e[:, :, None] * u[:, None, j, j:]
    return codes, err


def _gptq_block_fake(w, u, scales, qmax):
    return torch.empty_like(w, dtype=torch.int8), torch.empty_like(w)


# --------------------------------------------------------------------------- launcher


def gptq_block_triton(w: torch.Tensor, u: torch.Tensor, scales: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch ``_gptq_block_kernel`` on a grid (ceil(N / BLOCK_N), B). Inputs assumed valid."""
    check_launch_device(w, u, scales, what="gptq_block")
    nb, n, bs = w.shape
    codes = torch.empty((nb, n, bs), dtype=torch.int8, device=w.device)
    err = torch.empty((nb, n, bs), dtype=torch.float32, device=w.device)
    if n == 0 or nb == 0:
        return codes, err
    u = u if u.stride(2) == 1 else u.contiguous()
    scales = scales if scales.stride(1) == 1 else scales.contiguous()
    block_c = max(16, triton.next_power_of_2(bs))
    block_n = block_rows(block_c)
    num_warps = GPTQ_BLOCK_CONFIG.num_warps if block_c == 128 else 4
    grid = (cdiv(n, block_n), nb)
    _gptq_block_kernel[grid](w, u, scales, codes, err, n, bs, int(qmax),
                             w.stride(0), w.stride(1), w.stride(2), u.stride(0), u.stride(1), scales.stride(0),
                             BLOCK_N=block_n, BLOCK_C=block_c, num_warps=num_warps, num_stages=1)
    return codes, err


# --------------------------------------------------------------------------- op


def gptq_block_compare(out, ref) -> Optional[str]:
    """Self-check: ≤ 1% of codes may differ (a value within rounding of a .5 boundary, then its row's
    later columns); in rows whose codes all agree, err must match to 1e-4 relative."""
    (codes, err), (rcodes, rerr) = out, ref
    if codes.shape != rcodes.shape or err.shape != rerr.shape:
        return f"output shapes {tuple(codes.shape)}/{tuple(err.shape)} vs {tuple(rcodes.shape)}/{tuple(rerr.shape)}"
    if not torch.isfinite(err).all():
        return "kernel err block has NaN/inf"
    differ = codes != rcodes
    frac = float(differ.float().mean())
    if frac > 0.01:
        return f"{int(differ.sum())} of {codes.numel()} codes differ ({frac:.2%} > 1%)"
    clean = ~differ.any(dim=-1)
    if clean.any():
        a, r = err[clean].double(), rerr[clean].double()
        rel = float((a - r).norm() / r.norm().clamp_min(1e-30))
        if rel > 1e-4:
            return f"err block relative error {rel:.3e} > 1e-4 in rows whose codes agree"
    return None


def _selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    n, bs = 37, 128
    x = torch.randn(4 * bs, bs, device=device) @ (torch.eye(bs, device=device) + 0.1 * torch.randn(bs, bs, device=device))
    h = x.T @ x / x.shape[0] + 0.01 * torch.eye(bs, device=device)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    w = torch.randn(2, n, bs, device=device)
    scales = (12.0 * w.std(dim=-1) / 31).half().float()  # an SDClip-like k; the check needs no particular one
    return w, torch.stack([u, u]), scales, 31


GPTQ_BLOCK_OP = KernelOp("gptq_block", gptq_block_ref, fake=_gptq_block_fake,
                         selfcheck_inputs=_selfcheck_inputs, compare=gptq_block_compare)
GPTQ_BLOCK_OP.add_backend("triton", "cuda", gptq_block_triton, available=triton_on_cuda)
GPTQ_BLOCK_OP.add_backend("triton", "cpu", gptq_block_triton, available=triton_in_interpreter)
GPTQ_BLOCK_OP.add_backend("cpp", "cpu", lambda w, u, s, q: torch.ops.golf_fast._gptq_block_cpp(w, u, s, q),
                          available=ext_loaded)


def gptq_block(w: torch.Tensor, u: torch.Tensor, scales: torch.Tensor, qmax: int, *, backend: str = "auto",
               fallback: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run GPTQ's in-block loop on a stack of blocks; see the module docstring for the math.

    ``w`` (B, N, bs) or (N, bs) float32, ``u`` (B, bs, bs) or (bs, bs) float32 (upper triangle
    with a positive diagonal), ``scales`` (B, N) or (N,) float32 (positive), ``qmax`` 1..127.
    Returns ``(codes int8, err float32)`` shaped like ``w``. ``backend``: ``"auto"`` (Triton on
    CUDA; the C++ kernel, else the reference, on CPU), ``"triton"``, ``"cpp"`` or ``"reference"``.
    """
    for name, t in (("w", w), ("u", u), ("scales", scales)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.float32:
            raise TypeError(f"{name}: expected dtype torch.float32, got {t.dtype}")
        if t.device != w.device:
            raise ValueError(f"{name}: expected a tensor on {w.device} like w, got {t.device}")
    reject_meta(w=w, u=u, scales=scales)
    squeeze = w.dim() == 2
    if squeeze:
        w, u, scales = w.unsqueeze(0), u.unsqueeze(0) if u.dim() == 2 else u, scales.unsqueeze(0) if scales.dim() == 1 else scales
    if w.dim() != 3:
        raise ValueError(f"w: expected a (B, N, bs) or (N, bs) tensor, got shape {tuple(w.shape)}")
    nb, n, bs = w.shape
    if not 1 <= bs <= MAX_BLOCK_COLS:
        raise ValueError(f"w: expected 1..{MAX_BLOCK_COLS} block columns, got {bs}")
    if tuple(u.shape) != (nb, bs, bs):
        raise ValueError(f"u: expected shape {(nb, bs, bs)}, got {tuple(u.shape)}")
    if tuple(scales.shape) != (nb, n):
        raise ValueError(f"scales: expected shape {(nb, n)}, got {tuple(scales.shape)}")
    if not isinstance(qmax, int) or isinstance(qmax, bool) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    codes, err = GPTQ_BLOCK_OP(w, u, scales, qmax, backend=backend, fallback=fallback)
    return (codes[0], err[0]) if squeeze else (codes, err)
