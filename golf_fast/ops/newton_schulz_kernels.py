"""Triton kernels of the Newton-Schulz iteration and their shipped configurations.

The launchers, workspaces, references, op registration and the public ``newton_schulz`` are in
``golf_fast.ops.newton_schulz``.

The iteration (on the wide orientation X: (batch, m, n), m <= n; tall inputs are transposed)::

    X0 = G / (‖G‖_F + eps)                      per matrix, in the compute dtype
    for (a, b, c) in coefficients:
        A = X·Xᵀ                                 (m, m), symmetric       _ns_syrk_kernel, ADD_C=False
        B = b·A + c·A·A                          (m, m), symmetric       _ns_syrk_kernel, ADD_C=True
        X = a·X + B·X                            (m, n)                  _ns_update_kernel

Kernels (all batched over the leading dim: grid axis 1 is the matrix index)
----------------------------------------------------------------------------
* ``_ns_sumsq_kernel``: one program per (BLOCK_R × BLOCK_C) tile of G writes that tile's
  Σ x² (x rounded to the compute dtype first, as the eager reference does) to
  ``partials[b, tile]`` (fp32). No atomics, no zeroing: the result is deterministic.
* ``_ns_scale_kernel``: the same tiles; each program sums the matrix's partials (≤ NUM_PARTS,
  a power of two), and writes ``x / (sqrt(Σ) + eps)`` in the compute dtype into X, transposed
  when the input is tall. The norm never visits the host.
* ``_ns_syrk_kernel``: ``out = alpha·S·Sᵀ (+ beta·C)`` for S: (m, k), out/C: (m, m) symmetric.
  Only the lower triangle of BLOCK×BLOCK tiles is launched: program p maps to tile (i, j),
  i >= j, with ``i = floor((sqrt(8p + 1) − 1) / 2)``, ``j = p − i(i+1)/2`` (NeMo's small-matrix
  SYRK mapping; no launched-then-idle programs). Each program stores its tile and, off the
  diagonal, the transposed tile at (j, i). Line 2 uses it with S = C = A: A·A = A·Aᵀ because A
  is symmetric, and the epilogue adds ``b·A[i, j]`` (``alpha = c``, ``beta = b``).
* ``_ns_update_kernel``: ``out = a·X + B·X``; the fp32 accumulator starts from ``a·X`` (one
  pass, no extra read-modify-write), then accumulates B[i, :]·X[:, j] over K = m. The output
  strides may be those of the user's tall (transposed) tensor, so the last step writes the
  result in place of an extra transpose/copy.

Launches per call: 2 + 3·steps (17 for 5 steps), independent of the batch size.

dtypes: G may be any float dtype; the compute dtype (X, A, B) is bfloat16, float16 or
float32 (fp32 ``tl.dot`` uses TF32 tensor cores on the GPU); accumulation is fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import tl, triton_kernel

# --------------------------------------------------------------------------- kernels


@triton_kernel
def _ns_sumsq_kernel(g_ptr, x_ptr, part_ptr, R, C, stride_gb, stride_gr, stride_gc, stride_pb,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """partials[b, tile] = Σ over the tile of G[b] of (x rounded to X's dtype)² in fp32."""
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < R) & (cols[None, :] < C)
    g = tl.load(g_ptr + b.to(tl.int64) * stride_gb + rows[:, None] * stride_gr + cols[None, :] * stride_gc,
                mask=mask, other=0.0)
    x = g.to(x_ptr.dtype.element_ty).to(tl.float32)
    total = tl.sum(tl.sum(x * x, axis=1), axis=0)
    tl.store(part_ptr + b.to(tl.int64) * stride_pb + pid_r * tl.num_programs(1) + pid_c, total)


@triton_kernel
def _ns_scale_kernel(g_ptr, x_ptr, part_ptr, R, C, num_parts, eps, stride_gb, stride_gr, stride_gc, stride_pb,
                     stride_xb, stride_xr, stride_xc,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, NUM_PARTS: tl.constexpr):
    """X[b] (tile) = x / (sqrt(Σ partials[b]) + eps), x = G[b] rounded to X's dtype.

    ``stride_xr``/``stride_xc`` are X's strides for G's row/column index, so a tall G is
    written transposed.
    """
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    b = tl.program_id(2)
    parts = tl.arange(0, NUM_PARTS)
    p = tl.load(part_ptr + b.to(tl.int64) * stride_pb + parts, mask=parts < num_parts, other=0.0)
    inv = 1.0 / (tl.sqrt(tl.sum(p, axis=0)) + eps)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows[:, None] < R) & (cols[None, :] < C)
    g = tl.load(g_ptr + b.to(tl.int64) * stride_gb + rows[:, None] * stride_gr + cols[None, :] * stride_gc,
                mask=mask, other=0.0)
    x = g.to(x_ptr.dtype.element_ty).to(tl.float32) * inv
    tl.store(x_ptr + b.to(tl.int64) * stride_xb + rows[:, None] * stride_xr + cols[None, :] * stride_xc,
             x.to(x_ptr.dtype.element_ty), mask=mask)


