"""Quantization: code formats and scales (formats), the per-role recipe (recipe), the GPTQ driver
(gptq), whole-model GPTQ (quantize_model), the Hessian collector (hessian)."""

from golf_fast.quant.hessian import HessianCollector, HessianResult
from golf_fast.quant.formats import (
    QuantizedTensor,
    dequantize_rows,
    qmax,
    quantize_rtn,
    sdclip_scales,
)
from golf_fast.quant.gptq import GPTQResult, gptq_quantize, gptq_quantize_batched
from golf_fast.quant.quantize_model import QuantizedModel, quantize_model
from golf_fast.quant.recipe import RECORD_RECIPE, QuantRecipe, RoleRule

__all__ = ["HessianCollector", "HessianResult", "QuantizedTensor", "dequantize_rows", "qmax", "quantize_rtn", "sdclip_scales",
           "GPTQResult", "gptq_quantize", "gptq_quantize_batched",
           "QuantizedModel", "QuantRecipe", "RECORD_RECIPE", "RoleRule", "quantize_model"]
