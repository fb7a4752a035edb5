"""Parameter precision recipes of the GPT.

* ``fp32``: every parameter an fp32 master (golf_fast's own recipe; compute dtype from autocast).
* ``record``: the R0611 record's recipe — ``model.bfloat16()`` then ``restore_fp32_params``: the
  four banks, every parameter with fewer than 2 dims, and every parameter whose name contains one
  of the record's control-tensor patterns (:data:`CONTROL_PATTERNS`: scales, mixes, gains, skip
  weights/gates, lambdas, gate weights, smear) go back to fp32; what stays bf16 is the token
  embedding (and with it its Adam state and, through the embedding lookup, the residual stream)
  and the non-persistent RoPE ``inv_freq`` buffers (bf16-rounded frequencies, as in the record,
  whose ``Rotary`` upcasts the cast buffer with ``.float()``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from golf_fast.model.gpt import BANK_NAMES

PRECISIONS = ("fp32", "record")
CONTROL_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes", "q_gain",
                    "skip_weight", "skip_weights", "skip_gates", "parallel_post_lambdas", "parallel_resid_lambdas",
                    "attn_gate_proj", "attn_gate_w", "smear_gate", "smear_lambda")
"""The record's ``CONTROL_TENSOR_NAME_PATTERNS`` (substring matches)."""


def keeps_fp32(name: str, p: torch.Tensor) -> bool:
    """Whether the record recipe keeps parameter ``name`` in fp32."""
    return name in BANK_NAMES or p.dim() < 2 or any(pat in name for pat in CONTROL_PATTERNS)


@torch.no_grad()
def apply_precision(model: nn.Module, precision: str) -> nn.Module:
    """Cast ``model``'s parameters (and buffers) in place for ``precision``; returns ``model``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if precision == "fp32":
        return model.float()
    model.bfloat16()
    for name, p in model.named_parameters():
        if keeps_fp32(name, p):
            p.data = p.data.float()
    return model


def precision_summary(model: nn.Module) -> dict[str, int]:
    """``{dtype name: parameter count}`` (for the run log)."""
    out: dict[str, int] = {}
    for p in model.parameters():
        k = str(p.dtype).replace("torch.", "")
        out[k] = out.get(k, 0) + p.numel()
    return out