@triton_kernel
def _ns_syrk_kernel(s_ptr, c_ptr, out_ptr, M, K, alpha, beta, stride_sb, stride_sm, stride_cb, stride_cm,
                    stride_ob, stride_om,
                    ADD_C: tl.constexpr, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[b] = alpha·S[b]·S[b]ᵀ (+ beta·C[b]); lower-triangle tiles only, mirrored on store."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    # Tile (ti, tj), ti >= tj, of the lower triangle from the linear program id; the float
    # square root is corrected by one step either way so the mapping is exact.
    ti = ((tl.sqrt((8 * pid + 1).to(tl.float32)) - 1.0) * 0.5).to(tl.int32)
    ti = tl.where((ti + 1) * (ti + 2) // 2 <= pid, ti + 1, ti)
    ti = tl.where(ti * (ti + 1) // 2 > pid, ti - 1, ti)
    tj = pid - ti * (ti + 1) // 2
    rows_i = ti * BLOCK + tl.arange(0, BLOCK)
    rows_j = tj * BLOCK + tl.arange(0, BLOCK)
    ks = tl.arange(0, BLOCK_K)
    s_base = s_ptr + b * stride_sb
    acc = tl.zeros((BLOCK, BLOCK), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + ks
        kmask = kk[None, :] < K
        si = tl.load(s_base + rows_i[:, None] * stride_sm + kk[None, :],
                     mask=(rows_i[:, None] < M) & kmask, other=0.0)
        sj = tl.load(s_base + rows_j[:, None] * stride_sm + kk[None, :],
                     mask=(rows_j[:, None] < M) & kmask, other=0.0)
        acc = tl.dot(si, tl.trans(sj), acc)
    acc = acc * alpha
    in_i = rows_i[:, None] < M
    in_j = rows_j[None, :] < M
    if ADD_C:
        cij = tl.load(c_ptr + b * stride_cb + rows_i[:, None] * stride_cm + rows_j[None, :],
                      mask=in_i & in_j, other=0.0)
        acc += beta * cij.to(tl.float32)
    out = acc.to(out_ptr.dtype.element_ty)
    o_base = out_ptr + b * stride_ob
    tl.store(o_base + rows_i[:, None] * stride_om + rows_j[None, :], out, mask=in_i & in_j)
    mirror = (rows_j[:, None] < M) & (rows_i[None, :] < M) & (tl.full((BLOCK, BLOCK), 0, tl.int32) + ti > tj)
    tl.store(o_base + rows_j[:, None] * stride_om + rows_i[None, :], tl.trans(out), mask=mirror)


@triton_kernel
def _ns_update_kernel(b_ptr, x_ptr, out_ptr, M, N, alpha, stride_bb, stride_bm, stride_xb, stride_xm,
                      stride_ob, stride_om, stride_on,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """out[b] = alpha·X[b] + B[b]·X[b]; B: (M, M), X and out: (M, N); acc starts at alpha·X."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    tiles_n = (N + BLOCK_N - 1) // BLOCK_N
    pid_m = pid // tiles_n
    pid_n = pid % tiles_n
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    x_base = x_ptr + b * stride_xb
    b_base = b_ptr + b * stride_bb
    in_r = rows[:, None] < M
    in_c = cols[None, :] < N
    x0 = tl.load(x_base + rows[:, None] * stride_xm + cols[None, :], mask=in_r & in_c, other=0.0)
    acc = x0.to(tl.float32) * alpha
    for k0 in range(0, M, BLOCK_K):
        kk = k0 + ks
        bt = tl.load(b_base + rows[:, None] * stride_bm + kk[None, :],
                     mask=in_r & (kk[None, :] < M), other=0.0)
        xt = tl.load(x_base + kk[:, None] * stride_xm + cols[None, :],
                     mask=(kk[:, None] < M) & in_c, other=0.0)
        acc = tl.dot(bt, xt, acc)
    tl.store(out_ptr + b * stride_ob + rows[:, None] * stride_om + cols[None, :] * stride_on,
             acc.to(out_ptr.dtype.element_ty), mask=in_r & in_c)


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class NSTiles:
    """Tile sizes of one launch plan (all powers of two, dot dims >= 16)."""

    elementwise_r: int = 64
    elementwise_c: int = 128
    syrk: int = 64
    syrk_k: int = 64
    update_m: int = 64
    update_n: int = 128
    update_k: int = 64
    elementwise_warps: int = 8
    syrk_warps: int = 4
    update_warps: int = 4
    stages: int = 3


SMALL_TILES = NSTiles()
"""m < 1024 (every parameter-golf bank): 64-row tiles keep >= 100 programs busy at batch 3."""

LARGE_TILES = NSTiles(syrk=128, update_m=128, update_n=128, syrk_warps=8, update_warps=8)
"""m >= 1024: 128-row tiles (fewer programs, more reuse per loaded byte)."""


def pick_tiles(m: int) -> NSTiles:
    return LARGE_TILES if m >= 1024 else SMALL_TILES


TRITON_PTR_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32"}


def _configs(tiles: NSTiles, tag: str, dt: torch.dtype = torch.bfloat16) -> tuple[KernelConfig, ...]:
    p = TRITON_PTR_TYPES[dt]
    syrk_sig = {"s_ptr": p, "c_ptr": p, "out_ptr": p, "M": "i32", "K": "i32", "alpha": "fp32", "beta": "fp32",
                **{f"stride_{t}{d}": "i32" for t in "sco" for d in "bm"},
                "ADD_C": "constexpr", "BLOCK": "constexpr", "BLOCK_K": "constexpr"}
    upd_sig = {"b_ptr": p, "x_ptr": p, "out_ptr": p, "M": "i32", "N": "i32", "alpha": "fp32",
               **{f"stride_{t}{d}": "i32" for t in "bx" for d in "bm"},
               "stride_ob": "i32", "stride_om": "i32", "stride_on": "constexpr",
               "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr"}
    ew = {"BLOCK_R": tiles.elementwise_r, "BLOCK_C": tiles.elementwise_c}
    sumsq_sig = {"g_ptr": "*fp32", "x_ptr": p, "part_ptr": "*fp32", "R": "i32", "C": "i32", "stride_gb": "i32",
                 "stride_gr": "i32", "stride_gc": "i32", "stride_pb": "i32", "BLOCK_R": "constexpr",
                 "BLOCK_C": "constexpr"}
    scale_sig = {"g_ptr": "*fp32", "x_ptr": p, "part_ptr": "*fp32", "R": "i32", "C": "i32", "num_parts": "i32",
                 "eps": "fp32", "stride_gb": "i32", "stride_gr": "i32", "stride_gc": "i32", "stride_pb": "i32",
                 "stride_xb": "i32", "stride_xr": "i32", "stride_xc": "i32", "BLOCK_R": "constexpr",
                 "BLOCK_C": "constexpr", "NUM_PARTS": "constexpr"}
    # What the launcher specializes at run time for the record's shapes (16-byte aligned buffers,
    # dims and row strides multiples of 16); without it the compile would not be what runs.
    def div16(sig: dict[str, str]) -> tuple[str, ...]:
        return tuple(k for k, v in sig.items() if v != "constexpr" and k not in ("alpha", "beta", "eps")
                     and k != "num_parts")

    return (
        KernelConfig(f"ns_sumsq{tag}", _ns_sumsq_kernel, sumsq_sig, dict(ew), num_warps=tiles.elementwise_warps,
                     num_stages=1,
                     divisible_by_16=div16(sumsq_sig)),
        KernelConfig(f"ns_scale{tag}", _ns_scale_kernel, scale_sig, {**ew, "NUM_PARTS": 64},
                     num_warps=tiles.elementwise_warps, num_stages=1, divisible_by_16=div16(scale_sig)),
        KernelConfig(f"ns_gram{tag}", _ns_syrk_kernel, syrk_sig,
                     {"ADD_C": False, "BLOCK": tiles.syrk, "BLOCK_K": tiles.syrk_k},
                     num_warps=tiles.syrk_warps, num_stages=tiles.stages, uses_matmul=True,
                     divisible_by_16=div16(syrk_sig)),
        KernelConfig(f"ns_poly{tag}", _ns_syrk_kernel, syrk_sig,
                     {"ADD_C": True, "BLOCK": tiles.syrk, "BLOCK_K": tiles.syrk_k},
                     num_warps=tiles.syrk_warps, num_stages=tiles.stages, uses_matmul=True,
                     divisible_by_16=div16(syrk_sig)),
        KernelConfig(f"ns_update{tag}", _ns_update_kernel, upd_sig,
                     {"stride_on": 1, "BLOCK_M": tiles.update_m, "BLOCK_N": tiles.update_n,
                      "BLOCK_K": tiles.update_k},
                     num_warps=tiles.update_warps, num_stages=tiles.stages, uses_matmul=True,
                     divisible_by_16=div16(upd_sig)),
    )


SHIPPED_CONFIGS = _configs(SMALL_TILES, "") + _configs(LARGE_TILES, "_large")[2:]
"""The bf16 configurations the launchers use (fp32 momentum in, bf16 compute); ``golf-fast
inspect`` compiles each one for sm_90. The elementwise kernels share one config for all m."""
