"""Triton kernels of the int6 pack/unpack family and their shipped configurations.

Layout of the packed rows: ``golf_fast.ops.int6_pack`` (module docstring). Launchers,
references, op registration and the public ``pack_int6`` / ``unpack_int6`` are there too.
"""

from __future__ import annotations

from golf_fast.ops.kernel_config import KernelConfig
from golf_fast.ops.triton_support import tl, triton_kernel


@triton_kernel
def _pack_int6_kernel(codes_ptr, out_ptr, N, K, stride_codes, stride_out, LO_BYTES,
                      BLOCK_N: tl.constexpr, BLOCK_G: tl.constexpr):
    """One program packs BLOCK_N rows × BLOCK_G groups of 4 columns (2 low + 1 high byte each)."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    groups = tl.program_id(1) * BLOCK_G + tl.arange(0, BLOCK_G)
    rmask = rows[:, None] < N
    gmask = rmask & (groups[None, :] < LO_BYTES // 2)
    src = codes_ptr + rows[:, None].to(tl.int64) * stride_codes
    c0 = 4 * groups[None, :]
    u0 = tl.load(src + c0, mask=rmask & (c0 < K), other=0).to(tl.int32) + 32
    u1 = tl.load(src + c0 + 1, mask=rmask & (c0 + 1 < K), other=0).to(tl.int32) + 32
    u2 = tl.load(src + c0 + 2, mask=rmask & (c0 + 2 < K), other=0).to(tl.int32) + 32
    u3 = tl.load(src + c0 + 3, mask=rmask & (c0 + 3 < K), other=0).to(tl.int32) + 32
    lo0 = (u0 & 15) | ((u1 & 15) << 4)
    lo1 = (u2 & 15) | ((u3 & 15) << 4)
    hi = (u0 >> 4) | ((u1 >> 4) << 2) | ((u2 >> 4) << 4) | ((u3 >> 4) << 6)
    dst = out_ptr + rows[:, None].to(tl.int64) * stride_out
    tl.store(dst + 2 * groups[None, :], lo0.to(tl.uint8), mask=gmask)
    tl.store(dst + 2 * groups[None, :] + 1, lo1.to(tl.uint8), mask=gmask)
    tl.store(dst + LO_BYTES + groups[None, :], hi.to(tl.uint8), mask=gmask)


@triton_kernel
def _unpack_int6_kernel(packed_ptr, out_ptr, N, K, stride_packed, stride_out, LO_BYTES,
                        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One program unpacks BLOCK_N rows × BLOCK_K columns into int8 codes."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask = (rows[:, None] < N) & (cols[None, :] < K)
    src = packed_ptr + rows[:, None].to(tl.int64) * stride_packed
    low = tl.load(src + cols[None, :] // 2, mask=mask, other=0).to(tl.int32)
    high = tl.load(src + LO_BYTES + cols[None, :] // 4, mask=mask, other=0).to(tl.int32)
    low = (low >> (4 * (cols[None, :] % 2))) & 15
    high = (high >> (2 * (cols[None, :] % 4))) & 3
    code = (low | (high << 4)) - 32
    tl.store(out_ptr + rows[:, None].to(tl.int64) * stride_out + cols[None, :], code.to(tl.int8), mask=mask)


PACK_CONFIG = KernelConfig(
    name="pack_int6", kernel=_pack_int6_kernel,
    signature={"codes_ptr": "*i8", "out_ptr": "*u8", "N": "i32", "K": "i32", "stride_codes": "i32",
               "stride_out": "i32", "LO_BYTES": "i32", "BLOCK_N": "constexpr", "BLOCK_G": "constexpr"},
    constexprs={"BLOCK_N": 32, "BLOCK_G": 32}, num_warps=4, num_stages=1, uses_matmul=False)

UNPACK_CONFIG = KernelConfig(
    name="unpack_int6", kernel=_unpack_int6_kernel,
    signature={"packed_ptr": "*u8", "out_ptr": "*i8", "N": "i32", "K": "i32", "stride_packed": "i32",
               "stride_out": "i32", "LO_BYTES": "i32", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr"},
    constexprs={"BLOCK_N": 32, "BLOCK_K": 128}, num_warps=4, num_stages=1, uses_matmul=False)

SHIPPED_CONFIGS = (PACK_CONFIG, UNPACK_CONFIG)
"""Every configuration the launchers use; ``golf-fast inspect`` compiles each one for sm_90."""
