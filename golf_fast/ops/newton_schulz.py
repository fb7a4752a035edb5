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
* the Triton kernels of ``golf_fast.ops.newton_schulz_kernels`` (GPU; interpreter on CPU),
  launched by ``newton_schulz_triton`` below:
  symmetric X·Xᵀ and b·A + c·A·A computing one triangle of tiles, a·X + B·X with the
  accumulator started at a·X, normalization on the device, 2 + 3·steps launches per call for
  the whole batch, preallocated workspaces (CUDA-graph capturable).

Workspaces: ``NSWorkspace`` holds X (two ping-pong buffers), A, B and the partial sums for
one (device, stream, dtype, batch, m, n); ``workspace()`` caches them, so the iteration loop
launches kernels on preallocated buffers only (it allocates nothing and never synchronizes
with the host; a whole call can be captured in a CUDA graph). Concurrent calls with the same
shape on the same stream must not overlap (they cannot: a stream is ordered).

Naming ladder: ``_ns_*_kernel`` → ``newton_schulz_triton`` → ``golf_fast::newton_schulz``
(torch.library; flat coefficient list) → ``golf_fast.newton_schulz``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from golf_fast.ops.checks import FP32_MAX, reject_meta
from golf_fast.ops.dispatch import (KernelOp, KernelSelfCheckError, precise_reference, refuse_selfcheck_in_capture,
                                    relative_error_within, triton_in_interpreter, triton_on_cuda)
from golf_fast.ops.dispatch import config as dispatch_config
from golf_fast.ops.newton_schulz_kernels import (TRITON_PTR_TYPES, NSTiles, _ns_scale_kernel, _ns_sumsq_kernel, _ns_syrk_kernel,
                                                 _ns_update_kernel, pick_tiles)
from golf_fast.ops.triton_support import cdiv, check_launch_device

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
        if any(isinstance(v, bool) for t in coefficients for v in t):
            raise TypeError("bool")
        tuples = [tuple(float(v) for v in t) for t in coefficients]
    except (TypeError, ValueError):
        raise ValueError(f"coefficients: expected a list of (a, b, c) number tuples, got {coefficients!r}") from None
    if not all(math.isfinite(v) for t in tuples for v in t):
        raise ValueError(f"coefficients: expected finite numbers, got {coefficients!r}")
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


# --------------------------------------------------------------------------- workspaces


@dataclass
class NSWorkspace:
    """Preallocated buffers of one (device, stream, dtype, batch, m, n) problem."""

    x: tuple[torch.Tensor, torch.Tensor]  # (batch, m, n) ping-pong iterates
    a: torch.Tensor  # (batch, m, m) X·Xᵀ
    b: torch.Tensor  # (batch, m, m) b·A + c·A·A
    partials: torch.Tensor  # (batch, parts) fp32 sums of squares


_WORKSPACES: "OrderedDict[tuple, NSWorkspace]" = OrderedDict()
MAX_CACHED_WORKSPACES = 16


def _stream_key(device: torch.device) -> Optional[int]:
    if device.type != "cuda":
        return None
    return torch.cuda.current_stream(device).stream_id


def workspace(device: torch.device, dtype: torch.dtype, batch: int, m: int, n: int, parts: int) -> NSWorkspace:
    """The cached workspace for this problem (allocated on first use, LRU of 16 entries)."""
    key = (str(device), _stream_key(device), dtype, batch, m, n, parts)
    ws = _WORKSPACES.get(key)
    if ws is None:
        x = tuple(torch.empty((batch, m, n), dtype=dtype, device=device) for _ in range(2))
        ws = NSWorkspace(x=x, a=torch.empty((batch, m, m), dtype=dtype, device=device),
                         b=torch.empty((batch, m, m), dtype=dtype, device=device),
                         partials=torch.empty((batch, parts), dtype=torch.float32, device=device))
        _WORKSPACES[key] = ws
        while len(_WORKSPACES) > MAX_CACHED_WORKSPACES:
            _WORKSPACES.popitem(last=False)
    else:
        _WORKSPACES.move_to_end(key)
    return ws


def clear_workspaces() -> None:
    """Free every cached workspace (e.g. before a memory-hungry phase)."""
    _WORKSPACES.clear()


# --------------------------------------------------------------------------- launchers


def launches_per_call(steps: int) -> int:
    """Kernel launches of one ``newton_schulz`` call: sumsq + scale + 3 per step."""
    return 2 + 3 * steps


