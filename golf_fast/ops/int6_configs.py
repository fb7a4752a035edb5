"""Launch configurations of the int6 matmul kernels: shape classes, tiles, ``SHIPPED_CONFIGS``.

Fixed per shape class (``select_config``), never autotuned at job start. Each configuration the
launchers of ``golf_fast.ops.int6_matmul`` can use is a ``KernelConfig`` in ``SHIPPED_CONFIGS``
(activation dtype × tile × split-K variant, plus the split-K reduction and the one-shot
dequantization), compiled for sm_90 by ``golf-fast inspect`` and the sm_90 tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import torch

from golf_fast.ops.int6_kernels import (_int6_dequant_kernel, _int6_gemm_kernel, _int6_gemv_kernel,
                                        _int6_splitk_reduce_kernel)
from golf_fast.ops.triton_support import interpreter_enabled
from golf_fast.tools.sm90 import KernelConfig

SMALL_M_MAX = 64
"""Largest flattened batch that takes the split-K GEMV kernel; larger ones take the GEMM kernel."""

ACT_DTYPES = (torch.bfloat16, torch.float16)
_TRITON_DTYPE = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def _cdiv(a: int, b: int) -> int:
    """Ceiling division for host code (``triton.cdiv`` is a jit function: ~10 µs per host call)."""
    return -(-a // b)


# --------------------------------------------------------------------------- configurations


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
    instructions per weight (int6_kernels.py)."""

    @property
    def allows_wgmma(self) -> bool:
        """Both kernels put the dequantized W tile on the A side of the dot (wgmma's register
        operand), so wgmma needs BLOCK_N ≥ 64 rows per warpgroup; the M ≤ 16 GEMV tile (32 rows)
        is an mma.sync kernel instead, which is fine for a memory-bound weight stream."""
        return self.block_n >= 64 * (self.num_warps // 4)


# Shape classes (see select_config). Predicted, not tuned on a GPU: chosen so the weight stream
# has >= 1 wave of programs on 132 SMs at the shapes and the tiles compile without spills.
GEMV_M16 = Int6Tile("gemv", block_m=16, block_n=32, block_k=256, num_warps=4, num_stages=3, fold_bf16=True)
GEMV_M64 = Int6Tile("gemv", block_m=64, block_n=64, block_k=128, num_warps=4, num_stages=3)
GEMM_MID = Int6Tile("gemm", block_m=64, block_n=128, block_k=64, num_warps=4, num_stages=3)
GEMM_LARGE = Int6Tile("gemm", block_m=256, block_n=128, block_k=64, num_warps=8, num_stages=3)
TILES = (GEMV_M16, GEMV_M64, GEMM_MID, GEMM_LARGE)
GROUP_M = 8
REDUCE_BLOCK = 1024
DEQUANT_BLOCK = (32, 128)


# The run-time specialization at the record's shapes (K, N multiples of 64; torch's 16-byte
# aligned allocations): the sm_90 compile checks use it so they see the kernel that runs there.
# Other shapes get Triton's generic specialization of the same kernel (correct, less vectorized).
_DIVISIBLE = ("x_ptr", "packed_ptr", "scales_ptr", "out_ptr", "bias_ptr", "t_ptr", "a_ptr", "part_ptr", "N", "K",
              "LO_BYTES", "K_PER_SPLIT", "stride_xm", "stride_pn", "stride_om", "stride_os", "stride_on", "MN",
              "stride_ps")


def _gemv_signature(dt: str, out_dt: str) -> dict[str, str]:
    sig = {"x_ptr": f"*{dt}", "packed_ptr": "*u8", "scales_ptr": "*fp16", "out_ptr": f"*{out_dt}",
           "bias_ptr": f"*{dt}", "t_ptr": "*fp32", "a_ptr": "*fp32"}
    for name in ("M", "N", "K", "LO_BYTES", "K_PER_SPLIT", "BIAS_N", "RANK", "stride_xm", "stride_pn",
                 "stride_om", "stride_os", "stride_tm", "stride_an"):
        sig[name] = "i32"
    for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "FOLD"):
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

    ``split`` (GEMV only): the split-K variant, which writes fp32 partials.
    """
    dt = _TRITON_DTYPE[dtype]
    consts = {"BLOCK_M": tile.block_m, "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k}
    name = f"int6_{tile.kernel}_m{tile.block_m}_{dt}"
    if tile.kernel == "gemv":
        sig = _gemv_signature(dt, "fp32" if split else dt)
        kernel = _int6_gemv_kernel
        name += "_splitk" if split else ""
        consts["FOLD"] = tile.fold_bf16 and dtype == torch.bfloat16
    else:
        sig = _gemm_signature(dt)
        kernel = _int6_gemm_kernel
        consts["GROUP_M"] = GROUP_M
    return KernelConfig(name=name, kernel=kernel, signature=sig, constexprs=consts, num_warps=tile.num_warps,
                        num_stages=tile.num_stages, uses_matmul=tile.allows_wgmma,
                        divisible_by_16=tuple(a for a in _DIVISIBLE if a in sig))


@lru_cache(maxsize=None)
def reduce_config(dtype: torch.dtype) -> KernelConfig:
    return KernelConfig(
        name=f"int6_splitk_reduce_{_TRITON_DTYPE[dtype]}", kernel=_int6_splitk_reduce_kernel,
        signature={"part_ptr": "*fp32", "out_ptr": f"*{_TRITON_DTYPE[dtype]}", "MN": "i32", "SPLIT_K": "i32",
                   "stride_ps": "i32", "BLOCK": "constexpr"},
        constexprs={"BLOCK": REDUCE_BLOCK}, num_warps=4, num_stages=1, uses_matmul=False,
        divisible_by_16=("part_ptr", "out_ptr", "MN", "stride_ps"))


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
        out.append(reduce_config(dtype))
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        out.append(dequant_config(dtype))
    return tuple(out)


SHIPPED_CONFIGS = _all_configs()
"""Every configuration the launchers use; ``golf-fast inspect`` compiles each one for sm_90."""


@lru_cache(maxsize=None)
def _num_sms(device_index: Optional[int]) -> int:
    if interpreter_enabled() or device_index is None:
        return 132  # H100 SXM; the interpreter has no SMs, the choice only has to be deterministic
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def select_config(m: int, n: int, k: int, num_sms: int = 132) -> tuple[Int6Tile, int]:
    """Shape class → (tile, split_k). Fixed rules, no autotuning.

    M ≤ 16 → GEMV_M16, M ≤ 64 → GEMV_M64; larger M → GEMM_LARGE (256 x-rows × 128 W-rows: twice
    the MMA work per dequantized W element of a 128×128 tile) when its tiles fill every SM, else
    GEMM_MID (64 × 128, four times the programs). The GEMV kernels
    split K (a second, reduction launch) only when the (N, M) tiles fill less than half of the SMs
    and each split still has at least 2048 columns: the record's shapes (K ≤ 2048) stay one launch.
    """
    if m > SMALL_M_MAX:
        big = _cdiv(m, GEMM_LARGE.block_m) * _cdiv(n, GEMM_LARGE.block_n)
        return (GEMM_LARGE if big >= num_sms else GEMM_MID), 1
    tile = GEMV_M16 if m <= 16 else GEMV_M64
    tiles = _cdiv(n, tile.block_n) * _cdiv(m, tile.block_m)
    split = 1
    while tiles * split * 2 <= num_sms and k // (split * 2) >= 2048:
        split *= 2
    return tile, split
