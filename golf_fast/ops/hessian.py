"""Hessian accumulation for GPTQ: ``H += scale · XᵀX`` in place (a symmetric rank-k update).

Math, shapes and dtypes
-----------------------
``H`` is the (K, K) float32 Hessian of one quantized matrix, ``X`` its input activations, (T, K)
or (..., K) flattened to (T, K), in bfloat16, float16 or float32. The op computes, in fp32
accumulation, ``H ← H + scale · Σ_t x_tᵀ x_t``. ``H`` is symmetric by contract: only its lower
triangle (row ≥ column) is read, only the lower triangle of XᵀX is computed, and the upper
triangle of the result is written once as the mirror of the lower one, so H stays exactly
symmetric. bf16 and fp16 inputs are exact in fp32, so against ``X.float().T @ X.float()`` only
the summation order differs; the tests hold it to a relative Frobenius error ≤ 1e-5 against a
float64 computation.

Kernels (``csrc/``)
-------------------
This family has no Triton kernel, so it is one file: its kernels are C++/CUDA in ``csrc/``
(there is no ``hessian_kernels.py``); this module holds the reference, the backends, the op
registration and the public function, like ``ops/<family>.py`` of the Triton families.

* CPU, ``golf_fast::_hessian_accumulate_cpp`` (csrc/hessian_cpu.cpp): lower-triangle tiles only,
  packed and converted to fp32 512 tokens at a time (never a whole fp32 copy of X), an 8×48
  register micro-kernel chosen at run time (AVX-512, AVX2+FMA, or portable C++), tokens split
  over threads (``torch.get_num_threads()``) with one ordered reduction, mirrored once.
* CUDA, ``golf_fast::_hessian_accumulate_cuda`` (csrc/cuda/hessian.cu + hessian_cuda.cpp):
  bf16/fp16 tensor-core ``mma.sync`` with fp32 accumulation on 128×128 tiles of the lower
  triangle only (the grid enumerates those tiles; no program exists for the other triangle);
  the tensor cores' fp32 accumulation does not round to nearest (its error grows linearly with
  the run length: 3.4e-4 after 73k tokens on an H200), so every 512 tokens the MMA accumulators
  are added into a second fp32 set in shared memory (round to nearest) and restarted at zero;
  split over T into per-split partial tiles reduced in a fixed order by a second kernel, which
  adds into H and mirrors. fp32 X on CUDA runs the reference (``X.float()`` GEMM) with TF32 off
  for the call (under a trainer's TF32 its error was 6.4e-5, over the 1e-5 self-check, on an H200).
* CUDA without the extension's CUDA part (torch without CUDA at build time, nvcc missing, a
  toolkit/torch mismatch): backend ``torch``, the reference's GEMM at full fp32 precision (TF32
  off for the call), chosen by ``auto`` with a logged warning naming why the CUDA kernel is
  missing, so a trainer's Hessian stage still runs.

Naming ladder: kernels above → ``golf_fast::hessian_accumulate_`` (torch.library, in place,
``mutates_args=("H",)``, with a fake) → ``golf_fast.hessian_accumulate_(H, X, scale)``;
reference ``hessian_accumulate_ref``.
"""

from __future__ import annotations

from typing import Optional

import torch

from golf_fast._availability import ext_has_cuda, load_extension
from golf_fast.ops.checks import finite_number, reject_meta, reject_overlap
from golf_fast.ops.dispatch import KernelOp, precise_reference, relative_error_within

INPUT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
TOLERANCE = 1e-5
"""Relative Frobenius error allowed against float64 (self-check and tests)."""


# --------------------------------------------------------------------------- reference


