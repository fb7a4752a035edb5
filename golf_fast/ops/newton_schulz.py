"""Newton-Schulz orthogonalization (Muon's ``zeropower_via_newtonschulz5``), batched.

Math
----
For each matrix G (R × C) of the input (2-D, or a stack (..., R, C)): work on X = G, or Gᵀ
when R > C (so X is wide, m = min(R, C) rows), in the compute dtype::

    X ← X / (‖X‖_F + eps)
    for (a, b, c) in coefficients:          # one tuple per step
        A = X·Xᵀ
        B = b·A + c·A·A
        X = a·X + B·X

and transpose back. The result approximates U·Vᵀ of G = U·S·Vᵀ (singular values pushed
towards 1). Coefficient sets: ``"polar_express"`` (five different tuples, parameter-golf's
current records; steps ≤ 5), ``"quintic"`` ((3.4445, −4.7750, 2.0315) every step), or an
explicit list of (a, b, c) tuples (its first ``steps`` tuples are used).

Implementations
---------------
* ``newton_schulz_ref``: eager PyTorch, written like the records' function; with
  ``dtype=torch.float64`` it is the float64 ground truth (``newton_schulz_f64``).
* the Triton kernels of ``golf_fast.ops.newton_schulz_triton`` (GPU; interpreter on CPU):
  symmetric X·Xᵀ and b·A + c·A·A computing one triangle of tiles, a·X + B·X with the
  accumulator started at a·X, normalization on the device, 2 + 3·steps launches per call for
  the whole batch, preallocated workspaces (CUDA-graph capturable).

Naming ladder: ``_ns_*_kernel`` → ``newton_schulz_triton`` → ``golf_fast::newton_schulz``
(torch.library; flat coefficient list) → ``golf_fast.newton_schulz``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from golf_fast.ops.dispatch import KernelOp, relative_error_within, triton_in_interpreter, triton_on_cuda
from golf_fast.ops.newton_schulz_triton import (
    SHIPPED_CONFIGS,
    launches_per_call,
    newton_schulz_triton,
)

__all__ = ["newton_schulz", "newton_schulz_ref", "newton_schulz_f64", "resolve_coefficients", "POLAR_EXPRESS",
           "QUINTIC", "SHIPPED_CONFIGS", "launches_per_call"]

POLAR_EXPRESS: tuple[tuple[float, float, float], ...] = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
"""Polar Express coefficients, one tuple per step (parameter-golf R0611, modded-nanogpt)."""

QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
"""Keller Jordan's quintic coefficients, repeated every step."""

Coefficients = Union[str, Sequence[Sequence[float]]]
COMPUTE_DTYPES = (torch.bfloat16, torch.float16, torch.float32, torch.float64)


def resolve_coefficients(steps: int, coefficients: Coefficients) -> list[tuple[float, float, float]]:
    """The (a, b, c) tuple of each of ``steps`` steps; errors name the bad argument."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if isinstance(coefficients, str):
        if coefficients == "polar_express":
            if steps > len(POLAR_EXPRESS):
                raise ValueError(f"steps: 'polar_express' defines {len(POLAR_EXPRESS)} steps, got steps={steps}; "
                                 "pass an explicit list of (a, b, c) tuples for more")
            return [tuple(t) for t in POLAR_EXPRESS[:steps]]
        if coefficients == "quintic":
            return [QUINTIC] * steps
        raise ValueError(f"coefficients: expected 'polar_express', 'quintic' or a list of (a, b, c) tuples, "
                         f"got {coefficients!r}")
    try:
        tuples = [tuple(float(v) for v in t) for t in coefficients]
    except (TypeError, ValueError):
        raise ValueError(f"coefficients: expected a list of (a, b, c) number tuples, got {coefficients!r}") from None
    if any(len(t) != 3 for t in tuples):
        raise ValueError(f"coefficients: every tuple must have 3 numbers (a, b, c), got {coefficients!r}")
    if len(tuples) < steps:
        raise ValueError(f"steps: {steps} steps need {steps} coefficient tuples, got {len(tuples)}")
    return tuples[:steps]


# --------------------------------------------------------------------------- references


def _ns_eager(G: torch.Tensor, coeffs: Sequence[tuple[float, float, float]], eps: float,
              dtype: torch.dtype) -> torch.Tensor:
    X = G.to(dtype)
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    for a, b, c in coeffs:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X.contiguous()


def newton_schulz_ref(G: torch.Tensor, steps: int = 5, coefficients: Coefficients = "polar_express",
                      eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Eager PyTorch Newton-Schulz computed in ``dtype`` (the records' function, batched)."""
    _check_input(G)
    return _ns_eager(G, resolve_coefficients(steps, coefficients), eps, dtype)


