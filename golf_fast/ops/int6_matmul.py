"""Fused int6-dequant matmul: ``y = x · (code · s[:, None])ᵀ + bias + x · (A·B)ᵀ`` from packed codes.

Math, shapes, dtypes
--------------------
``x`` (..., K) bfloat16/float16; ``packed`` (N, 3·Kp/4) uint8, the int6 codes of ``W`` (N × K) in
the layout of ``golf_fast.ops.int6_pack`` (``Kp = ceil(K/16)·16``); ``scales`` (N,) float16, one per
output row; optional ``bias`` (N,) in x's dtype; optional low-rank correction ``lowrank = (A, B)``
with ``A`` (N × r) and ``B`` (r × K) floating (the LQER term). The result (..., N) in x's dtype
equals ``F.linear(x, W_deq, bias) + x·Bᵀ·Aᵀ`` computed in fp32 (``W_deq = code · s``), rounded
once to x's dtype. The kernels get there exactly: codes are small integers (exact in bf16/fp16),
``x·code`` products are exact in fp32, and the fp32 scale multiplies the fp32 accumulator.

Regimes (``M`` = the flattened batch):

* ``M ≤ 64``: ``_int6_gemv_kernel``, split-K GEMV-style. The weight is streamed once at 0.75
  byte/weight (vs 2 for bf16): a memory-bound call is predicted up to 2.67× faster than bf16.
  When the (N, M) tiles are fewer than the SMs and K is longer than one round of a program's
  load pipeline, K is split so that every SM gets a program (``select_config``), and the partial
  sums are combined inside the same launch: the last program of each tile to finish adds them
  up (a "serial split-K fix-up", no second kernel).
* ``M > 64``: ``_int6_gemm_kernel``, tensor-core tiles with dequantization in the load path
  (wgmma/HGMMA on sm_90, checked by the sm_90 compile tests).

Configurations are fixed per shape class (``select_config``; no autotuning at job start), and
every one is listed in ``SHIPPED_CONFIGS`` (``int6_matmul_kernels.py``). The low-rank term is applied in the same kernel:
the launcher computes ``T = x·Bᵀ`` (M × r, fp32; r is small) and the epilogue adds ``T·Aᵀ``.

Naming ladder: ``_int6_gemv_kernel`` / ``_int6_gemm_kernel`` / ``_int6_dequant_kernel`` (in
``int6_matmul_kernels.py``) → ``int6_linear_triton`` / ``dequantize_int6_triton`` (launchers) →
``golf_fast::int6_linear`` / ``golf_fast::dequantize_int6`` (torch.library, with a gradient for
``x``, ``bias`` and the low-rank factors; never for the packed weight) → ``golf_fast.int6_linear``
/ ``golf_fast.dequantize_int6``; references ``int6_linear_ref`` / ``dequantize_int6_ref``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch

from golf_fast.ops.checks import reject_meta
from golf_fast.ops.compare import rounded_close
from golf_fast.ops.dispatch import (KernelOp, KernelSelfCheckError, precise_reference, refuse_selfcheck_in_capture,
                                    triton_in_interpreter, triton_on_cuda)
from golf_fast.ops.dispatch import config as dispatch_config
from golf_fast.ops.int6_matmul_kernels import (ACT_DTYPES, DEQUANT_BLOCK, GEMM_LARGE, GEMM_MID, GEMV_M16,
                                               GEMV_M16_K64, GEMV_M64, SMALL_M_MAX, SPLIT_COUNTERS, Int6Tile,
                                               _int6_dequant_kernel, _int6_gemm_kernel, _int6_gemv_kernel,
                                               dequant_config, matmul_config)
from golf_fast.ops.int6_pack import (
    INT6_MAX,
    check_int6_padding,
    pack_int6_ref,
    packed_row_bytes,
    padded_cols,
    unpack_int6_ref,
)
from golf_fast.ops.triton_support import cdiv, check_launch_device, interpreter_enabled


# --------------------------------------------------------------------------- references


def dequantize_int6_ref(packed: torch.Tensor, scales: torch.Tensor, num_cols: int, dtype: torch.dtype) -> torch.Tensor:
    """Eager reference: (N, 3·Kp/4) uint8 + (N,) scales → ``code · s`` in fp32, rounded to ``dtype``."""
    codes = unpack_int6_ref(packed, num_cols)
    return (codes.to(torch.float32) * scales.to(torch.float32)[:, None]).to(dtype)


def int6_linear_ref(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                    lowrank_a: Optional[torch.Tensor], lowrank_b: Optional[torch.Tensor]) -> torch.Tensor:
    """Eager reference: ``F.linear(x, W_deq, bias) + x·Bᵀ·Aᵀ`` all in fp32, rounded to x's dtype."""
    k = x.shape[-1]
    w = dequantize_int6_ref(packed, scales, k, torch.float32)
    x32 = x.reshape(-1, k).to(torch.float32)
    out = x32 @ w.T
    if bias is not None:
        out = out + bias.to(torch.float32)
    if lowrank_a is not None and lowrank_b is not None:
        out = out + (x32 @ lowrank_b.to(torch.float32).T) @ lowrank_a.to(torch.float32).T
    return out.to(x.dtype).reshape(*x.shape[:-1], packed.shape[0])