def hessian_accumulate_ref(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    """Eager reference: ``H ← sym(tril(H) + scale · tril(X.float()ᵀ X.float()))`` in place.

    ``X`` is (T, K); the result's upper triangle is the mirror of its lower one.
    """
    xf = X.float()
    lower = torch.tril(H) + scale * torch.tril(xf.T @ xf)
    H.copy_(lower + torch.tril(lower, -1).T)


def _fake(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    return None


# --------------------------------------------------------------------------- backends


def cpp_fast_here() -> Optional[str]:
    """The C++ CPU kernel is used when it has a SIMD micro-kernel for this CPU (AVX-512 or AVX2);
    its portable loop is kept for tests and is slower than the BLAS GEMM of the reference."""
    ok, why = load_extension()
    if not ok:
        return why
    if int(torch.ops.golf_fast._hessian_cpu_isa()) == 0:
        return "this CPU has neither AVX-512 nor AVX2+FMA; the reference (BLAS GEMM) is faster"
    return None


def ext_cuda_ready() -> Optional[str]:
    ok, why = load_extension()
    if not ok:
        return why
    if not ext_has_cuda():
        return "golf_fast._C was built without its CUDA part (torch without CUDA, or nvcc missing at build time)"
    return None if torch.cuda.is_available() else "no CUDA device"


def _cpp(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    torch.ops.golf_fast._hessian_accumulate_cpp(H, X, scale)


def _cuda(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    if X.dtype == torch.float32:  # the tensor-core kernel takes 16-bit inputs; fp32 X is a plain GEMM,
        with precise_reference():  # at full fp32 whatever the caller's TF32 setting (a trainer's is on)
            hessian_accumulate_ref(H, X, scale)
    else:
        torch.ops.golf_fast._hessian_accumulate_cuda(H, X, scale)


def _torch_gemm(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    """The CUDA path without the extension: the reference at full fp32 precision (cuBLAS GEMM)."""
    with precise_reference():
        hessian_accumulate_ref(H, X, scale)


def _selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    # partial 128-wide tiles, K % 8 == 0 (the vectorized load path), a token tail, and T > 2048 so the
    # CUDA kernel splits the tokens and runs its reduction kernel
    k, t = 136, 2101
    a = torch.randn(k, k, device=device)
    x = torch.randn(t, k, device=device).to(dtype if dtype in INPUT_DTYPES else torch.float32)
    return (a @ a.T, x, 0.5)


HESSIAN_OP = KernelOp("hessian_accumulate_", hessian_accumulate_ref, fake=_fake, mutates_args=("H",),
                      selfcheck_inputs=_selfcheck_inputs, compare=relative_error_within(TOLERANCE),
                      selfcheck_dtype_arg=1)  # keyed on X's dtype: H is always fp32
HESSIAN_OP.add_backend("cuda", "cuda", _cuda, available=ext_cuda_ready)
HESSIAN_OP.add_backend("torch", "cuda", _torch_gemm, selfcheck=False)  # the reference itself
HESSIAN_OP.add_backend("cpp", "cpu", _cpp, available=cpp_fast_here)


# --------------------------------------------------------------------------- public API


def check_hessian_inputs(H: torch.Tensor, X: torch.Tensor, scale: float) -> None:
    """Validate ``hessian_accumulate_``'s arguments; errors name the argument and what was expected."""
    if not isinstance(H, torch.Tensor):
        raise TypeError(f"H: expected a torch.Tensor, got {type(H).__name__}")
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X: expected a torch.Tensor, got {type(X).__name__}")
    if H.dtype != torch.float32:
        raise TypeError(f"H: expected dtype torch.float32 (the fp32 Hessian), got {H.dtype}")
    if H.dim() != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H: expected a square (K, K) matrix, got shape {tuple(H.shape)}")
    if not H.is_contiguous():
        raise ValueError("H: expected a contiguous tensor (it is updated in place)")
    if X.dtype not in INPUT_DTYPES:
        raise TypeError(f"X: expected dtype bfloat16, float16 or float32, got {X.dtype}")
    if X.dim() < 2:
        raise ValueError(f"X: expected a (T, K) or (..., K) tensor, got shape {tuple(X.shape)}")
    if X.shape[-1] != H.shape[0]:
        raise ValueError(f"X: expected last dimension K={H.shape[0]} to match H {tuple(H.shape)}, "
                         f"got shape {tuple(X.shape)}")
    if X.device != H.device:
        raise ValueError(f"X: expected a tensor on H's device {H.device}, got {X.device}")
    reject_meta(H=H, X=X)
    try:
        finite_number(scale, "scale", fp32=True)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not torch.compiler.is_compiling():
        reject_overlap(H, "H", X, "X")


def hessian_accumulate_(H: torch.Tensor, X: torch.Tensor, scale: float = 1.0, *, backend: str = "auto",
                        fallback: Optional[str] = None) -> torch.Tensor:
    """``H += scale · XᵀX`` in place (fp32 accumulation) and return ``H``.

    ``H``: (K, K) float32, contiguous, symmetric (only its lower triangle is read; the result is
    exactly symmetric), sharing no memory with ``X`` (an overlap is refused: the kernels read X
    while writing H). ``scale``: a finite number representable in float32. ``X``: (T, K) or
    (..., K) bfloat16, float16 or float32 on H's device.
    ``backend``: ``"auto"`` (the CUDA kernel on CUDA, or the ``"torch"`` GEMM with a warning when the
    extension has no CUDA part; the C++ kernel on CPU), ``"cuda"``, ``"torch"``, ``"cpp"`` or
    ``"reference"``; ``fallback="reference"`` runs the reference when the requested
    kernel is unavailable instead of raising.
    """
    check_hessian_inputs(H, X, scale)
    x2 = X.reshape(-1, X.shape[-1])
    HESSIAN_OP(H, x2, float(scale), backend=backend, fallback=fallback)
    return H
