"""Triton kernels of the fused int6-dequant matmul (the launchers are in ``int6_matmul.py``).

The matmul kernels read the packed layout of ``golf_fast.ops.int6_pack`` (per row: ``LO_BYTES =
Kp/2`` bytes of 4-bit low parts, then ``Kp/4`` bytes of 2-bit high parts) 32 bits at a time and
turn a (BLOCK_N × BLOCK_K) tile into exact ``code`` values *in registers*, Marlin-style (integer
ops on whole words, the fp16 magic number, no int→float instruction):

1. for columns ``8t .. 8t+7``: one int32 word ``L`` of the low plane (nibble ``i`` = column
   ``8t+i``) and one int16 halfword ``h`` of the high plane (bits ``2i, 2i+1`` = column ``8t+i``);
   ``hh = h & 0xFF | (h & 0xFF00) << 8`` moves the high bits of columns ``8t+4..8t+7`` up by 16;
2. four words ``p_i = (L >> 4i) & 0x000F000F | (hh << (4 − 2i)) & 0x00300030 | 0x64006400``
   (i = 0..3; ``>> 2`` for i = 3) each hold two fp16 bit patterns ``0x6400 | u`` = ``1024 + u``,
   ``u = code + 32``, for columns ``8t+i`` (low half) and ``8t+i+4`` (high half): every integer
   op works on two weights at once;
3. the halves are split (``uint16``), joined back into column order
   (``join(join(join(c0, c4), join(c2, c6)), join(join(c1, c5), join(c3, c7)))``), read as fp16
   and ``1056`` is subtracted (packed ``HADD2``): exactly ``code``. bf16 activations then convert
   the fp16 values (exact for |code| ≤ 31); no bf16 arithmetic is done, because Triton's
   interpreter stores bf16 as raw uint16 and computes on the bits (the test suite patches only
   its ``tl.dot``), so bf16 arithmetic could not be tested on the CPU.

Static count from the sm_90 SASS of the main loop (bf16 / fp16 instructions per weight):
GEMV M=16 tile 6.2 / 5.9 (bf16 7.4 without ``FOLD``, below), GEMV M=64 tile 8.6 / 7.0, GEMM
256×128 tile 10.1 / 8.6; the byte-wise unpacking this replaced was 21.5 / 15.2 (GEMV M=16) and
15.7 / 11.9 (GEMM). At 0.75 byte/weight an H100 SM must unpack about 19
weights/clock to keep up with HBM (3.35 TB/s / 132 SMs / 1.75 GHz), i.e. at most ~6.7
instructions per weight at 128 issued lanes/clock: the small-M kernel is near the limit.

The per-row scale multiplies the fp32 accumulator after the K loop (it is constant along K), so
the tensor-core operands are small exact integers and every product is exact in fp32.

Epilogue (one compiled variant for all calls, so fewer configurations to ship and check):
``+ bias[n]`` where ``n < BIAS_N`` (``BIAS_N`` is ``N`` or 0: without a bias every load is masked
off) and the low-rank term ``T · Aᵀ`` where ``T = x · Bᵀ`` (M × RANK fp32, computed by the
launcher) and ``A`` (N × RANK fp32), added as RANK rank-1 updates in fp32 (r is small);
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
                      FOLD: tl.constexpr):
    """Small-M (≤ 64) int6 linear, split-K: ``acc(BLOCK_N × BLOCK_M) = W_tile · x_tileᵀ``.

    Grid ``(cdiv(N, BLOCK_N), SPLIT_K, cdiv(M, BLOCK_M))``: program (n, s, m) streams its rows of
    W over columns ``[s·K_PER_SPLIT, (s+1)·K_PER_SPLIT)`` once, for all BLOCK_M rows of x. The
    weight is the wide (A) operand so one BLOCK_M ≥ 16 tile covers M = 1..BLOCK_M. With one split
    the result (× scale, + epilogue) goes to ``out`` (M × N, x's dtype); with several, split ``s``
    writes its fp32 partial to ``out + s·stride_os`` (the epilogue is added by split 0 only) and
    ``_int6_splitk_reduce_kernel`` sums them.

    ``FOLD`` (bf16, M ≤ 16 tile): the weights enter the dot as ``code + 160`` (the bf16 magic
    pattern ``0x4300 | u`` itself, no arithmetic and no fp16→bf16 conversion), and the offset is
    removed once at the end: ``acc − 160·Σ_k x`` with ``Σ_k x`` from a second dot of a ones tile
    on the idle tensor cores (fp32; the products ``x·(code+160)`` are still exact in fp32). (``tl.full``, not the jit helper ``tl.zeros``: helpers
    defined with @jit in triton.language.standard do not run in an interpreter started after import.)
    """
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_m = tl.program_id(2)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n_mask = rn < N
    m_mask = rm < M
    wt = tl.arange(0, BLOCK_K // 8)
    kk = tl.arange(0, BLOCK_K)
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    lo_words = w_row.to(tl.pointer_type(tl.int32))  # 8 low nibbles (columns 8t..8t+7) per word
    hi_words = (w_row + LO_BYTES).to(tl.pointer_type(tl.int16))  # their 8 × 2 high bits per halfword
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    if FOLD:
        magic = 0x43004300  # two bf16 patterns 128 + u
        acc_s = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
        ones = tl.full((BLOCK_N, BLOCK_K), 1.0, tl.bfloat16)
    else:
        magic = 0x64006400  # two fp16 patterns 1024 + u
    k_begin = pid_s * K_PER_SPLIT
    k_end = tl.minimum(k_begin + K_PER_SPLIT, K)
    for k0 in range(k_begin, k_end, BLOCK_K):
        w_idx = k0 // 8 + wt
        w_mask = n_mask[:, None] & (w_idx[None, :] < LO_BYTES // 4)
        lw = tl.load(lo_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint32, bitcast=True)
        hw = tl.load(hi_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint16, bitcast=True).to(tl.uint32)
        hh = (hw & 0xFF) | ((hw & 0xFF00) << 8)
        p0 = (lw & 0x000F000F) | ((hh << 4) & 0x00300030) | magic
        p1 = ((lw >> 4) & 0x000F000F) | ((hh << 2) & 0x00300030) | magic
        p2 = ((lw >> 8) & 0x000F000F) | (hh & 0x00300030) | magic
        p3 = ((lw >> 12) & 0x000F000F) | ((hh >> 2) & 0x00300030) | magic
        c04 = tl.join(p0.to(tl.uint16), (p0 >> 16).to(tl.uint16))
        c26 = tl.join(p2.to(tl.uint16), (p2 >> 16).to(tl.uint16))
        c15 = tl.join(p1.to(tl.uint16), (p1 >> 16).to(tl.uint16))
        c37 = tl.join(p3.to(tl.uint16), (p3 >> 16).to(tl.uint16))
        u = tl.join(tl.join(c04, c26), tl.join(c15, c37)).reshape(BLOCK_N, BLOCK_K)
        if FOLD:
            w = u.to(tl.bfloat16, bitcast=True)  # code + 160
        else:
            w = (u.to(tl.float16, bitcast=True) - 1056.0).to(x_ptr.dtype.element_ty)
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < k_end), other=0.0)
        acc = tl.dot(w, tl.trans(xt), acc)
        if FOLD:
            acc_s = tl.dot(ones, tl.trans(xt), acc_s)
    if FOLD:
        acc = acc - 160.0 * acc_s
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    acc = acc * scale[:, None]
    if pid_s == 0:
        bias = tl.load(bias_ptr + rn, mask=rn < BIAS_N, other=0.0).to(tl.float32)
        acc = acc + bias[:, None]
        for r in range(0, RANK):  # rank-1 updates in fp32 FMAs (r is small)
            a = tl.load(a_ptr + rn.to(tl.int64) * stride_an + r, mask=n_mask, other=0.0)
            t = tl.load(t_ptr + rm.to(tl.int64) * stride_tm + r, mask=m_mask, other=0.0)
            acc += a[:, None] * t[None, :]
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
                      GROUP_M: tl.constexpr):
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
    wt = tl.arange(0, BLOCK_K // 8)
    kk = tl.arange(0, BLOCK_K)
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    lo_words = w_row.to(tl.pointer_type(tl.int32))  # 8 low nibbles (columns 8t..8t+7) per word
    hi_words = (w_row + LO_BYTES).to(tl.pointer_type(tl.int16))  # their 8 × 2 high bits per halfword
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    for k0 in range(0, K, BLOCK_K):
        w_idx = k0 // 8 + wt
        w_mask = n_mask[:, None] & (w_idx[None, :] < LO_BYTES // 4)
        lw = tl.load(lo_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint32, bitcast=True)
        hw = tl.load(hi_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint16, bitcast=True).to(tl.uint32)
        hh = (hw & 0xFF) | ((hw & 0xFF00) << 8)
        p0 = (lw & 0x000F000F) | ((hh << 4) & 0x00300030) | 0x64006400
        p1 = ((lw >> 4) & 0x000F000F) | ((hh << 2) & 0x00300030) | 0x64006400
        p2 = ((lw >> 8) & 0x000F000F) | (hh & 0x00300030) | 0x64006400
        p3 = ((lw >> 12) & 0x000F000F) | ((hh >> 2) & 0x00300030) | 0x64006400
        c04 = tl.join(p0.to(tl.uint16), (p0 >> 16).to(tl.uint16))
        c26 = tl.join(p2.to(tl.uint16), (p2 >> 16).to(tl.uint16))
        c15 = tl.join(p1.to(tl.uint16), (p1 >> 16).to(tl.uint16))
        c37 = tl.join(p3.to(tl.uint16), (p3 >> 16).to(tl.uint16))
        u = tl.join(tl.join(c04, c26), tl.join(c15, c37)).reshape(BLOCK_N, BLOCK_K)
        w = (u.to(tl.float16, bitcast=True) - 1056.0).to(x_ptr.dtype.element_ty)
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < K), other=0.0)
        acc = tl.dot(w, tl.trans(xt), acc)
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    acc = acc * scale[:, None]
    bias = tl.load(bias_ptr + rn, mask=rn < BIAS_N, other=0.0).to(tl.float32)
    acc = acc + bias[:, None]
    for r in range(0, RANK):  # rank-1 updates in fp32 FMAs (an fp32 dot here spilled registers)
        a = tl.load(a_ptr + rn.to(tl.int64) * stride_an + r, mask=n_mask, other=0.0)
        t = tl.load(t_ptr + rm.to(tl.int64) * stride_tm + r, mask=m_mask, other=0.0)
        acc += a[:, None] * t[None, :]
    o_ptr = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    tl.store(o_ptr, acc.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & m_mask[None, :])


@triton_kernel
def _int6_dequant_kernel(packed_ptr, scales_ptr, out_ptr, N, K, LO_BYTES, stride_pn, stride_on,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[n, k] = code[n, k] · scale[n]`` (fp32 product, rounded once to out's dtype).

    One-shot and memory-bound (0.75 byte in, 2 out per weight): the simple byte-wise unpacking
    (two nibble joins) is enough here."""
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
