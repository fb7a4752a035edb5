"""Triton kernels of the fused int6-dequant matmul and their shipped configurations.

Launchers, references, op registration and the public ``int6_linear`` / ``dequantize_int6`` are
in ``int6_matmul.py``; the shape-class rules that pick a configuration (``select_config``) too.

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
``RANK = 0`` skips it. The unpacking of steps 1-3 is one jit helper, ``_int6_tile_bits``, shared
by the GEMV, GEMM and one-shot dequantization kernels.

Configurations: fixed per shape class (``select_config`` in ``int6_matmul.py``), never
autotuned at job start. Each configuration the launchers can use is a ``KernelConfig`` in
``SHIPPED_CONFIGS`` (activation dtype × tile × split-K variant, plus the one-shot
dequantization), compiled for sm_90 by ``golf-fast inspect`` and the sm_90 tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import tl, triton_helper, triton_kernel
from golf_fast.ops.triton_tiles import grouped_tile_ids


@triton_helper
def _int6_row_planes(packed_ptr, rn, stride_pn, LO_BYTES):
    """(BLOCK_N, 1) pointers to rows ``rn`` of the packed weight: its low plane as int32 words (8 low
    nibbles, columns 8t..8t+7, per word) and its high plane as int16 halfwords (their 8 × 2 high bits)."""
    w_row = packed_ptr + rn[:, None].to(tl.int64) * stride_pn
    return w_row.to(tl.pointer_type(tl.int32)), (w_row + LO_BYTES).to(tl.pointer_type(tl.int16))


@triton_helper
def _int6_tile_bits(lo_words, hi_words, n_mask, k0, LO_BYTES, MAGIC: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr):
    """(BLOCK_N × BLOCK_K) uint16 tile ``MAGIC_half | u`` (``u = code + 32``) of packed int6 rows.

    ``lo_words``/``hi_words``: (BLOCK_N, 1) int32/int16 pointers to each row's low and high planes
    (``_int6_row_planes``), ``n_mask`` (BLOCK_N,) the rows that exist; the tile covers columns
    ``k0 .. k0 + BLOCK_K`` (``k0`` a multiple of 8; word ``t`` holds columns ``8t..8t+7``). ``MAGIC`` is two copies of the 16-bit pattern the 6-bit values are
    or'ed into (``0x64006400``: fp16 ``1024 + u``; ``0x43004300``: bf16 ``128 + u``). Steps 1-3
    of the module docstring; masked words read as 0 (``u = 0``).
    """
    w_idx = k0 // 8 + tl.arange(0, BLOCK_K // 8)
    w_mask = n_mask[:, None] & (w_idx[None, :] < LO_BYTES // 4)
    lw = tl.load(lo_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint32, bitcast=True)
    hw = tl.load(hi_words + w_idx[None, :], mask=w_mask, other=0).to(tl.uint16, bitcast=True).to(tl.uint32)
    hh = (hw & 0xFF) | ((hw & 0xFF00) << 8)
    p0 = (lw & 0x000F000F) | ((hh << 4) & 0x00300030) | MAGIC
    p1 = ((lw >> 4) & 0x000F000F) | ((hh << 2) & 0x00300030) | MAGIC
    p2 = ((lw >> 8) & 0x000F000F) | (hh & 0x00300030) | MAGIC
    p3 = ((lw >> 12) & 0x000F000F) | ((hh >> 2) & 0x00300030) | MAGIC
    c04 = tl.join(p0.to(tl.uint16), (p0 >> 16).to(tl.uint16))
    c26 = tl.join(p2.to(tl.uint16), (p2 >> 16).to(tl.uint16))
    c15 = tl.join(p1.to(tl.uint16), (p1 >> 16).to(tl.uint16))
    c37 = tl.join(p3.to(tl.uint16), (p3 >> 16).to(tl.uint16))
    return tl.join(tl.join(c04, c26), tl.join(c15, c37)).reshape(BLOCK_N, BLOCK_K)


@triton_helper
def _int6_linear_epilogue(acc, out_ptr, scales_ptr, bias_ptr, t_ptr, a_ptr, rm, rn, m_mask, n_mask, BIAS_N, RANK,
                          stride_om, stride_tm, stride_an):
    """``out[m, n] = acc[n, m]·scale[n] + bias[n] + Σ_r T[m, r]·A[n, r]`` in fp32, stored in out's dtype."""
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    acc = acc * scale[:, None]
    bias = tl.load(bias_ptr + rn, mask=rn < BIAS_N, other=0.0).to(tl.float32)
    acc = acc + bias[:, None]
    for r in range(0, RANK):  # rank-1 updates in fp32 FMAs (r is small; an fp32 dot here spilled registers)
        a = tl.load(a_ptr + rn.to(tl.int64) * stride_an + r, mask=n_mask, other=0.0)
        t = tl.load(t_ptr + rm.to(tl.int64) * stride_tm + r, mask=m_mask, other=0.0)
        acc += a[:, None] * t[None, :]
    o_ptr = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    tl.store(o_ptr, acc.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & m_mask[None, :])


