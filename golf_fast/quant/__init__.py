"""Quantization: code formats and scales (formats), GPTQ driver, Hessian collector, LQER."""

from golf_fast.quant.hessian import HessianCollector, HessianResult
from golf_fast.quant.formats import (
    QuantizedTensor,
    dequantize_rows,
    qmax,
    quantize_rtn,
    sdclip_scales,
)

__all__ = ["HessianCollector", "HessianResult", "QuantizedTensor", "dequantize_rows", "qmax", "quantize_rtn", "sdclip_scales"]
