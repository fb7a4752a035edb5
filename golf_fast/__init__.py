"""golf_fast: fast, tested kernels and a lean trainer for the OpenAI parameter-golf challenge.

Importing golf_fast works without a GPU, without Triton and without the compiled extension
(``golf_fast._C``); ``HAS_EXT`` and ``HAS_TRITON`` say what is there and ``golf_fast.status()``
says how to get what is missing. No CUDA initialization or compilation happens at import.
"""

from __future__ import annotations

from golf_fast._availability import load_extension as _load_extension
from golf_fast._availability import report as status
from golf_fast._availability import triton_status as _triton_status

__version__ = "0.1.0"

HAS_EXT: bool = _load_extension()[0]
"""True when golf_fast._C (C++ CPU kernels, and CUDA kernels if built with CUDA) is importable."""

HAS_TRITON: bool = _triton_status()[0]
"""True when Triton is importable (its GPU kernels need CUDA, or TRITON_INTERPRET=1 on CPU)."""

from golf_fast.ops.int6_pack import pack_int6, packed_row_bytes, unpack_int6  # noqa: E402
from golf_fast.ops.int6_matmul import dequantize_int6, int6_linear  # noqa: E402
from golf_fast.ops.newton_schulz import newton_schulz  # noqa: E402
from golf_fast.ops.hessian import hessian_accumulate_  # noqa: E402
from golf_fast.ops.softcapped_ce import softcapped_cross_entropy, softcapped_cross_entropy_ref  # noqa: E402
from golf_fast.ops.fused_mlp import leaky_relu_square_mlp, leaky_relu_square_mlp_ref  # noqa: E402
from golf_fast.quant.gptq import GPTQResult, gptq_quantize, gptq_quantize_batched  # noqa: E402
from golf_fast import nn  # noqa: E402
from golf_fast import optim  # noqa: E402

__all__ = ["HAS_EXT", "HAS_TRITON", "status", "pack_int6", "unpack_int6", "packed_row_bytes", "__version__",
           "int6_linear", "dequantize_int6", "nn", "newton_schulz", "optim", "hessian_accumulate_",
           "gptq_quantize", "gptq_quantize_batched", "GPTQResult",
           "softcapped_cross_entropy", "softcapped_cross_entropy_ref", "leaky_relu_square_mlp",
           "leaky_relu_square_mlp_ref"]
