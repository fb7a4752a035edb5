"""The packed int6 format: 6-bit codes in [-31, 31] stored in 0.75 byte each.

Layout (one row of ``W`` at a time; rows are independent and contiguous)
-------------------------------------------------------------------------
For a row of ``K`` codes let ``Kp = ceil(K / 16) * 16`` (padding columns hold code 0) and
``u = code + 32`` (an unsigned 6-bit value in [1, 63]). The row is stored in
``packed_row_bytes(K) = 3 * Kp / 4`` bytes as two bit planes, FP6-LLM's "2 + 4" split::

    bytes [0, Kp/2)          low plane,  4 bits per code: byte j = (u[2j] & 15) | (u[2j+1] & 15) << 4
    bytes [Kp/2, 3*Kp/4)     high plane, 2 bits per code: byte g = Σ_{i<4} (u[4g+i] >> 4) << 2i

Why this layout (chosen for the fused int6 matmul):

* No code straddles a byte: a dense 6-bit stream puts 4 codes in 3 bytes with codes split across
  byte boundaries, so a kernel needs 3-byte gathers and variable shifts. Here column ``c`` is
  ``lo[c // 2] >> 4(c % 2) & 15 | (hi[c // 4] >> 2(c % 4) & 3) << 4``: two loads at fixed
  power-of-two strides, shifts by ``c % 2`` / ``c % 4`` only.
* Each plane is a dense, aligned stream: a (BLOCK_N × BLOCK_K) weight tile is one
  (BLOCK_N × BLOCK_K/2) load and one (BLOCK_N × BLOCK_K/4) load; with K a multiple of 64 every
  row starts 16-byte aligned (K = 512 → 384 bytes, K = 2048 → 1536), so loads vectorize.
* Row-major with per-row scales: a GEMV program streams whole rows, a GEMM tile takes a row slab,
  and per-output-channel scales (parameter-golf's ``s``, one per row) apply after the K loop.
* The offset ``+32`` (not two's complement) makes the dequantization an integer subtract, the
  form the Marlin-style magic-number conversion wants.

Shapes and dtypes: ``codes`` is (N, K) int8 in [-31, 31] → ``packed`` (N, 3·Kp/4) uint8. Stacks
of matrices (parameter banks, (B, N, K)) are packed as (B·N, K). int7 and int8 codes are not
packed (one int8 each); see ``golf_fast.quant.formats``.

Naming ladder: ``_pack_int6_kernel`` / ``_unpack_int6_kernel`` (Triton, ``int6_pack_kernels.py``) → ``pack_int6_triton`` /
``unpack_int6_triton`` (launchers) → ``golf_fast::pack_int6`` / ``golf_fast::unpack_int6``
(torch.library) → ``golf_fast.pack_int6`` / ``golf_fast.unpack_int6``; references
``pack_int6_ref`` / ``unpack_int6_ref``; C++ CPU kernels ``golf_fast::_pack_int6_cpp`` /
``_unpack_int6_cpp``.
"""

from __future__ import annotations

from typing import Optional

import torch

from golf_fast.ops.checks import reject_meta
from golf_fast.ops.dispatch import KernelOp, ext_loaded, triton_in_interpreter, triton_on_cuda
from golf_fast.ops.int6_pack_kernels import PACK_CONFIG, UNPACK_CONFIG, _pack_int6_kernel, _unpack_int6_kernel
from golf_fast.ops.triton_support import cdiv, check_launch_device

INT6_MAX = 31
PAD_COLS = 16
_OFFSET = 32


