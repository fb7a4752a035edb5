"""The one place where the test suite works around Triton interpreter bugs.

Triton 3.9's interpreter (numpy 2.x) stores bfloat16 tensors as their raw uint16 bit patterns,
and ``create_dot`` hands that storage straight to ``np.matmul``: a bf16 ``tl.dot`` multiplies
integers, not numbers. fp16 and fp32 dots are right. ``patched_bf16_dot()`` replaces
``create_dot`` with a version that decodes bf16 bit patterns to float32 first (an exact
conversion: bf16 is the top half of a float32), and leaves every other dtype to the original.
Tolerances are not loosened anywhere: a bf16 kernel tested under this patch is compared exactly
as an fp16 one would be.

Second bug, same interpreter: ``x.to(tl.bfloat16)`` from float32 goes through ``cast_impl``,
which calls ``_convert_float`` with no rounding mode, so it *truncates* (rounds toward zero)
where the GPU rounds to nearest even. Iterated bf16 kernels (Newton-Schulz) then drift with a
bias the GPU does not have. ``patched_bf16_cast()`` makes that one conversion round to
nearest even (done by torch, exactly as ``tensor.to(torch.bfloat16)``); every other cast is
left to the original. The ``triton_interpret`` fixture applies both patches.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np


def _bf16_bits_to_f32(data: np.ndarray) -> np.ndarray:
    return (data.astype(np.uint32) << 16).view(np.float32)


@contextlib.contextmanager
def patched_bf16_dot() -> Iterator[None]:
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    original = InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar == tl.bfloat16 or b.dtype.scalar == tl.bfloat16:
            a_data = _bf16_bits_to_f32(a.data) if a.dtype.scalar == tl.bfloat16 else a.data.astype(np.float32)
            b_data = _bf16_bits_to_f32(b.data) if b.dtype.scalar == tl.bfloat16 else b.data.astype(np.float32)
            acc = np.matmul(a_data, b_data, dtype=np.float32).astype(d.data.dtype)
            return TensorHandle(acc + d.data, d.dtype.scalar)
        return original(self, a, b, d, input_precision, max_num_imprecise_acc)

    InterpreterBuilder.create_dot = create_dot
    try:
        yield
    finally:
        InterpreterBuilder.create_dot = original


def _f32_to_bf16_bits_rne(data: np.ndarray) -> np.ndarray:
    import torch

    f32 = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    return f32.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).reshape(data.shape)


@contextlib.contextmanager
def patched_bf16_cast() -> Iterator[None]:
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    original = InterpreterBuilder.cast_impl

    def cast_impl(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            return TensorHandle(_f32_to_bf16_bits_rne(src.data), tl.bfloat16)
        return original(self, src, dst_type)

    InterpreterBuilder.cast_impl = cast_impl
    try:
        yield
    finally:
        InterpreterBuilder.cast_impl = original
