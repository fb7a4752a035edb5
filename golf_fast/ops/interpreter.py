"""Corrections to Triton's interpreter (``TRITON_INTERPRET=1``) for bfloat16, applied only while it runs.

The interpreter stores a bfloat16 tensor as its raw uint16 bit patterns (``_get_np_dtype``). Two
of its operations then compute something other than what the GPU computes (Triton 3.9, numpy 2.x):

1. ``tl.dot`` (``InterpreterBuilder.create_dot``) hands that storage straight to ``np.matmul``: a
   bf16 dot multiplies the *integers* of the bit patterns. The result is finite and wildly wrong
   (errors of 1e13 and more), so a kernel fed bf16 returns garbage without raising. fp16 and fp32
   dots are right.
2. ``x.to(tl.bfloat16)`` from float32 (``cast_impl``, and ``create_fp_to_fp``) goes through
   ``_convert_float``, which *truncates* (rounds toward zero; with an explicit round-to-nearest
   mode it rounds half up and can drop the carry into the exponent) where the GPU rounds to
   nearest even. Iterated bf16 kernels (Newton-Schulz) then drift with a bias the GPU lacks.

:func:`interpreter_fixes` replaces those two builder methods for the duration of a block: a dot
with a bf16 operand stored as bit patterns decodes it to float32 first (exact: bf16 is the top
half of a float32) and multiplies in float32, as the GPU's tensor cores do (fp32 accumulation); a
float32 → bfloat16 cast rounds to nearest even (NaN stays NaN). Every other dtype and cast goes to
Triton's own code, and if a Triton release stops storing bf16 as uint16 the fixes step aside.

``TritonKernel`` (``golf_fast.ops.triton_support``) wraps every interpreted launch in
:func:`interpreter_fixes`, so every Triton kernel of this package is right under the interpreter
without any patch on the user's side. Nothing is changed outside those launches (the methods are
restored on exit), and nothing at import. The interpreter is a correctness tool: this makes it
right, not fast. Elementwise bf16 arithmetic in the interpreter (``binary_op`` on bit patterns) is
still wrong; the package's kernels do their arithmetic in float32 and only load, store and
``tl.dot`` bf16 values.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np

_LOCK = threading.RLock()
_DEPTH = 0


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (uint16): exact."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even (as
    ``torch.Tensor.to(torch.bfloat16)`` and the GPU do); NaN maps to a quiet NaN, ±inf stays ±inf,
    and a value past the largest bf16 rounds to inf."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    bits = v.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(v)
    if nan.any():
        rounded = np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
    return rounded.reshape(v.shape)


def _stored_as_bits(handle, tl) -> bool:
    return handle.dtype.scalar == tl.bfloat16 and handle.data.dtype == np.uint16


def _as_f32(handle, tl) -> np.ndarray:
    return bf16_bits_to_f32(handle.data) if _stored_as_bits(handle, tl) else handle.data.astype(np.float32)


@contextlib.contextmanager
def interpreter_fixes() -> Iterator[None]:
    """Within the block, Triton's interpreter computes bf16 ``tl.dot`` on values (fp32 accumulation)
    and rounds float32 → bfloat16 casts to nearest even. Re-entrant and thread-safe; restores
    Triton's own methods when the outermost block exits."""
    global _DEPTH
    import triton.language as tl
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    with _LOCK:
        if _DEPTH:
            _DEPTH += 1
            try:
                yield
            finally:
                _DEPTH -= 1
            return
        original_dot = InterpreterBuilder.create_dot
        original_cast = InterpreterBuilder.cast_impl
        original_fp_to_fp = InterpreterBuilder.create_fp_to_fp

        def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
            if not (_stored_as_bits(a, tl) or _stored_as_bits(b, tl)):
                return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)
            acc = np.matmul(_as_f32(a, tl), _as_f32(b, tl), dtype=np.float32)
            return TensorHandle((acc + d.data.astype(np.float32)).astype(d.data.dtype), d.dtype.scalar)

        def rounds_to_bf16(src, dst_type) -> bool:
            return (src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16
                    and src.data.dtype == np.float32)

        def cast_impl(self, src, dst_type):
            if rounds_to_bf16(src, dst_type):
                return TensorHandle(f32_to_bf16_bits(src.data), tl.bfloat16)
            return original_cast(self, src, dst_type)

        def create_fp_to_fp(self, src, dst_type, rounding_mode):
            from triton._C.libtriton import ir

            if rounds_to_bf16(src, dst_type) and rounding_mode == ir.ROUNDING_MODE.RTNE:
                return TensorHandle(f32_to_bf16_bits(src.data), tl.bfloat16)
            return original_fp_to_fp(self, src, dst_type, rounding_mode)

        InterpreterBuilder.create_dot = create_dot
        InterpreterBuilder.cast_impl = cast_impl
        InterpreterBuilder.create_fp_to_fp = create_fp_to_fp
        _DEPTH = 1
        try:
            yield
        finally:
            _DEPTH = 0
            InterpreterBuilder.create_dot = original_dot
            InterpreterBuilder.cast_impl = original_cast
            InterpreterBuilder.create_fp_to_fp = original_fp_to_fp
