"""Argument checks the public ops share: meta tensors, finite scalars, memory overlap.

Kept out of ``dispatch`` (which routes calls) so the checks stay in the public functions: each
raises an error that names the argument and says what was expected.
"""

from __future__ import annotations

import math

import torch

FP32_MAX = float(torch.finfo(torch.float32).max)


def reject_meta(**tensors: torch.Tensor) -> None:
    """``ValueError`` if any of ``name=tensor`` is on the meta device: the ops read values."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_meta:
            raise ValueError(f"{name}: meta tensors are not supported (this op reads the tensor's values); "
                             "pass a CPU or CUDA tensor")


def finite_number(value, name: str, *, lo: float = -math.inf, hi: float = math.inf, fp32: bool = False) -> float:
    """``value`` as a float: a real number (not a bool), finite, in [lo, hi], and representable in
    float32 when ``fp32`` (a kernel that takes it as an fp32 scalar would overflow to inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a finite float, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite float, got {value!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name}: expected a number in [{lo}, {hi}], got {value!r}")
    if fp32 and abs(v) > FP32_MAX:
        raise ValueError(f"{name}: {value!r} overflows float32 (|{name}| must be at most {FP32_MAX:.4g})")
    return v


def _byte_extent(t: torch.Tensor) -> tuple[int, int]:
    """[first, last) byte addresses a strided tensor can touch."""
    if t.numel() == 0:
        return 0, 0
    lo = hi = t.storage_offset()
    for size, stride in zip(t.shape, t.stride()):
        step = (size - 1) * stride
        lo, hi = (lo + step, hi) if step < 0 else (lo, hi + step)
    base = t.untyped_storage().data_ptr()
    return base + lo * t.element_size(), base + (hi + 1) * t.element_size()


def reject_overlap(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    """``ValueError`` if ``a`` (written in place) and ``b`` (read) share any memory."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return
    a0, a1 = _byte_extent(a)
    b0, b1 = _byte_extent(b)
    if a0 < b1 and b0 < a1:
        raise ValueError(f"{b_name}: shares memory with {a_name}, which is updated in place; pass a copy "
                         f"({b_name}.clone())")
