"""Triton kernels of the fused int6-dequant matmul (the launchers are in ``int6_matmul.py``).

Every kernel reads the packed layout of ``golf_fast.ops.int6_pack`` (two bit planes per row:
``LO_BYTES = Kp/2`` bytes of 4-bit low parts, then ``Kp/4`` bytes of 2-bit high parts) and turns
a (BLOCK_N × BLOCK_K) tile of it into exact ``code`` values in the activation dtype *in
registers*, the way Marlin / FP6-LLM do:

1. one vectorized load of the low plane (BLOCK_N × BLOCK_K/2 bytes) and one of the high plane
   (BLOCK_N × BLOCK_K/4 bytes); the two nibbles of each high byte are split and joined so that
   high nibble ``j`` sits next to low byte ``j`` (each low byte holds columns 2j, 2j+1, each high
   nibble their 2+2 high bits);
2. ``w = lo | hi_nibble << 8`` gives both columns of the pair: ``u_even = w & 15 | (w >> 4) & 48``,
   ``u_odd = (w >> 4) & 15 | (w >> 6) & 48`` with ``u = code + 32 ∈ [1, 63]``; a join interleaves
   them back into column order;
3. the magic-number conversion: ``u | 0x6400`` read as fp16 is ``1024 + u``, so subtracting 1056
   gives ``code`` exactly with no int→float conversion instruction. For bf16 the same trick runs
   in fp32 (``u | 0x4B000000`` is ``2²³ + u``; subtract ``2²³ + 32``) followed by an exact
   fp32→bf16 conversion: bf16 arithmetic is avoided because Triton's interpreter stores bf16 as
   raw uint16 and computes on the bits (only its ``tl.dot`` is patched by the test suite), so a
   bf16 subtraction could not be tested on the CPU.

The per-row scale multiplies the fp32 accumulator after the K loop (it is constant along K), so
the tensor-core operands are small exact integers and every product is exact in fp32.

Epilogue (``EPILOGUE=True`` variants): ``+ bias[n]`` where ``n < BIAS_N`` (``BIAS_N`` is ``N`` or
0) and the low-rank term ``T · Aᵀ`` where ``T = x · Bᵀ`` (M × RANK fp32, computed by the
launcher) and ``A`` (N × RANK fp32), summed in chunks of ``LR_BLOCK`` with an fp32 (IEEE) dot;
``RANK = 0`` skips it. Kernels must not call other jit functions, so the dequantization is
written out in each kernel.
"""

from __future__ import annotations

from golf_fast.ops.triton_support import tl, triton_kernel