def _linear_fake(x, packed, scales, bias, lowrank_a, lowrank_b):
    return x.new_empty((*x.shape[:-1], packed.shape[0]))


def _dequant_fake(packed, scales, num_cols, dtype):
    return packed.new_empty((packed.shape[0], num_cols), dtype=dtype)


# --------------------------------------------------------------------------- shape classes


@lru_cache(maxsize=None)
def _num_sms(device_index: Optional[int]) -> int:
    if interpreter_enabled() or device_index is None:
        return 132  # H100 SXM; the interpreter has no SMs, the choice only has to be deterministic
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _split_for(tile: Int6Tile, tiles: int, k: int, num_sms: int) -> int:
    """Splits of K that give ``tiles · split ≥ num_sms`` programs, each at least one K block long
    (fewer when K has fewer blocks): ``blocks_per_split = max(1, k_blocks // wanted)``."""
    if tiles >= num_sms:
        return 1
    wanted = cdiv(num_sms, tiles)
    k_blocks = cdiv(k, tile.block_k)
    per_split = max(1, k_blocks // wanted)
    return cdiv(k_blocks, per_split)


def gemv_grid(m: int, n: int, k: int, tile: Int6Tile, split: int) -> tuple[tuple[int, int, int], int]:
    """The GEMV launch for ``split`` requested splits: grid ``(N tiles, splits, M tiles)`` and the
    columns per split (whole K blocks; the last split may be shorter, so splits ≤ ``split``)."""
    k_per_split = cdiv(cdiv(k, tile.block_k), split) * tile.block_k
    return (cdiv(n, tile.block_n), cdiv(k, k_per_split), cdiv(m, tile.block_m)), k_per_split


def select_config(m: int, n: int, k: int, num_sms: int = 132) -> tuple[Int6Tile, int]:
    """Shape class → (tile, split_k). Fixed rules, no autotuning.

    M ≤ 16 → GEMV_M16, M ≤ 64 → GEMV_M64; larger M → GEMM_LARGE (256 x-rows × 128 W-rows: twice
    the MMA work per dequantized W element of a 128×128 tile) when its tiles fill every SM, else
    GEMM_MID (64 × 128, four times the programs).

    The GEMV kernels split K when their (N, M) tiles are fewer than ``num_sms`` *and* a program's
    K range is more than one round of its load pipeline (more than ``num_stages`` K blocks): then
    the split gives every SM a program (``_split_for``) and each program a short K range, and the
    partial sums are combined in the same launch. When the whole K is one round already (K ≤ 768
    for the M ≤ 16 tile), every load of a program is in flight at once and the call is bound by
    one memory latency whatever the split; splitting would only add the fix-up's L2 round trip.
    For M ≤ 16, when K has fewer 256-column blocks than the splits wanted, the 64-column tile
    GEMV_M16_K64 is used. On 132 SMs at M ≤ 16: 512×2048 → 16 tiles × 11 splits of 192 columns
    (K64), 8192×512 → 256 tiles; 512×512 and 2048×512 (16 and 64 tiles, K = 512: one round) are
    not split.
    """
    if m > SMALL_M_MAX:
        big = cdiv(m, GEMM_LARGE.block_m) * cdiv(n, GEMM_LARGE.block_n)
        return (GEMM_LARGE if big >= num_sms else GEMM_MID), 1
    tile = GEMV_M16 if m <= 16 else GEMV_M64
    tiles = cdiv(n, tile.block_n) * cdiv(m, tile.block_m)
    one_round = cdiv(k, tile.block_k) <= tile.num_stages
    if tiles >= num_sms or tiles > SPLIT_COUNTERS or one_round:
        return tile, 1
    if tile is GEMV_M16 and cdiv(k, tile.block_k) < cdiv(num_sms, tiles):
        tile = GEMV_M16_K64
    return tile, _split_for(tile, tiles, k, num_sms)


# --------------------------------------------------------------------------- launchers

_DUMMY: dict[torch.device, torch.Tensor] = {}
_COUNTERS: dict[tuple, torch.Tensor] = {}


def split_counters(device: torch.device) -> torch.Tensor:
    """The zeroed int32 arrival counters of the split-K fix-up for ``device``'s current stream.

    Each launch leaves them at zero again (the last program of a tile resets its counter), so one
    buffer per stream serves every launch on it; launches on one stream never overlap. Allocated
    once (before any CUDA-graph capture that uses it, by the warm-up call)."""
    sid = torch.cuda.current_stream(device).stream_id if device.type == "cuda" else None
    key = (str(device), sid)
    if key not in _COUNTERS:
        _COUNTERS[key] = torch.zeros(SPLIT_COUNTERS, dtype=torch.int32, device=device)
    return _COUNTERS[key]


def _dummy_f32(device: torch.device) -> torch.Tensor:
    if device not in _DUMMY:
        _DUMMY[device] = torch.zeros(1, dtype=torch.float32, device=device)
    return _DUMMY[device]


def int6_linear_triton(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                       lowrank_a: Optional[torch.Tensor], lowrank_b: Optional[torch.Tensor]) -> torch.Tensor:
    """Launch the GEMV (M ≤ 64) or GEMM kernel. Inputs are assumed valid (see ``int6_linear``).

    On CUDA, the first use of each (tile, split, dtype) on a device is checked against
    the reference on a small random problem (``selfcheck_tile``): the op-level self-check only
    covers the regime of its own input, and every shipped configuration must be trusted.
    """
    check_launch_device(x, packed, scales, what="int6_linear")
    k = x.shape[-1]
    n = packed.shape[0]
    x2 = x.reshape(-1, k)
    if x2.stride(-1) != 1 or (x2.shape[0] > 1 and x2.stride(0) < k):
        x2 = x2.contiguous()
    m = x2.shape[0]
    if m == 0 or n == 0:
        return torch.empty((*x.shape[:-1], n), dtype=x.dtype, device=x.device)
    dev_index = None if interpreter_enabled() else (x.device.index or 0)
    tile, split = select_config(m, n, k, _num_sms(dev_index))
    if x.device.type == "cuda" and dispatch_config.selfcheck:
        rank = lowrank_a.shape[1] if lowrank_a is not None and lowrank_b is not None else 0
        ensure_tile_checked(tile, split, x.dtype, x.device, launch_class(m, n, k, bias is not None, rank))
    out = _launch(x2, packed, scales, bias, lowrank_a, lowrank_b, tile, split)
    return out.reshape(*x.shape[:-1], n)


_CHECKED_TILES: set = set()


def _int_class(v: int) -> int:
    """How Triton specializes an integer argument: 1 (equal to 1), 16 (divisible by 16) or 0."""
    return 1 if v == 1 else (16 if v % 16 == 0 else 0)


def launch_class(m: int, n: int, k: int, has_bias: bool, rank: int) -> tuple:
    """The specialization class of one launch: Triton compiles one variant per pattern of integer
    arguments equal to 1 / divisible by 16 (M, N, K, the packed row bytes, the low-half bytes) and
    per epilogue (bias, low-rank rank), so a self-check must run the same class as the real call."""
    return (_int_class(m), _int_class(n), _int_class(k), _int_class(packed_row_bytes(k)),
            _int_class(padded_cols(k) // 2), bool(has_bias), int(rank))


def check_dims(tile: Int6Tile, cls: tuple) -> tuple[int, int, int]:
    """(M, N, K) of a small self-check problem in launch class ``cls`` for ``tile`` (M within the
    tile's regime; N and K small, with tails where the class has them)."""
    cm, cn = cls[0], cls[1]
    if tile.kernel == "gemv":
        m = {1: 1, 16: 16}.get(cm, min(tile.block_m, 37) if min(tile.block_m, 37) % 16 else tile.block_m - 3)
    else:
        m = tile.block_m + (16 if cm == 16 else 3)
    n = {1: 1, 16: 48}.get(cn, 45)
    if cls[2] == 1:
        k = 1
    else:
        k = next(v for v in range(560, 700) if (_int_class(v), _int_class(packed_row_bytes(v)),
                                                 _int_class(padded_cols(v) // 2)) == tuple(cls[2:5]))
    return m, n, k


def ensure_tile_checked(tile: Int6Tile, split: int, dtype: torch.dtype, device: torch.device, cls: tuple) -> None:
    """Self-check (tile, split, dtype, launch class) on ``device`` once (see :func:`selfcheck_tile`)."""
    key = (tile, split > 1, dtype, str(device), cls)
    if key in _CHECKED_TILES:
        return
    refuse_selfcheck_in_capture(f"golf_fast::int6_linear tile {tile.kernel} {tile.block_m}x{tile.block_n}", device)
    selfcheck_tile(tile, split, dtype, device, cls=cls)
    _CHECKED_TILES.add(key)


def _word_aligned(packed: torch.Tensor) -> torch.Tensor:
    """The kernels read packed rows as int32 words: rows must start 4-byte aligned (each row is
    3·Kp/4 bytes, a multiple of 12, so a contiguous tensor at an aligned address is enough)."""
    if packed.stride(1) == 1 and packed.data_ptr() % 4 == 0 and packed.stride(0) % 4 == 0:
        return packed
    return packed.clone(memory_format=torch.contiguous_format)


def _launch(x2: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
            lowrank_a: Optional[torch.Tensor], lowrank_b: Optional[torch.Tensor], tile: Int6Tile,
            split: int) -> torch.Tensor:
    """Run one tile configuration on (M, K) ``x2``; returns (M, N)."""
    m, k = x2.shape
    n = packed.shape[0]
    out = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    packed = _word_aligned(packed)
    scales = scales.contiguous()
    has_lr = lowrank_a is not None and lowrank_b is not None
    bias_t = bias.contiguous() if bias is not None else x2
    if has_lr:
        with precise_reference():  # full fp32 whatever the caller's TF32/autocast: the reference's precision
            t = x2.to(torch.float32) @ lowrank_b.to(torch.float32).T  # (M, r) fp32, the "x·Bᵀ" half
        a = lowrank_a.to(torch.float32).contiguous()
        rank = a.shape[1]
    else:
        t = a = _dummy_f32(x2.device)
        rank = 0
    lo_bytes = padded_cols(k) // 2
    bias_n = n if bias is not None else 0
    if tile.kernel == "gemm":
        cfg = matmul_config(tile, x2.dtype)
        grid = (cdiv(m, tile.block_m) * cdiv(n, tile.block_n),)
        _int6_gemm_kernel[grid](x2, packed, scales, out, bias_t, t, a, m, n, k, lo_bytes, bias_n, rank,
                                x2.stride(0), packed.stride(0), out.stride(0), t.stride(0), a.stride(0),
                                num_warps=cfg.num_warps, num_stages=cfg.num_stages, **cfg.constexprs)
        return out
    grid, k_per_split = gemv_grid(m, n, k, tile, split)
    split = grid[1]
    if split > 1 and grid[0] * grid[2] > SPLIT_COUNTERS:
        raise ValueError(f"split: {grid[0] * grid[2]} (N, M) tiles exceed the {SPLIT_COUNTERS} split-K counters; "
                         "select_config never splits that many tiles")
    cfg = matmul_config(tile, x2.dtype, split=split > 1)
    if split > 1:
        part = torch.empty((split, m, n), dtype=torch.float32, device=x2.device)
        counters = split_counters(x2.device)
    else:
        part = counters = _dummy_f32(x2.device)
    _int6_gemv_kernel[grid](x2, packed, scales, out, bias_t, t, a, part, counters, m, n, k, lo_bytes, k_per_split,
                            bias_n, rank, x2.stride(0), packed.stride(0), n, m * n, t.stride(0), a.stride(0),
                            num_warps=cfg.num_warps, num_stages=cfg.num_stages, **cfg.constexprs)
    return out


def launch_tile(x2: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                lowrank_a: Optional[torch.Tensor], lowrank_b: Optional[torch.Tensor], tile: Int6Tile,
                split: int) -> torch.Tensor:
    """Run one tile configuration forced, whatever :func:`select_config` would pick (GPU checks);
    (M, K) ``x2`` → (M, N). Inputs are assumed valid; no self-check runs."""
    check_launch_device(x2, packed, scales, what="launch_tile")
    return _launch(x2, packed, scales, bias, lowrank_a, lowrank_b, tile, split)


SHIPPED_TILES = (GEMV_M16, GEMV_M64, GEMM_MID, GEMM_LARGE)
"""Every tile shape class the launcher can pick."""


def selfcheck_tile(tile: Int6Tile, split: int, dtype: torch.dtype, device: torch.device, *,
                   epilogue: bool = True, cls: Optional[tuple] = None) -> None:
    """Compare one configuration with the reference on a small random problem; raise on mismatch.

    With ``cls`` (a :func:`launch_class`), the problem is in that specialization class (M, N, K from
    :func:`check_dims`, a bias and a low-rank term of the class's rank when it has them). Without it:
    M is the tile's own M (≤ it for the GEMV), K = 600 with ``split`` splits, N = 45 (a tail); with
    ``epilogue`` a bias and a rank-3 low-rank term. Inputs come from a fixed-seed CPU generator (no
    random state of the user's moves); the reference runs in full fp32 whatever the TF32 settings.
    """
    gen = torch.Generator(device="cpu").manual_seed(1234)
    if cls is None:
        m = min(tile.block_m, 37) if tile.kernel == "gemv" else tile.block_m + 3
        n, k = 45, 600
        has_bias, rank = epilogue, 3 if epilogue else 0
    else:
        m, n, k = check_dims(tile, cls)
        has_bias, rank = cls[5], cls[6]
    codes = torch.randint(-INT6_MAX, INT6_MAX + 1, (n, k), dtype=torch.int8, generator=gen)
    scales = (torch.rand(n, generator=gen) * 0.02 + 0.001).to(torch.float16)
    x = torch.randn(m, k, generator=gen).to(dtype)
    bias = torch.randn(n, generator=gen).to(dtype) if has_bias else None
    lr = (torch.randn(n, rank, generator=gen), torch.randn(rank, k, generator=gen)) if rank else (None, None)
    args = [t.to(device) if t is not None else None for t in (x, pack_int6_ref(codes), scales, bias, *lr)]
    out = _launch(*args, tile=tile, split=split)
    with precise_reference():
        ref = int6_linear_ref(*args)
    problem = within_output_rounding(out, ref)
    if problem is not None:
        raise KernelSelfCheckError(
            f"golf_fast::int6_linear tile {tile} (split_k={split}, M={m}, N={n}, K={k}, bias={has_bias}, "
            f"low-rank rank={rank}) on {device} ({dtype}) "
            f"disagrees with its reference on the first-use self-check: {problem}. Pass backend='reference' "
            f"to run the eager reference, and report the versions printed by golf_fast.status().")


def dequantize_int6_triton(packed: torch.Tensor, scales: torch.Tensor, num_cols: int,
                           dtype: torch.dtype) -> torch.Tensor:
    """Launch ``_int6_dequant_kernel``. Inputs are assumed valid (see ``dequantize_int6``)."""
    check_launch_device(packed, scales, what="dequantize_int6")
    packed = _word_aligned(packed)
    n = packed.shape[0]
    out = torch.empty((n, num_cols), dtype=dtype, device=packed.device)
    if n == 0:
        return out
    cfg = dequant_config(dtype)
    grid = (cdiv(n, DEQUANT_BLOCK[0]), cdiv(num_cols, DEQUANT_BLOCK[1]))
    _int6_dequant_kernel[grid](packed, scales.contiguous(), out, n, num_cols, padded_cols(num_cols) // 2,
                               packed.stride(0), out.stride(0), num_warps=cfg.num_warps, **cfg.constexprs)
    return out


# --------------------------------------------------------------------------- self-check inputs


def _random_packed(n: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    codes = torch.randint(-INT6_MAX, INT6_MAX + 1, (n, k), dtype=torch.int8, device=device)
    scales = (torch.rand(n, device=device) * 0.02 + 0.001).to(torch.float16)
    return pack_int6_ref(codes), scales


def _linear_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    k, n = 83, 45
    packed, scales = _random_packed(n, k, device)
    x = torch.randn(5, k, device=device).to(dtype if dtype in ACT_DTYPES else torch.bfloat16)
    bias = torch.randn(n, device=device).to(x.dtype)
    return (x, packed, scales, bias, torch.randn(n, 3, device=device), torch.randn(3, k, device=device))


def _dequant_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    packed, scales = _random_packed(37, 83, device)
    return (packed, scales, 83, torch.bfloat16)


def within_output_rounding(out: torch.Tensor, ref: torch.Tensor) -> Optional[str]:
    """Float comparison for outputs that are the same fp32 value rounded to out's dtype.

    Two fp32 results that differ only in summation order round to the same or to adjacent
    values: allow ``2·eps(dtype)·|ref|`` plus a floor of ``eps(dtype)·max|ref|·2⁻⁶``
    (:func:`golf_fast.ops.compare.rounded_close` with its defaults).
    """
    return rounded_close(out, ref, ulps=2.0, floor=2.0 ** -6, name="kernel output")


# --------------------------------------------------------------------------- ops and autograd

LINEAR_OP = KernelOp("int6_linear", int6_linear_ref, fake=_linear_fake, selfcheck_inputs=_linear_selfcheck_inputs,
                     compare=within_output_rounding)
LINEAR_OP.add_backend("triton", "cuda", int6_linear_triton, available=triton_on_cuda)
LINEAR_OP.add_backend("triton", "cpu", int6_linear_triton, available=triton_in_interpreter)

DEQUANT_OP = KernelOp("dequantize_int6", dequantize_int6_ref, fake=_dequant_fake,
                      selfcheck_inputs=_dequant_selfcheck_inputs, compare=within_output_rounding)
DEQUANT_OP.add_backend("triton", "cuda", dequantize_int6_triton, available=triton_on_cuda)
DEQUANT_OP.add_backend("triton", "cpu", dequantize_int6_triton, available=triton_in_interpreter)


def _setup_context(ctx, inputs, output) -> None:
    x, packed, scales, bias, lowrank_a, lowrank_b = inputs
    ctx.k = x.shape[-1]
    ctx.save_for_backward(x, packed, scales, lowrank_a, lowrank_b)


def _backward(ctx, grad):
    """d/dx = grad · W_deq (+ grad·A·B); d/dbias = Σ grad; d/dA = gradᵀ·(x·Bᵀ); d/dB = (grad·A)ᵀ·x."""
    x, packed, scales, lowrank_a, lowrank_b = ctx.saved_tensors
    need_x, _, _, need_bias, need_a, need_b = ctx.needs_input_grad
    k = ctx.k
    g2 = grad.reshape(-1, packed.shape[0])
    grad_x = grad_bias = grad_a = grad_b = None
    if need_x:
        w = torch.ops.golf_fast.dequantize_int6(packed, scales, k, grad.dtype)
        gx = g2 @ w
        if lowrank_a is not None and lowrank_b is not None:
            gx = (gx.to(torch.float32) + (g2.to(torch.float32) @ lowrank_a.to(torch.float32))
                  @ lowrank_b.to(torch.float32)).to(grad.dtype)
        grad_x = gx.reshape(x.shape)
    if need_bias:
        grad_bias = g2.sum(0)
    if need_a or need_b:
        x2 = x.reshape(-1, k).to(torch.float32)
        g32 = g2.to(torch.float32)
        if need_a:
            grad_a = (g32.T @ (x2 @ lowrank_b.to(torch.float32).T)).to(lowrank_a.dtype)
        if need_b:
            grad_b = ((g32 @ lowrank_a.to(torch.float32)).T @ x2).to(lowrank_b.dtype)
    return grad_x, None, None, grad_bias, grad_a, grad_b


LINEAR_OP.register_autograd(_backward, _setup_context)


# --------------------------------------------------------------------------- public API


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")


def _check_packed_scales(packed, scales, num_cols: int, device: torch.device, k_from: str) -> None:
    _check_tensor(packed, "packed")
    _check_tensor(scales, "scales")
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise TypeError(f"packed: expected a 2-D torch.uint8 tensor (from golf_fast.pack_int6), got "
                        f"{packed.dtype} of shape {tuple(packed.shape)}")
    expected = packed_row_bytes(num_cols)
    if packed.shape[1] != expected:
        raise ValueError(f"packed: {k_from} = {num_cols} needs {expected} bytes per packed row, got shape "
                         f"{tuple(packed.shape)} (K does not match the packed weight)")
    if scales.dtype != torch.float16:
        raise TypeError(f"scales: expected torch.float16 (one per output row), got {scales.dtype}")
    if scales.shape != (packed.shape[0],):
        raise ValueError(f"scales: expected shape ({packed.shape[0]},), one per row of packed, got "
                         f"{tuple(scales.shape)}")
    for name, t in (("packed", packed), ("scales", scales)):
        if t.device != device:
            raise ValueError(f"{name}: expected a tensor on {device} (like the others), got {t.device}")
    reject_meta(packed=packed, scales=scales)
    check_int6_padding(packed, num_cols)


def int6_linear(x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor] = None,
                lowrank: Optional[tuple[torch.Tensor, torch.Tensor]] = None, *, backend: str = "auto",
                fallback: Optional[str] = None) -> torch.Tensor:
    """``F.linear(x, code·s, bias) + x·(A·B)ᵀ`` from packed int6 codes, fp32 accumulation.

    ``x`` (..., K) bf16/fp16; ``packed`` (N, packed_row_bytes(K)) uint8 packed with this very K
    (its padding columns are checked, see ``check_int6_padding``); ``scales`` (N,) float16;
    ``bias`` (N,) in x's dtype; ``lowrank = (A, B)`` with A (N, r), B (r, K) floating. Returns
    (..., N) in x's dtype. Differentiable in ``x``, ``bias``, ``A`` and ``B`` (not the codes).
    ``backend``: ``"auto"`` (Triton on CUDA, the reference on CPU), ``"triton"`` or ``"reference"``.
    """
    _check_tensor(x, "x")
    if x.dtype not in ACT_DTYPES:
        raise TypeError(f"x: expected dtype torch.bfloat16 or torch.float16, got {x.dtype}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"x: expected shape (..., K) with K >= 1, got {tuple(x.shape)}")
    _check_packed_scales(packed, scales, x.shape[-1], x.device, "x.shape[-1]")
    reject_meta(x=x)
    n = packed.shape[0]
    if bias is not None:
        _check_tensor(bias, "bias")
        if bias.shape != (n,) or bias.dtype != x.dtype:
            raise ValueError(f"bias: expected shape ({n},) and dtype {x.dtype}, got {tuple(bias.shape)} {bias.dtype}")
        if bias.device != x.device:
            raise ValueError(f"bias: expected a tensor on {x.device} (like x), got {bias.device}")
    a = b = None
    if lowrank is not None:
        if not isinstance(lowrank, (tuple, list)) or len(lowrank) != 2:
            raise TypeError("lowrank: expected a pair (A, B) with A (N, r) and B (r, K)")
        a, b = lowrank
        _check_tensor(a, "lowrank[0]")
        _check_tensor(b, "lowrank[1]")
        if not (a.is_floating_point() and b.is_floating_point()):
            raise TypeError(f"lowrank: expected floating-point A and B, got {a.dtype} and {b.dtype}")
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != n or b.shape[1] != x.shape[-1] or a.shape[1] != b.shape[0]:
            raise ValueError(f"lowrank: expected A ({n}, r) and B (r, {x.shape[-1]}), got "
                             f"{tuple(a.shape)} and {tuple(b.shape)}")
        if a.device != x.device or b.device != x.device:
            raise ValueError(f"lowrank: expected A and B on {x.device} (like x), got {a.device} and {b.device}")
    return LINEAR_OP(x, packed, scales, bias, a, b, backend=backend, fallback=fallback)


def dequantize_int6(packed: torch.Tensor, scales: torch.Tensor, num_cols: int, dtype: torch.dtype = torch.bfloat16,
                    *, backend: str = "auto", fallback: Optional[str] = None) -> torch.Tensor:
    """One-shot dequantization: (N, packed_row_bytes(num_cols)) uint8 + (N,) fp16 scales → (N, num_cols).

    ``out = code · s`` computed in fp32 and rounded once to ``dtype`` (bf16, fp16 or fp32).
    """
    if not isinstance(num_cols, int) or isinstance(num_cols, bool) or num_cols < 1:
        raise ValueError(f"num_cols: expected an int >= 1, got {num_cols!r}")
    if dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise TypeError(f"dtype: expected torch.bfloat16, torch.float16 or torch.float32, got {dtype}")
    _check_tensor(packed, "packed")
    _check_packed_scales(packed, scales, num_cols, packed.device, "num_cols")
    return DEQUANT_OP(packed, scales, num_cols, dtype, backend=backend, fallback=fallback)