def _next_pow2(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def prepare(g: torch.Tensor, ws: NSWorkspace, eps: float, tiles: NSTiles) -> None:
    """Launch the normalization: ws.x[0] = wide-orientation G / (‖G‖_F + eps) per matrix."""
    batch, r, c = g.shape
    br, bc = tiles.elementwise_r, tiles.elementwise_c
    grid = (cdiv(r, br), cdiv(c, bc), batch)
    parts = grid[0] * grid[1]
    x = ws.x[0]
    tall = r > c
    sxr, sxc = (x.stride(2), x.stride(1)) if tall else (x.stride(1), x.stride(2))
    _ns_sumsq_kernel[grid](g, x, ws.partials, r, c, g.stride(0), g.stride(1), g.stride(2), ws.partials.stride(0),
                           BLOCK_R=br, BLOCK_C=bc, num_warps=tiles.elementwise_warps, num_stages=1)
    _ns_scale_kernel[grid](g, x, ws.partials, r, c, parts, eps, g.stride(0), g.stride(1), g.stride(2),
                           ws.partials.stride(0), x.stride(0), sxr, sxc,
                           BLOCK_R=br, BLOCK_C=bc, NUM_PARTS=_next_pow2(parts), num_warps=tiles.elementwise_warps,
                           num_stages=1)


def iterate(ws: NSWorkspace, coefficients: Sequence[tuple[float, float, float]], out: torch.Tensor,
            out_strides: tuple[int, int, int], tiles: NSTiles) -> None:
    """Launch 3 kernels per (a, b, c); only preallocated buffers are touched.

    The last step writes into ``out`` with ``out_strides`` (batch, row, col of the wide
    orientation), so a tall result lands transposed and in the output dtype directly.
    """
    batch, m, n = ws.x[0].shape
    t = cdiv(m, tiles.syrk)
    syrk_grid = (t * (t + 1) // 2, batch)
    upd_grid = (cdiv(m, tiles.update_m) * cdiv(n, tiles.update_n), batch)
    a_buf, b_buf = ws.a, ws.b
    sw = dict(num_warps=tiles.syrk_warps, num_stages=tiles.stages)
    uw = dict(num_warps=tiles.update_warps, num_stages=tiles.stages)
    steps = len(coefficients)
    for i, (ca, cb, cc) in enumerate(coefficients):
        x = ws.x[i % 2]
        last = i == steps - 1
        dst = out if last else ws.x[(i + 1) % 2]
        dst_strides = out_strides if last else tuple(dst.stride())
        _ns_syrk_kernel[syrk_grid](x, x, a_buf, m, n, 1.0, 0.0, *x.stride()[:2], *x.stride()[:2],
                                   *a_buf.stride()[:2], ADD_C=False, BLOCK=tiles.syrk, BLOCK_K=tiles.syrk_k, **sw)
        _ns_syrk_kernel[syrk_grid](a_buf, a_buf, b_buf, m, m, float(cc), float(cb), *a_buf.stride()[:2],
                                   *a_buf.stride()[:2], *b_buf.stride()[:2],
                                   ADD_C=True, BLOCK=tiles.syrk, BLOCK_K=tiles.syrk_k, **sw)
        _ns_update_kernel[upd_grid](b_buf, x, dst, m, n, float(ca), *b_buf.stride()[:2], *x.stride()[:2],
                                    *dst_strides,
                                    BLOCK_M=tiles.update_m, BLOCK_N=tiles.update_n, BLOCK_K=tiles.update_k, **uw)


def newton_schulz_triton(G: torch.Tensor, coefficients: list[float], eps: float, dtype: torch.dtype,
                         tiles: Optional[NSTiles] = None) -> torch.Tensor:
    """Launch the whole iteration. Inputs are assumed valid (see ``golf_fast.newton_schulz``).

    ``G``: (..., R, C) float; ``coefficients``: flat [a0, b0, c0, a1, ...] (at least one
    tuple); returns a new (..., R, C) tensor in ``dtype``. ``dtype`` is also the compute dtype.
    """
    check_launch_device(G, what="newton_schulz")
    if dtype not in TRITON_PTR_TYPES:
        raise ValueError(f"dtype: the Triton Newton-Schulz computes in bfloat16, float16 or float32, got {dtype}")
    shape = G.shape
    g = G.reshape(-1, shape[-2], shape[-1])
    batch, r, c = g.shape
    out = torch.empty(shape, dtype=dtype, device=G.device)
    if g.numel() == 0:
        return out
    tall = r > c
    m, n = (c, r) if tall else (r, c)
    tiles = tiles or pick_tiles(m)
    if dispatch_config.selfcheck:  # on a GPU, and on CPU tensors under Triton's interpreter
        ensure_tiles_checked(tiles, dtype, G.device)
    parts = cdiv(r, tiles.elementwise_r) * cdiv(c, tiles.elementwise_c)
    ws = workspace(G.device, dtype, batch, m, n, parts)
    out3 = out.view(batch, r, c)
    out_strides = (out3.stride(0), out3.stride(2), out3.stride(1)) if tall else tuple(out3.stride())
    coeffs = [tuple(coefficients[i:i + 3]) for i in range(0, len(coefficients), 3)]
    prepare(g, ws, eps, tiles)
    iterate(ws, coeffs, out3, out_strides, tiles)
    return out


# --------------------------------------------------------------------------- per-tile self-check

_CHECKED_TILES: set = set()


def selfcheck_problem(tiles: NSTiles) -> tuple[int, int, int]:
    """(batch, rows, cols) of the self-check input for ``tiles``: tall (the transposed path), with
    m = 2·syrk + 13 (three row tiles of A: diagonal, off-diagonal and mirrored ones, and a tail) and
    n = m + 59 (two or more update column tiles with a tail)."""
    m = 2 * tiles.syrk + 13
    return 2, m + 59, m


def selfcheck_tiles(tiles: NSTiles, dtype: torch.dtype, device: torch.device, kernel=None) -> None:
    """Run 5 Polar Express steps with ``tiles`` in compute ``dtype`` on :func:`selfcheck_problem`
    and raise :class:`KernelSelfCheckError` unless the kernel's relative Frobenius error against
    float64 is at most twice eager PyTorch's (in ``dtype``; for float32, whose kernel ``tl.dot`` runs
    TF32, eager bfloat16's: TF32 keeps 3 more mantissa bits than bfloat16, so this bound is loose
    for a correct kernel and far below a dropped or transposed tile). The input comes from a
    fixed-seed CPU generator; eager PyTorch runs in full fp32 whatever the TF32 settings.
    ``kernel`` replaces the Triton call (tests)."""
    batch, r, c = selfcheck_problem(tiles)
    gen = torch.Generator().manual_seed(4321)
    G = torch.randn(batch, r, c, generator=gen).to(device)
    coeffs = [tuple(t) for t in POLAR_EXPRESS]
    flat = [v for t in coeffs for v in t]
    run = kernel or (lambda g: newton_schulz_triton(g, flat, 1e-7, dtype, tiles=tiles))
    out = run(G).double().cpu()
    f64 = _ns_eager(G.double().cpu(), coeffs, 1e-7, torch.float64)
    with precise_reference():
        eager = _ns_eager(G, coeffs, 1e-7, torch.bfloat16 if dtype == torch.float32 else dtype).double().cpu()
    err_k = float((out - f64).norm() / f64.norm())
    err_e = float((eager - f64).norm() / f64.norm())
    if not (err_k <= 2 * err_e):  # also catches NaN
        raise KernelSelfCheckError(
            f"golf_fast::newton_schulz tiles {tiles} on {device} ({dtype}, input {tuple(G.shape)}) disagrees with "
            f"float64 on the first-use self-check: relative error {err_k:.3e} > 2 × eager's {err_e:.3e}. Pass "
            f"backend='reference' to run the eager reference, and report the versions printed by "
            f"golf_fast.status().")


def ensure_tiles_checked(tiles: NSTiles, dtype: torch.dtype, device: torch.device) -> None:
    """:func:`selfcheck_tiles` once per (tiles, compute dtype, device)."""
    key = (tiles, dtype, str(device))
    if key in _CHECKED_TILES:
        return
    refuse_selfcheck_in_capture(f"golf_fast::newton_schulz tiles syrk={tiles.syrk} ({dtype})", device)
    _CHECKED_TILES.add(key)  # before the run: the check's own launches must not recurse into it
    try:
        selfcheck_tiles(tiles, dtype, device)
    except BaseException:
        _CHECKED_TILES.discard(key)
        raise


# --------------------------------------------------------------------------- op


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

    With the defaults this is the R0611 record's ``zeropower_via_newtonschulz5(G, steps)`` (Polar
    Express; on CPU ``auto`` runs it op for op). The root train_gpt.py's function of that name uses
    the quintic coefficients: pass ``coefficients="quintic"`` (same math; bf16 rounding of one
    product differs). The iteration in the module docstring, computed in ``dtype`` (bfloat16 by default; float16, float32 and, on the
    reference only, float64 also work) with fp32 accumulation, returned in ``dtype`` with the
    shape of ``G``. ``eps`` guards the normalization (a zero matrix gives zeros).

    ``backend``: ``"auto"`` (the Triton kernels on CUDA tensors; the eager reference on CPU
    unless ``TRITON_INTERPRET=1``), ``"triton"`` or ``"reference"``. On CUDA the call does not
    synchronize with the host and, after the first call per shape, does not allocate except
    for its output, so it can be captured in a CUDA graph.
    """
    _check_input(G)
    coeffs = resolve_coefficients(steps, coefficients)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps <= FP32_MAX:
        raise ValueError(f"eps: expected a finite number >= 0, got {eps!r}")
    reject_meta(G=G)
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"dtype: expected one of {COMPUTE_DTYPES}, got {dtype!r}")
    if dtype == torch.float64 and backend != "reference" and G.device.type == "cuda":
        raise ValueError("dtype: the Triton kernels compute in bfloat16, float16 or float32; for float64 pass "
                         "backend='reference'")
    flat = [float(v) for t in coeffs for v in t]
    return NS_OP(G, flat, float(eps), dtype, backend=backend, fallback=fallback)