def newton_schulz_f64(G: torch.Tensor, steps: int = 5, coefficients: Coefficients = "polar_express",
                      eps: float = 1e-7) -> torch.Tensor:
    """The float64 ground truth: the same iteration with every operation in float64."""
    return newton_schulz_ref(G, steps, coefficients, eps, torch.float64)


def _ns_op_ref(G: torch.Tensor, coefficients: list[float], eps: float, dtype: torch.dtype) -> torch.Tensor:
    coeffs = [tuple(coefficients[i:i + 3]) for i in range(0, len(coefficients), 3)]
    return _ns_eager(G, coeffs, eps, dtype)


def _ns_fake(G: torch.Tensor, coefficients: list[float], eps: float, dtype: torch.dtype) -> torch.Tensor:
    return G.new_empty(G.shape, dtype=dtype)


def _selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    G = torch.randn(3, 72, 40, device=device, dtype=torch.float32)  # tall, odd tiles, batched
    flat = [v for t in POLAR_EXPRESS for v in t]
    return (G, flat, 1e-7, torch.bfloat16)


# Self-check tolerance: two correct bf16 computations of 5 Polar Express steps on the check input
# differ by 0.045-0.048 (relative Frobenius; the kernel rounds once per line, eager PyTorch after
# every op), while one missing mirrored 16x16 tile of A already gives 0.39.
SELFCHECK_TOLERANCE = 0.15

NS_OP = KernelOp("newton_schulz", _ns_op_ref, fake=_ns_fake, selfcheck_inputs=_selfcheck_inputs,
                 compare=relative_error_within(SELFCHECK_TOLERANCE))
NS_OP.add_backend("triton", "cuda", newton_schulz_triton, available=triton_on_cuda)
NS_OP.add_backend("triton", "cpu", newton_schulz_triton, available=triton_in_interpreter)


# --------------------------------------------------------------------------- public API


def _check_input(G: torch.Tensor, name: str = "G") -> None:
    if not isinstance(G, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(G).__name__}")
    if not G.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {G.dtype}")
    if G.dim() < 2:
        raise ValueError(f"{name}: expected a 2-D matrix or a (..., rows, cols) stack of matrices, "
                         f"got shape {tuple(G.shape)}")


def newton_schulz(G: torch.Tensor, steps: int = 5, coefficients: Coefficients = "polar_express",
                  eps: float = 1e-7, dtype: torch.dtype = torch.bfloat16, *, backend: str = "auto",
                  fallback: Optional[str] = None) -> torch.Tensor:
    """Orthogonalize ``G`` (2-D, or a stack (..., R, C) of matrices) by Newton-Schulz.

    Drop-in for the records' ``zeropower_via_newtonschulz5(G, steps)``: the iteration in the
    module docstring, computed in ``dtype`` (bfloat16 by default; float16, float32 and, on the
    reference only, float64 also work) with fp32 accumulation, returned in ``dtype`` with the
    shape of ``G``. ``eps`` guards the normalization (a zero matrix gives zeros).

    ``backend``: ``"auto"`` (the Triton kernels on CUDA tensors; the eager reference on CPU
    unless ``TRITON_INTERPRET=1``), ``"triton"`` or ``"reference"``. On CUDA the call does not
    synchronize with the host and, after the first call per shape, does not allocate except
    for its output, so it can be captured in a CUDA graph.
    """
    _check_input(G)
    coeffs = resolve_coefficients(steps, coefficients)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype: expected one of {COMPUTE_DTYPES}, got {dtype!r}")
    if dtype == torch.float64 and backend != "reference" and G.device.type == "cuda":
        raise ValueError("dtype: the Triton kernels compute in bfloat16, float16 or float32; for float64 pass "
                         "backend='reference'")
    flat = [float(v) for t in coeffs for v in t]
    return NS_OP(G, flat, float(eps), dtype, backend=backend, fallback=fallback)
