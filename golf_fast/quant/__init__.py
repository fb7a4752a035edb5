"""Quantization: code formats and scales (formats), GPTQ driver, Hessian collector, LQER."""

from golf_fast.quant.hessian import HessianCollector, HessianResult
from golf_fast.quant.formats import (
    QuantizedTensor,
    dequantize_rows,
    qmax,
    quantize_rtn,
    sdclip_scales,
)
from golf_fast.quant.gptq import GPTQResult, gptq_quantize, gptq_quantize_batched
from golf_fast.quant.quantize_model import QuantizedModel, QuantRecipe, RoleRule, quantize_model

__all__ = ["HessianCollector", "HessianResult", "QuantizedTensor", "dequantize_rows", "qmax", "quantize_rtn", "sdclip_scales",
           "GPTQResult", "gptq_quantize", "gptq_quantize_batched",
           "QuantizedModel", "QuantRecipe", "RoleRule", "quantize_model"]
