"""Quantized-code formats: int6 (packed for kernels), int7 and int8 (one int8 each), per-row scales.

Conventions (parameter_golf.md §5.2):

* symmetric codes ``q ∈ [−qmax, qmax]`` with ``qmax = 2^(bits−1) − 1`` (31 for int6, 63 for int7,
  127 for int8), stored one per int8 byte;
* one scale per output row, stored as float16, ``W ≈ q · s[:, None]``;
* SDClip scales ``s = clip_sigmas · std(W_row, unbiased) / qmax`` clamped to ≥ 1e-10 and rounded
  to fp16 (the value used for quantization is the fp16 one, so stored and used scales agree).

``QuantizedTensor`` carries codes, scales and bits; ``.packed()`` gives the kernel form (the int6
bit-plane layout of ``golf_fast.ops.int6_pack`` for 6 bits, the int8 codes themselves for 7 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from golf_fast.ops.int6_pack import pack_int6

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)


def qmax(bits: int) -> int:
    """Largest code magnitude for ``bits``-bit symmetric codes: ``2^(bits−1) − 1``."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bits: expected an int in 2..8, got {bits!r}")
    return (1 << (bits - 1)) - 1


def _check_matrix(w: torch.Tensor, name: str) -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(w).__name__}")
    if not w.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {w.dtype}")
    if w.dim() != 2 or w.shape[0] < 1 or w.shape[1] < 2:
        raise ValueError(f"{name}: expected a 2-D (N, K) matrix with K >= 2, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name}: contains NaN or inf")


def sdclip_scales(w: torch.Tensor, bits: int, clip_sigmas: float) -> torch.Tensor:
    """Per-row SDClip scales, (N,) float16: ``clip_sigmas · std(W_row) / qmax``, at least 1e-10."""
    _check_matrix(w, "w")
    if not (isinstance(clip_sigmas, (int, float)) and clip_sigmas > 0):
        raise ValueError(f"clip_sigmas: expected a positive number, got {clip_sigmas!r}")
    std = w.float().std(dim=1, unbiased=True)
    s16 = (clip_sigmas * std / qmax(bits)).clamp_min(1e-10).to(torch.float16)
    if not torch.compiler.is_compiling() and not s16.is_meta and not bool(torch.isfinite(s16).all()):
        row = int((~torch.isfinite(s16)).nonzero()[0, 0])
        raise ValueError(f"w: row {row}'s SDClip scale clip_sigmas·std/qmax = {float(clip_sigmas * std[row] / qmax(bits)):.4g} "
                         "overflows float16 (max 65504): the weights are too large for fp16 scales (rescale them)")
    return s16


def quantize_rtn(w: torch.Tensor, bits: int, clip_sigmas: float) -> "QuantizedTensor":
    """Round-to-nearest with SDClip scales: ``q = clamp(round(W / s), −qmax, qmax)``."""
    scales = sdclip_scales(w, bits, clip_sigmas)
    m = qmax(bits)
    codes = torch.clamp(torch.round(w.float() / scales.float()[:, None]), -m, m).to(torch.int8)
    return QuantizedTensor(codes=codes, scales=scales, bits=bits)


def dequantize_rows(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``codes · scales[:, None]`` computed in fp32, returned in ``dtype``; codes (N, K) int8, scales (N,)."""
    if codes.dtype != torch.int8 or codes.dim() != 2:
        raise TypeError(f"codes: expected a 2-D int8 tensor, got {codes.dtype} shape {tuple(codes.shape)}")
    if scales.dim() != 1 or scales.shape[0] != codes.shape[0] or not scales.is_floating_point():
        raise ValueError(f"scales: expected a float tensor of shape ({codes.shape[0]},), got {scales.dtype} "
                         f"shape {tuple(scales.shape)}")
    return (codes.float() * scales.float()[:, None]).to(dtype)


@dataclass
class QuantizedTensor:
    """A quantized matrix: codes (N, K) int8 in [−qmax, qmax], scales (N,) float16, bits."""

    codes: torch.Tensor
    scales: torch.Tensor
    bits: int

    def __post_init__(self) -> None:
        m = qmax(self.bits)
        if not isinstance(self.codes, torch.Tensor) or self.codes.dtype != torch.int8 or self.codes.dim() != 2:
            raise TypeError("codes: expected a 2-D int8 tensor")
        if (not isinstance(self.scales, torch.Tensor) or self.scales.dtype != torch.float16
                or self.scales.shape != (self.codes.shape[0],)):
            raise ValueError(f"scales: expected float16 of shape ({self.codes.shape[0]},)")
        if self.codes.numel() and int(self.codes.abs().max()) > m:
            raise ValueError(f"codes: expected values in [-{m}, {m}] for {self.bits} bits")

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.codes.shape)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize_rows(self.codes, self.scales, dtype)

    def packed(self) -> torch.Tensor:
        """The kernels' form: int6 → the packed bit-plane layout (uint8); int7/int8 → int8 codes."""
        if self.bits == 6:
            return pack_int6(self.codes)
        if self.bits in (7, 8):
            return self.codes.contiguous()
        raise ValueError(f"bits: the kernels take 6, 7 or 8 bits, got {self.bits}")