def padded_cols(num_cols: int) -> int:
    """Columns after padding to a multiple of 16."""
    return -(-num_cols // PAD_COLS) * PAD_COLS


def packed_row_bytes(num_cols: int) -> int:
    """Bytes of one packed row of ``num_cols`` int6 codes: ``3 * ceil(num_cols / 16) * 16 / 4``."""
    if not isinstance(num_cols, int) or isinstance(num_cols, bool) or num_cols < 1:
        raise ValueError(f"num_cols: expected an int >= 1, got {num_cols!r}")
    return _row_bytes(num_cols)


def _row_bytes(num_cols):
    """``packed_row_bytes`` without the check (also takes the SymInts of fake tensors)."""
    return padded_cols(num_cols) // 4 * 3


# --------------------------------------------------------------------------- references


def pack_int6_ref(codes: torch.Tensor) -> torch.Tensor:
    """Eager reference of the packing: (N, K) int8 codes → (N, 3·Kp/4) uint8, layout above."""
    n, k = codes.shape
    kp = padded_cols(k)
    u = torch.full((n, kp), _OFFSET, dtype=torch.int32, device=codes.device)
    u[:, :k] = codes.to(torch.int32) + _OFFSET
    lo, hi = u & 15, u >> 4
    lo_plane = lo[:, 0::2] | (lo[:, 1::2] << 4)
    hi_plane = hi[:, 0::4] | (hi[:, 1::4] << 2) | (hi[:, 2::4] << 4) | (hi[:, 3::4] << 6)
    return torch.cat([lo_plane, hi_plane], dim=1).to(torch.uint8)


def unpack_int6_ref(packed: torch.Tensor, num_cols: int) -> torch.Tensor:
    """Eager reference of the unpacking: (N, 3·Kp/4) uint8 → (N, num_cols) int8 codes."""
    kp = padded_cols(num_cols)
    p = packed.to(torch.int32)
    lo_plane, hi_plane = p[:, : kp // 2], p[:, kp // 2:]
    cols = torch.arange(num_cols, device=packed.device)
    low = (lo_plane[:, cols // 2] >> (4 * (cols % 2))) & 15
    high = (hi_plane[:, cols // 4] >> (2 * (cols % 4))) & 3
    return ((low | (high << 4)) - _OFFSET).to(torch.int8)


def _pack_fake(codes: torch.Tensor) -> torch.Tensor:
    return codes.new_empty((codes.shape[0], _row_bytes(codes.shape[1])), dtype=torch.uint8)


def _unpack_fake(packed: torch.Tensor, num_cols: int) -> torch.Tensor:
    return packed.new_empty((packed.shape[0], num_cols), dtype=torch.int8)


# --------------------------------------------------------------------------- launchers


def pack_int6_triton(codes: torch.Tensor) -> torch.Tensor:
    """Launch ``_pack_int6_kernel``. Inputs are assumed valid (see ``pack_int6``)."""
    check_launch_device(codes, what="pack_int6")
    codes = codes if codes.stride(1) == 1 else codes.contiguous()
    n, k = codes.shape
    out = torch.empty((n, packed_row_bytes(k)), dtype=torch.uint8, device=codes.device)
    if n == 0:
        return out
    c = PACK_CONFIG.constexprs
    lo_bytes = padded_cols(k) // 2
    grid = (cdiv(n, c["BLOCK_N"]), cdiv(lo_bytes // 2, c["BLOCK_G"]))
    _pack_int6_kernel[grid](codes, out, n, k, codes.stride(0), out.stride(0), lo_bytes,
                            num_warps=PACK_CONFIG.num_warps, **c)
    return out


def unpack_int6_triton(packed: torch.Tensor, num_cols: int) -> torch.Tensor:
    """Launch ``_unpack_int6_kernel``. Inputs are assumed valid (see ``unpack_int6``)."""
    check_launch_device(packed, what="unpack_int6")
    packed = packed if packed.stride(1) == 1 else packed.contiguous()
    n = packed.shape[0]
    out = torch.empty((n, num_cols), dtype=torch.int8, device=packed.device)
    if n == 0:
        return out
    c = UNPACK_CONFIG.constexprs
    grid = (cdiv(n, c["BLOCK_N"]), cdiv(num_cols, c["BLOCK_K"]))
    _unpack_int6_kernel[grid](packed, out, n, num_cols, packed.stride(0), out.stride(0),
                              padded_cols(num_cols) // 2, num_warps=UNPACK_CONFIG.num_warps, **c)
    return out


# --------------------------------------------------------------------------- ops


def _pack_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    return (torch.randint(-INT6_MAX, INT6_MAX + 1, (37, 83), dtype=torch.int8, device=device),)


def _unpack_selfcheck_inputs(device: torch.device, dtype: torch.dtype) -> tuple:
    codes = torch.randint(-INT6_MAX, INT6_MAX + 1, (37, 83), dtype=torch.int8, device=device)
    return (pack_int6_ref(codes), 83)


PACK_OP = KernelOp("pack_int6", pack_int6_ref, fake=_pack_fake, selfcheck_inputs=_pack_selfcheck_inputs)
PACK_OP.add_backend("triton", "cuda", pack_int6_triton, available=triton_on_cuda)
PACK_OP.add_backend("triton", "cpu", pack_int6_triton, available=triton_in_interpreter)
PACK_OP.add_backend("cpp", "cpu", lambda codes: torch.ops.golf_fast._pack_int6_cpp(codes), available=ext_loaded)

UNPACK_OP = KernelOp("unpack_int6", unpack_int6_ref, fake=_unpack_fake, selfcheck_inputs=_unpack_selfcheck_inputs)
UNPACK_OP.add_backend("triton", "cuda", unpack_int6_triton, available=triton_on_cuda)
UNPACK_OP.add_backend("triton", "cpu", unpack_int6_triton, available=triton_in_interpreter)
UNPACK_OP.add_backend("cpp", "cpu", lambda p, k: torch.ops.golf_fast._unpack_int6_cpp(p, k), available=ext_loaded)


# --------------------------------------------------------------------------- public API


def check_int6_padding(packed: torch.Tensor, num_cols: int) -> None:
    """The packed form carries its true K in its padding: columns ``num_cols .. Kp−1`` must hold
    code 0 (as ``pack_int6`` writes them). A form packed with a larger K in the same 16-column
    padding holds real codes there and is refused; if those codes are all zero, reading it with
    the smaller K gives exactly the same matrix product, so nothing is lost. Skipped while
    compiling and when ``num_cols`` is a multiple of 16 (no padding: K is exact from the width)."""
    kp = padded_cols(num_cols)
    if kp == num_cols or torch.compiler.is_compiling() or packed.numel() == 0:
        return
    cols = torch.arange(num_cols, kp, device=packed.device)
    p = packed.to(torch.int32)
    low = (p[:, cols // 2] >> (4 * (cols % 2))) & 15
    high = (p[:, kp // 2 + cols // 4] >> (2 * (cols % 4))) & 3
    codes = (low | (high << 4)) - _OFFSET
    nonzero = codes.ne(0).any(dim=0)
    if bool(nonzero.any()):
        true_k = num_cols + int(nonzero.nonzero().max()) + 1
        raise ValueError(f"packed: columns {num_cols}..{kp - 1} are padding for num_cols={num_cols} but hold "
                         f"nonzero codes: this weight was packed with K >= {true_k}, not {num_cols}")


def check_int6_codes(codes: torch.Tensor, name: str = "codes") -> None:
    """Validate (N, K) int8 codes in [-31, 31]; the value check is skipped while compiling."""
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype != torch.int8:
        raise TypeError(f"{name}: expected dtype torch.int8 (one int6 code per byte), got {codes.dtype}")
    if codes.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (N, K) tensor (flatten banks to (B*N, K)), "
                         f"got shape {tuple(codes.shape)}")
    if codes.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one column, got shape {tuple(codes.shape)}")
    reject_meta(**{name: codes})
    if not torch.compiler.is_compiling() and codes.numel():
        lo, hi = int(codes.min()), int(codes.max())
        if lo < -INT6_MAX or hi > INT6_MAX:
            raise ValueError(f"{name}: int6 codes must lie in [-{INT6_MAX}, {INT6_MAX}], got values in [{lo}, {hi}]")


def pack_int6(codes: torch.Tensor, *, backend: str = "auto", fallback: Optional[str] = None) -> torch.Tensor:
    """Pack (N, K) int8 codes in [-31, 31] into the (N, 3·ceil(K/16)·4) uint8 layout above.

    ``backend``: ``"auto"`` (Triton on CUDA, the C++ kernel or the reference on CPU), ``"triton"``,
    ``"cpp"`` or ``"reference"``. ``fallback="reference"`` runs the reference when the requested
    kernel is unavailable instead of raising. The round trip with ``unpack_int6`` is bit-exact.
    """
    check_int6_codes(codes)
    return PACK_OP(codes, backend=backend, fallback=fallback)


def unpack_int6(packed: torch.Tensor, num_cols: int, *, backend: str = "auto",
                fallback: Optional[str] = None) -> torch.Tensor:
    """Unpack the layout above back into (N, num_cols) int8 codes in [-31, 31].

    ``num_cols`` is checked against the packed form: its width, and its padding columns, which
    must hold code 0 (``check_int6_padding``)."""
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed: expected a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed: expected dtype torch.uint8 (from pack_int6), got {packed.dtype}")
    if packed.dim() != 2:
        raise ValueError(f"packed: expected a 2-D (N, bytes) tensor, got shape {tuple(packed.shape)}")
    expected = packed_row_bytes(num_cols)
    if packed.shape[1] != expected:
        raise ValueError(f"packed: expected {expected} bytes per row for num_cols={num_cols}, "
                         f"got shape {tuple(packed.shape)}")
    reject_meta(packed=packed)
    check_int6_padding(packed, num_cols)
    return UNPACK_OP(packed, num_cols, backend=backend, fallback=fallback)