@triton_kernel
def _int6_gemv_kernel(x_ptr, packed_ptr, scales_ptr, out_ptr, bias_ptr, t_ptr, a_ptr, part_ptr, cnt_ptr,
                      M, N, K, LO_BYTES, K_PER_SPLIT, BIAS_N, RANK,
                      stride_xm, stride_pn, stride_om, stride_ps, stride_tm, stride_an,
                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      FOLD: tl.constexpr, SPLIT: tl.constexpr):
    """Small-M (≤ 64) int6 linear, split-K: ``acc(BLOCK_N × BLOCK_M) = W_tile · x_tileᵀ``.

    Grid ``(cdiv(N, BLOCK_N), SPLIT_K, cdiv(M, BLOCK_M))``: program (n, s, m) streams its rows of
    W over columns ``[s·K_PER_SPLIT, (s+1)·K_PER_SPLIT)`` once, for all BLOCK_M rows of x. The
    weight is the wide (A) operand so one BLOCK_M ≥ 16 tile covers M = 1..BLOCK_M. Without
    ``SPLIT`` (one split) the result (× scale, + epilogue) goes to ``out`` (M × N, x's dtype).

    ``SPLIT`` (serial split-K fix-up, one launch): program (n, s, m) stores its raw fp32 partial
    at ``part + s·stride_ps + m·N + n``, then increments the tile's arrival counter
    ``cnt[m_tile·num_n_tiles + n_tile]`` (acq_rel, after a CTA barrier, so the partial is visible
    before the count); the program that arrives last sums the partials in split order (the same
    order whoever is last: deterministic), applies scale and epilogue, writes ``out`` and resets
    the counter to 0 for the next launch. The counters must start at 0 (the launcher keeps one
    zeroed buffer per device and stream).

    ``FOLD`` (bf16, M ≤ 16 tiles): the weights enter the dot as ``code + 160`` (the bf16 magic
    pattern ``0x4300 | u`` itself, no arithmetic and no fp16→bf16 conversion), and the offset is
    removed once at the end: ``acc − 160·Σ_k x`` with ``Σ_k x`` from a second dot of a ones tile
    on the idle tensor cores (fp32; the products ``x·(code+160)`` are still exact in fp32).
    """
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    pid_m = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = rm < M
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = rn < N
    lo_words, hi_words = _int6_row_planes(packed_ptr, rn, stride_pn, LO_BYTES)
    kk = tl.arange(0, BLOCK_K)
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    if FOLD:
        acc_s = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
        ones = tl.full((BLOCK_N, BLOCK_K), 1.0, tl.bfloat16)
    k_begin = pid_s * K_PER_SPLIT
    k_end = tl.minimum(k_begin + K_PER_SPLIT, K)
    for k0 in range(k_begin, k_end, BLOCK_K):
        if FOLD:
            w = _int6_tile_bits(lo_words, hi_words, n_mask, k0, LO_BYTES, 0x43004300, BLOCK_N,  # bf16 128 + u
                                BLOCK_K).to(tl.bfloat16, bitcast=True)  # code + 160
        else:
            u = _int6_tile_bits(lo_words, hi_words, n_mask, k0, LO_BYTES, 0x64006400, BLOCK_N, BLOCK_K)  # fp16 1024 + u
            w = (u.to(tl.float16, bitcast=True) - 1056.0).to(x_ptr.dtype.element_ty)
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < k_end), other=0.0)
        acc = tl.dot(w, tl.trans(xt), acc)
        if FOLD:
            acc_s = tl.dot(ones, tl.trans(xt), acc_s)
    if FOLD:
        acc = acc - 160.0 * acc_s
    if SPLIT:
        tile_mask = n_mask[:, None] & m_mask[None, :]
        p_ptr = part_ptr + rm[None, :].to(tl.int64) * N + rn[:, None]
        tl.store(p_ptr + pid_s.to(tl.int64) * stride_ps, acc, mask=tile_mask)
        tl.debug_barrier()  # every thread's partial is written before the count is released
        counter = cnt_ptr + pid_m * tl.num_programs(0) + pid_n
        arrived = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
        if arrived == tl.num_programs(1) - 1:
            total = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
            for s in range(0, tl.num_programs(1)):
                total += tl.load(p_ptr + s * stride_ps, mask=tile_mask, other=0.0, cache_modifier=".cg")
            tl.atomic_xchg(counter, 0, sem="relaxed", scope="gpu")
            _int6_linear_epilogue(total, out_ptr, scales_ptr, bias_ptr, t_ptr, a_ptr, rm, rn, m_mask, n_mask, BIAS_N,
                                  RANK, stride_om, stride_tm, stride_an)
    else:
        _int6_linear_epilogue(acc, out_ptr, scales_ptr, bias_ptr, t_ptr, a_ptr, rm, rn, m_mask, n_mask, BIAS_N, RANK,
                              stride_om, stride_tm, stride_an)


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
    pid_m, pid_n = grouped_tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_mask = rm < M
    n_mask = rn < N
    kk = tl.arange(0, BLOCK_K)
    lo_words, hi_words = _int6_row_planes(packed_ptr, rn, stride_pn, LO_BYTES)
    x_row = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    acc = tl.full((BLOCK_N, BLOCK_M), 0.0, tl.float32)
    for k0 in range(0, K, BLOCK_K):
        u = _int6_tile_bits(lo_words, hi_words, n_mask, k0, LO_BYTES, 0x64006400, BLOCK_N, BLOCK_K)  # fp16 1024 + u
        w = (u.to(tl.float16, bitcast=True) - 1056.0).to(x_ptr.dtype.element_ty)
        xk = k0 + kk
        xt = tl.load(x_row + xk[None, :], mask=m_mask[:, None] & (xk[None, :] < K), other=0.0)
        acc = tl.dot(w, tl.trans(xt), acc)
    _int6_linear_epilogue(acc, out_ptr, scales_ptr, bias_ptr, t_ptr, a_ptr, rm, rn, m_mask, n_mask, BIAS_N, RANK,
                          stride_om, stride_tm, stride_an)


