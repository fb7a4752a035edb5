"""Triton kernel of the fused LeakyReLU² MLP and its shipped configurations.

Launchers, references, op registration and the public ``leaky_relu_square_mlp`` are in
``golf_fast.ops.fused_mlp``.

One tensor-core GEMM with two epilogues, ``C = A·B`` (fp32 accumulation; A (M × K) row-major,
B (K × N) read through a weight stored row-major), ``φ(p) = leaky_relu(p, s)²``:

* ``FORWARD=True`` (the up-projection, B = W_upᵀ, W_up (N × K)): ``pre = round(acc)``, stored
  when ``STORE_PRE`` (training keeps it for the backward); ``a = round(leaky(pre))``;
  ``post = round(a²)`` is always stored. Rounding happens where eager PyTorch rounds
  (``F.linear`` → ``leaky_relu`` → ``square`` each round to the activation dtype), so given the
  same accumulator the outputs are bit-identical to the eager chain.
* ``FORWARD=False`` (the backward, B = W_down, W_down (K × N)): ``acc = g·W_down`` is
  ``∂L/∂post``; the epilogue loads ``pre`` and writes
  ``dpre = round(acc · 2a·(pre > 0 ? 1 : s))`` (``a = round(leaky(pre))``): ``∂post/∂pre``
  applied to the fp32 accumulator, one rounding instead of eager's three.

The activation arithmetic is done in fp32 and only the final values are cast to the activation
dtype (Triton's interpreter computes bf16 arithmetic on raw bits; see golf_fast/ops/interpreter.py).

Tile (predicted, not tuned on a GPU): 128 × 128 × 64, 8 warps, 3 stages: 97 KB of shared memory
and 126 registers (forward, sm_90 compile), so two CTAs fit on an SM and one CTA's epilogue
stores overlap the other's MMAs (K = 512 is only 8 steps of the main loop, so the epilogue's
4 bytes per output element weigh as much as the MMAs). The backward variant uses 185 registers:
one CTA per SM. Programs are ordered in groups of GROUP_M row-blocks so consecutive programs share B tiles in L2.
The weight tile is loaded K-contiguous (forward) or N-contiguous (backward): both are valid
shared-memory layouts for wgmma's B operand (checked: HGMMA in the sm_90 SASS).
"""

from __future__ import annotations

from functools import lru_cache

import torch

from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import tl, triton_kernel
from golf_fast.ops.triton_tiles import grouped_tile_ids


@triton_kernel
def _mlp_act_matmul_kernel(a_ptr, b_ptr, c_ptr, aux_ptr, M, N, K, stride_am, stride_b, stride_c, slope,
                           FORWARD: tl.constexpr, STORE_PRE: tl.constexpr, BLOCK_M: tl.constexpr,
                           BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """``acc = A·B`` then the epilogue of the module docstring.

    Forward: ``c`` = pre (written if STORE_PRE), ``aux`` = post (written). Backward: ``aux`` =
    pre (read), ``c`` = dpre (written). ``c`` and ``aux`` are (M × N) with row stride ``stride_c``.
    B element (k, n) is at ``b + n·stride_b + k`` (forward, W_up rows) or ``b + k·stride_b + n``.
    """
    pid_m, pid_n = grouped_tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    m_mask = rm < M
    n_mask = rn < N
    a_rows = a_ptr + rm[:, None].to(tl.int64) * stride_am
    if FORWARD:
        b_cols = b_ptr + rn[None, :].to(tl.int64) * stride_b
    else:
        b_cols = b_ptr + rn[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        k_mask = kk < K
        a = tl.load(a_rows + kk[None, :], mask=m_mask[:, None] & k_mask[None, :], other=0.0)
        if FORWARD:
            b = tl.load(b_cols + kk[:, None], mask=k_mask[:, None] & n_mask[None, :], other=0.0)
        else:
            b = tl.load(b_cols + kk[:, None].to(tl.int64) * stride_b, mask=k_mask[:, None] & n_mask[None, :],
                        other=0.0)
        acc = tl.dot(a, b, acc)
    dt = c_ptr.dtype.element_ty
    offs = rm[:, None].to(tl.int64) * stride_c + rn[None, :]
    mask = m_mask[:, None] & n_mask[None, :]
    if FORWARD:
        pre = acc.to(dt)
        if STORE_PRE:
            tl.store(c_ptr + offs, pre, mask=mask)
        p = pre.to(tl.float32)
        act = tl.where(p > 0, p, slope * p).to(dt).to(tl.float32)
        tl.store(aux_ptr + offs, (act * act).to(dt), mask=mask)
    else:
        p = tl.load(aux_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        act = tl.where(p > 0, p, slope * p).to(dt).to(tl.float32)
        deriv = 2.0 * act * tl.where(p > 0, 1.0, slope)
        tl.store(c_ptr + offs, (acc * deriv).to(dt), mask=mask)


# --------------------------------------------------------------------------- configurations

ACT_DTYPES = (torch.bfloat16, torch.float16)
_TRITON_DTYPE = {torch.bfloat16: "bf16", torch.float16: "fp16"}
BLOCK_M, BLOCK_N, BLOCK_K = 128, 128, 64
NUM_WARPS, NUM_STAGES, GROUP_M = 8, 3, 8


@lru_cache(maxsize=None)
def mlp_config(dtype: torch.dtype, forward: bool, store_pre: bool = True) -> KernelConfig:
    """The configuration the launcher uses (one tile for every shape: predicted, not tuned)."""
    dt = _TRITON_DTYPE[dtype]
    name = f"mlp_leaky_relu_sq_{'fwd' if forward else 'bwd'}_{dt}" + ("" if store_pre or not forward else "_nopre")
    sig = {"a_ptr": f"*{dt}", "b_ptr": f"*{dt}", "c_ptr": f"*{dt}", "aux_ptr": f"*{dt}", "M": "i32", "N": "i32",
           "K": "i32", "stride_am": "i32", "stride_b": "i32", "stride_c": "i32", "slope": "fp32"}
    for c in ("FORWARD", "STORE_PRE", "BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"):
        sig[c] = "constexpr"
    return KernelConfig(
        name=name, kernel=_mlp_act_matmul_kernel, signature=sig,
        constexprs={"FORWARD": forward, "STORE_PRE": store_pre or not forward, "BLOCK_M": BLOCK_M,
                    "BLOCK_N": BLOCK_N, "BLOCK_K": BLOCK_K, "GROUP_M": GROUP_M},
        num_warps=NUM_WARPS, num_stages=NUM_STAGES, uses_matmul=True,
        divisible_by_16=("a_ptr", "b_ptr", "c_ptr", "aux_ptr", "N", "K", "stride_am", "stride_b", "stride_c"))


SHIPPED_CONFIGS = tuple(mlp_config(d, f, s) for d in ACT_DTYPES for f, s in ((True, True), (True, False),
                                                                              (False, True)))
"""Every configuration the launchers use; ``golf-fast inspect`` compiles each one for sm_90."""
