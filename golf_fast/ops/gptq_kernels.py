"""Triton kernel of GPTQ's in-block column loop and its shipped configuration.

The math, the reference, the launcher, the op registration and the public ``gptq_block`` are in
``golf_fast.ops.gptq``.
"""

from __future__ import annotations

from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import tl, triton_kernel


@triton_kernel
def _gptq_block_kernel(w_ptr, u_ptr, s_ptr, codes_ptr, err_ptr, N, BS, QMAX,
                       stride_wb, stride_wn, stride_wc, stride_ub, stride_un, stride_sb,
                       BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Program (pid_n, b) runs all BS steps for rows [pid_n·BLOCK_N, +BLOCK_N) of matrix b.

    codes and err are contiguous (B, N, BS). The W tile lives in registers; after step j its
    column j holds err[:, j] (column j is never read again), so the tile ends as the error block.
    """
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_C)
    rmask = rows < N
    cmask = cols < BS
    mask = rmask[:, None] & cmask[None, :]
    w_offs = b * stride_wb + rows[:, None].to(tl.int64) * stride_wn + cols[None, :] * stride_wc
    tile = tl.load(w_ptr + w_offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + b * stride_sb + rows, mask=rmask, other=1.0).to(tl.float32)
    qt = tl.full((BLOCK_N, BLOCK_C), 0.0, tl.float32)
    lim = QMAX * 1.0
    u_base = u_ptr + b * stride_ub
    for j in range(0, BS):
        sel = cols[None, :] == j
        wj = tl.sum(tl.where(sel, tile, 0.0), axis=1)
        urow = tl.load(u_base + j * stride_un + cols, mask=(cols > j) & cmask, other=0.0)
        d = tl.load(u_base + j * stride_un + j)
        v = tl.math.div_rn(wj, s)
        fl = tl.floor(v)
        frac = v - fl
        odd = (fl - 2.0 * tl.floor(fl * 0.5)) == 1.0
        q = tl.where((frac > 0.5) | ((frac == 0.5) & odd), fl + 1.0, fl)
        q = tl.minimum(tl.maximum(q, -lim), lim)
        e = tl.math.div_rn(wj - q * s, d)
        tile = tl.where(sel, e[:, None], tile - e[:, None] * urow[None, :])
        qt = tl.where(sel, q[:, None], qt)
    out_offs = b * N * BS + rows[:, None].to(tl.int64) * BS + cols[None, :]
    tl.store(err_ptr + out_offs, tile, mask=mask)
    tl.store(codes_ptr + out_offs, qt.to(tl.int8), mask=mask)


def block_rows(block_c: int) -> int:
    """Rows per program: a BLOCK_N × BLOCK_C fp32 tile of at most 2048 elements (16 × 128)."""
    return max(1, min(16, 2048 // block_c))


GPTQ_BLOCK_CONFIG = KernelConfig(
    name="gptq_block", kernel=_gptq_block_kernel,
    signature={"w_ptr": "*fp32", "u_ptr": "*fp32", "s_ptr": "*fp32", "codes_ptr": "*i8", "err_ptr": "*fp32",
               "N": "i32", "BS": "i32", "QMAX": "i32", "stride_wb": "i64", "stride_wn": "i32",
               "stride_wc": "i32", "stride_ub": "i64", "stride_un": "i32", "stride_sb": "i32",
               "BLOCK_N": "constexpr", "BLOCK_C": "constexpr"},
    constexprs={"BLOCK_N": 16, "BLOCK_C": 128}, num_warps=4, num_stages=1, uses_matmul=False)

SHIPPED_CONFIGS = (GPTQ_BLOCK_CONFIG,)
"""Every configuration the launcher uses for the default block size (128)."""