@triton_kernel
def _int6_gemv_kernel(x_ptr, packed_ptr, scales_ptr, out_ptr, bias_ptr, t_ptr, a_ptr,
                      M, N, K, LO_BYTES, K_PER_SPLIT, BIAS_N, RANK,
                      stride_xm, stride_pn, stride_om, stride_os, stride_tm, stride_an,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      EPILOGUE: tl.constexpr, LR_BLOCK: tl.constexpr):
    """Small-M (≤ 64) int6 linear, split-K: ``acc(BLOCK_N × BLOCK_M) = W_tile · x_tileᵀ``.

    Grid ``(cdiv(N, BLOCK_N), SPLIT_K, cdiv(M, BLOCK_M))``: program (n, s, m) streams its rows of
    W over columns ``[s·K_PER_SPLIT, (s+1)·K_PER_SPLIT)`` once, for all BLOCK_M rows of x. The
    weight is the wide (A) operand so one BLOCK_M ≥ 16 tile covers M = 1..BLOCK_M. With one split
    the result (× scale, + epilogue) goes to ``out`` (M × N, x's dtype); with several, split ``s``
    writes its fp32 partial to ``out + s·stride_os`` (the epilogue is added by split 0 only) and
    ``_int6_splitk_reduce_kernel`` sums them. (``tl.full``, not the jit helper ``tl.zeros``: helpers
    defined with @jit in triton.language.standard do not run in an interpreter started after import.)
    """
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_m = tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n_mask = rn < N
    m_mask = rm < M
    jb = tl.arange(0, BLOCK_K // 2)
    gb = tl.arange(0, BLOCK_K // 4)
    kk = tl.arange(0, BLOCK_K)
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    k_begin = pid_s * K_PER_SPLIT
    k_end = tl.minimum(k_begin + K_PER_SPLIT, K)
    for k0 in range(k_begin, k_end, BLOCK_K):
        lo_idx = k0 // 2 + jb
        hi_idx = k0 // 4 + gb
        lo = tl.load(w_row + lo_idx[None, :], mask=n_mask[:, None] & (lo_idx[None, :] < LO_BYTES), other=0)
        hi = tl.load(w_row + LO_BYTES + hi_idx[None, :],
                     mask=n_mask[:, None] & (hi_idx[None, :] < LO_BYTES // 2), other=0)
        hi = hi.to(tl.uint16)
        hn = tl.join(hi & 15, hi >> 4).reshape(BLOCK_N, BLOCK_K // 2)
        w16 = lo.to(tl.uint16) | (hn << 8)
        u_even = (w16 & 15) | ((w16 >> 4) & 48)
        u_odd = ((w16 >> 4) & 15) | ((w16 >> 6) & 48)
        u = tl.join(u_even, u_odd).reshape(BLOCK_N, BLOCK_K)
        if x_ptr.dtype.element_ty == tl.bfloat16:
            w = ((u.to(tl.int32) | 0x4B000000).to(tl.float32, bitcast=True) - 8388640.0).to(tl.bfloat16)
        else:
            w = (u | 0x6400).to(tl.float16, bitcast=True) - 1056.0
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < k_end), other=0.0)
        acc = tl.dot(w.to(x_ptr.dtype.element_ty), tl.trans(xt), acc)
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    acc = acc * scale[:, None]
    if EPILOGUE:
        if pid_s == 0:
            bias = tl.load(bias_ptr + rn, mask=rn < BIAS_N, other=0.0).to(tl.float32)
            acc = acc + bias[:, None]
            rr = tl.arange(0, LR_BLOCK)
            for r0 in range(0, RANK, LR_BLOCK):
                r_mask = (r0 + rr) < RANK
                a = tl.load(a_ptr + rn[:, None].to(tl.int64) * stride_an + (r0 + rr)[None, :],
                            mask=n_mask[:, None] & r_mask[None, :], other=0.0)
                t = tl.load(t_ptr + rm[:, None].to(tl.int64) * stride_tm + (r0 + rr)[None, :],
                            mask=m_mask[:, None] & r_mask[None, :], other=0.0)
                acc = tl.dot(a, tl.trans(t), acc, input_precision="ieee")
    o_ptr = out_ptr + pid_s.to(tl.int64) * stride_os + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    tl.store(o_ptr, acc.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & m_mask[None, :])


@triton_kernel
def _int6_splitk_reduce_kernel(part_ptr, out_ptr, MN, SPLIT_K, stride_ps, BLOCK: tl.constexpr):
    """``out[i] = Σ_s part[s, i]`` over the fp32 split-K partials, cast to the output dtype."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < MN
    acc = tl.full((BLOCK,), 0.0, tl.float32)
    for s in range(0, SPLIT_K):
        acc += tl.load(part_ptr + s * stride_ps + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton_kernel
def _int6_gemm_kernel(x_ptr, packed_ptr, scales_ptr, out_ptr, bias_ptr, t_ptr, a_ptr,
                      M, N, K, LO_BYTES, BIAS_N, RANK,
                      stride_xm, stride_pn, stride_om, stride_tm, stride_an,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      GROUP_M: tl.constexpr, EPILOGUE: tl.constexpr, LR_BLOCK: tl.constexpr):
    """Large-M int6 linear: ``acc(BLOCK_N × BLOCK_M) = W_tile · x_tileᵀ`` on tensor cores.

    The W tile is dequantized in registers between its load and ``tl.dot`` and is the dot's first
    operand, so on sm_90 it feeds wgmma straight from registers (``HGMMA R, gdesc``: Hopper takes
    A from registers, B from shared memory) with no shared-memory round trip; x streams through
    shared memory (cp.async, pipelined). The output tile is stored transposed;
    programs are ordered in groups of GROUP_M row-blocks so consecutive programs share W tiles
    in L2. ``out`` is (M × N) in x's dtype.
    """
    pid = tl.program_id(0)
    num_m = (M + BLOCK_M - 1) // BLOCK_M
    num_n = (N + BLOCK_N - 1) // BLOCK_N
    per_group = GROUP_M * num_n
    group = pid // per_group
    first_m = group * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % group_size
    pid_n = (pid % per_group) // group_size
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = rm < M
    n_mask = rn < N
    jb = tl.arange(0, BLOCK_K // 2)
    gb = tl.arange(0, BLOCK_K // 4)
    kk = tl.arange(0, BLOCK_K)
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    for k0 in range(0, K, BLOCK_K):
        lo_idx = k0 // 2 + jb
        hi_idx = k0 // 4 + gb
        lo = tl.load(w_row + lo_idx[None, :], mask=n_mask[:, None] & (lo_idx[None, :] < LO_BYTES), other=0)
        hi = tl.load(w_row + LO_BYTES + hi_idx[None, :],
                     mask=n_mask[:, None] & (hi_idx[None, :] < LO_BYTES // 2), other=0)
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < K), other=0.0)
        hi = hi.to(tl.uint16)
        hn = tl.join(hi & 15, hi >> 4).reshape(BLOCK_N, BLOCK_K // 2)
        w16 = lo.to(tl.uint16) | (hn << 8)
        u_even = (w16 & 15) | ((w16 >> 4) & 48)
        u_odd = ((w16 >> 4) & 15) | ((w16 >> 6) & 48)
        u = tl.join(u_even, u_odd).reshape(BLOCK_N, BLOCK_K)
        if x_ptr.dtype.element_ty == tl.bfloat16:
            w = ((u.to(tl.int32) | 0x4B000000).to(tl.float32, bitcast=True) - 8388640.0).to(tl.bfloat16)
        else:
            w = (u | 0x6400).to(tl.float16, bitcast=True) - 1056.0
        acc = tl.dot(w.to(x_ptr.dtype.element_ty), tl.trans(xt), acc)
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    acc = acc * scale[:, None]
    if EPILOGUE:
        bias = tl.load(bias_ptr + rn, mask=rn < BIAS_N, other=0.0).to(tl.float32)
        acc = acc + bias[:, None]
        rr = tl.arange(0, LR_BLOCK)
        for r0 in range(0, RANK, LR_BLOCK):
            r_mask = (r0 + rr) < RANK
            t = tl.load(t_ptr + rm[:, None].to(tl.int64) * stride_tm + (r0 + rr)[None, :],
                        mask=m_mask[:, None] & r_mask[None, :], other=0.0)
            a = tl.load(a_ptr + rn[:, None].to(tl.int64) * stride_an + (r0 + rr)[None, :],
                        mask=n_mask[:, None] & r_mask[None, :], other=0.0)
            acc = tl.dot(a, tl.trans(t), acc, input_precision="ieee")
    o_ptr = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    tl.store(o_ptr, acc.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & m_mask[None, :])


@triton_kernel
def _int6_dequant_kernel(packed_ptr, scales_ptr, out_ptr, N, K, LO_BYTES, stride_pn, stride_on,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[n, k] = code[n, k] · scale[n]`` (fp32 product, rounded once to out's dtype)."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    n_mask = rn < N
    lo_idx = k0 // 2 + tl.arange(0, BLOCK_K // 2)
    hi_idx = k0 // 4 + tl.arange(0, BLOCK_K // 4)
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    lo = tl.load(w_row + lo_idx[None, :], mask=n_mask[:, None] & (lo_idx[None, :] < LO_BYTES), other=0)
    hi = tl.load(w_row + LO_BYTES + hi_idx[None, :],
                 mask=n_mask[:, None] & (hi_idx[None, :] < LO_BYTES // 2), other=0).to(tl.int32)
    hn = tl.join(hi & 15, hi >> 4).reshape(BLOCK_N, BLOCK_K // 2)
    w16 = lo.to(tl.int32) | (hn << 8)
    u_even = (w16 & 15) | ((w16 >> 4) & 48)
    u_odd = ((w16 >> 4) & 15) | ((w16 >> 6) & 48)
    code = tl.join(u_even, u_odd).reshape(BLOCK_N, BLOCK_K) - 32
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    val = code.to(tl.float32) * scale[:, None]
    kk = k0 + tl.arange(0, BLOCK_K)
    o_ptr = out_ptr + rn[:, None].to(tl.int64) * stride_on + kk[None, :]
    tl.store(o_ptr, val.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & (kk[None, :] < K))