@triton_kernel
def _int6_dequant_kernel(packed_ptr, scales_ptr, out_ptr, N, K, LO_BYTES, stride_pn, stride_on,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """``out[n, k] = code[n, k] · scale[n]`` (fp32 product, rounded once to out's dtype).

    One-shot and memory-bound (0.75 byte in, 2 out per weight); the unpacking is the matmul
    kernels' ``_int6_tile_bits`` (packed rows must start 4-byte aligned, as for those kernels)."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    n_mask = rn < N
    lo_words, hi_words = _int6_row_planes(packed_ptr, rn, stride_pn, LO_BYTES)
    u = _int6_tile_bits(lo_words, hi_words, n_mask, k0, LO_BYTES, 0x64006400, BLOCK_N, BLOCK_K)  # fp16 1024 + u
    code = (u.to(tl.int32) & 63) - 32
    scale = tl.load(scales_ptr + rn, mask=n_mask, other=0.0).to(tl.float32)
    val = code.to(tl.float32) * scale[:, None]
    kk = k0 + tl.arange(0, BLOCK_K)
    o_ptr = out_ptr + rn[:, None].to(tl.int64) * stride_on + kk[None, :]
    tl.store(o_ptr, val.to(out_ptr.dtype.element_ty), mask=n_mask[:, None] & (kk[None, :] < K))


# --------------------------------------------------------------------------- configurations

SMALL_M_MAX = 64
"""Largest flattened batch that takes the split-K GEMV kernel; larger ones take the GEMM kernel."""

ACT_DTYPES = (torch.bfloat16, torch.float16)
_TRITON_DTYPE = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


@dataclass(frozen=True)
class Int6Tile:
    """Tile sizes of one shape class (the constexprs that are not the dtype)."""

    kernel: str  # "gemv" or "gemm"
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    fold_bf16: bool = False
    """GEMV only: with bf16 activations, feed ``code + 160`` to the dot and subtract ``160·Σx`` at
    the end (saves the fp16→bf16 conversion of every weight; costs a second, ones-tile dot, cheap on
    an mma.sync tile, not on a wgmma one). Static sm_90 count of the bf16 main loop: 7.4 → 6.2
    instructions per weight (module docstring)."""

    @property
    def allows_wgmma(self) -> bool:
        """Both kernels put the dequantized W tile on the A side of the dot (wgmma's register
        operand), so wgmma needs BLOCK_N ≥ 64 rows per warpgroup; the M ≤ 16 GEMV tile (32 rows)
        is an mma.sync kernel instead, which is fine for a memory-bound weight stream."""
        return self.block_n >= 64 * (self.num_warps // 4)


# Shape classes (see select_config). Predicted, not tuned on a GPU: chosen so the weight stream
# has >= 1 wave of programs on 132 SMs at the shapes and the tiles compile without spills.
GEMV_M16 = Int6Tile("gemv", block_m=16, block_n=32, block_k=256, num_warps=4, num_stages=3, fold_bf16=True)
GEMV_M16_K64 = Int6Tile("gemv", block_m=16, block_n=32, block_k=64, num_warps=4, num_stages=3, fold_bf16=True)
"""The M ≤ 16 tile with 64-column K blocks: the split-K tile when K has too few 256-column blocks
to give every SM a split (the record's 512×2048: 16 tiles need 9 splits, K has 8 blocks of 256)."""
GEMV_M64 = Int6Tile("gemv", block_m=64, block_n=64, block_k=128, num_warps=4, num_stages=3)
GEMM_MID = Int6Tile("gemm", block_m=64, block_n=128, block_k=64, num_warps=4, num_stages=3)
GEMM_LARGE = Int6Tile("gemm", block_m=256, block_n=128, block_k=64, num_warps=8, num_stages=3)
TILES = (GEMV_M16, GEMV_M16_K64, GEMV_M64, GEMM_MID, GEMM_LARGE)
GROUP_M = 8
SPLIT_COUNTERS = 1024
"""Arrival counters per (device, stream) for the split-K fix-up: one per (N, M) tile, and a launch
splits K only while its tiles are fewer than the SMs, so 1024 covers any GPU."""
DEQUANT_BLOCK = (32, 128)


# The run-time specialization at the record's shapes (K, N multiples of 64; torch's 16-byte
# aligned allocations): the sm_90 compile checks use it so they see the kernel that runs there.
# Other shapes get Triton's generic specialization of the same kernel (correct, less vectorized).
_DIVISIBLE = ("x_ptr", "packed_ptr", "scales_ptr", "out_ptr", "bias_ptr", "t_ptr", "a_ptr", "part_ptr", "cnt_ptr",
              "N", "K", "LO_BYTES", "K_PER_SPLIT", "stride_xm", "stride_pn", "stride_om", "stride_ps", "stride_on")


def _gemv_signature(dt: str) -> dict[str, str]:
    sig = {"x_ptr": f"*{dt}", "packed_ptr": "*u8", "scales_ptr": "*fp16", "out_ptr": f"*{dt}",
           "bias_ptr": f"*{dt}", "t_ptr": "*fp32", "a_ptr": "*fp32", "part_ptr": "*fp32", "cnt_ptr": "*i32"}
    for name in ("M", "N", "K", "LO_BYTES", "K_PER_SPLIT", "BIAS_N", "RANK", "stride_xm", "stride_pn",
                 "stride_om", "stride_ps", "stride_tm", "stride_an"):
        sig[name] = "i32"
    for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "FOLD", "SPLIT"):
        sig[name] = "constexpr"
    return sig


def _gemm_signature(dt: str) -> dict[str, str]:
    sig = {"x_ptr": f"*{dt}", "packed_ptr": "*u8", "scales_ptr": "*fp16", "out_ptr": f"*{dt}",
           "bias_ptr": f"*{dt}", "t_ptr": "*fp32", "a_ptr": "*fp32"}
    for name in ("M", "N", "K", "LO_BYTES", "BIAS_N", "RANK", "stride_xm", "stride_pn", "stride_om",
                 "stride_tm", "stride_an"):
        sig[name] = "i32"
    for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M"):
        sig[name] = "constexpr"
    return sig


@lru_cache(maxsize=None)
def matmul_config(tile: Int6Tile, dtype: torch.dtype, split: bool = False) -> KernelConfig:
    """The KernelConfig the launcher uses for ``tile`` with activations of ``dtype``.

    ``split`` (GEMV only): the split-K variant (fp32 partials and the in-kernel fix-up).
    """
    dt = _TRITON_DTYPE[dtype]
    consts = {"BLOCK_M": tile.block_m, "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k}
    name = f"int6_{tile.kernel}_m{tile.block_m}_k{tile.block_k}_{dt}"
    if tile.kernel == "gemv":
        sig = _gemv_signature(dt)
        kernel = _int6_gemv_kernel
        name += "_splitk" if split else ""
        consts["FOLD"] = tile.fold_bf16 and dtype == torch.bfloat16
        consts["SPLIT"] = bool(split)
    else:
        sig = _gemm_signature(dt)
        kernel = _int6_gemm_kernel
        consts["GROUP_M"] = GROUP_M
    return KernelConfig(name=name, kernel=kernel, signature=sig, constexprs=consts, num_warps=tile.num_warps,
                        num_stages=tile.num_stages, uses_matmul=tile.allows_wgmma,
                        divisible_by_16=tuple(a for a in _DIVISIBLE if a in sig))


@lru_cache(maxsize=None)
def dequant_config(dtype: torch.dtype) -> KernelConfig:
    return KernelConfig(
        name=f"dequantize_int6_{_TRITON_DTYPE[dtype]}", kernel=_int6_dequant_kernel,
        signature={"packed_ptr": "*u8", "scales_ptr": "*fp16", "out_ptr": f"*{_TRITON_DTYPE[dtype]}", "N": "i32",
                   "K": "i32", "LO_BYTES": "i32", "stride_pn": "i32", "stride_on": "i32",
                   "BLOCK_N": "constexpr", "BLOCK_K": "constexpr"},
        constexprs={"BLOCK_N": DEQUANT_BLOCK[0], "BLOCK_K": DEQUANT_BLOCK[1]}, num_warps=4, num_stages=1,
        uses_matmul=False, divisible_by_16=("packed_ptr", "scales_ptr", "out_ptr", "N", "K", "LO_BYTES",
                                            "stride_pn", "stride_on"))


def _all_configs() -> tuple[KernelConfig, ...]:
    out: list[KernelConfig] = []
    for dtype in ACT_DTYPES:
        for tile in TILES:
            out.append(matmul_config(tile, dtype))
            if tile.kernel == "gemv":
                out.append(matmul_config(tile, dtype, split=True))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        out.append(dequant_config(dtype))
    return tuple(out)


SHIPPED_CONFIGS = _all_configs()
"""Every configuration the launchers use; ``golf-fast inspect`` compiles each one for sm_90."""
