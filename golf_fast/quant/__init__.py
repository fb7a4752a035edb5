"""Quantization: code formats and scales (formats), the per-role recipe (recipe), the GPTQ driver
(gptq), whole-model GPTQ (quantize_model), the Hessian collector (hessian), int8 per-row gates
(gate), and LQER low-rank corrections of the GPTQ residual (lqer)."""

from golf_fast.quant.hessian import HessianCollector, HessianResult
from golf_fast.quant.formats import (
    QuantizedTensor,
    dequantize_rows,
    qmax,
    quantize_rtn,
    sdclip_scales,
)
from golf_fast.quant.gate import quantize_gate_int8_rows
from golf_fast.quant.gptq import GPTQResult, gptq_quantize, gptq_quantize_batched
from golf_fast.quant.lqer import LowRankFactors, low_rank_factors
from golf_fast.quant.quantize_model import QuantizedModel, quantize_model
from golf_fast.quant.recipe import RECORD_RECIPE, QuantRecipe, RoleRule

__all__ = ["HessianCollector", "HessianResult", "QuantizedTensor", "dequantize_rows", "qmax", "quantize_rtn", "sdclip_scales",
           "GPTQResult", "gptq_quantize", "gptq_quantize_batched", "quantize_gate_int8_rows", "LowRankFactors",
           "low_rank_factors",
           "QuantizedModel", "QuantRecipe", "RECORD_RECIPE", "RoleRule", "quantize_model"]
