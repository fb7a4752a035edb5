"""The record GPT (R0611) with switchable features, parameter banks and varlen attention backends."""

from golf_fast.model.attention import resolve_attention_backend, resolved_attention_backends, varlen_attention
from golf_fast.model.config import ModelConfig
from golf_fast.model.from_artifact import (WEIGHTS, int6_banks_from_state, load_model_from_artifact,
                                          model_from_artifact)
from golf_fast.model.gpt import BANK_NAMES, EMBED_NAME, GPT
from golf_fast.model.precision import PRECISIONS, apply_precision

__all__ = ["GPT", "ModelConfig", "BANK_NAMES", "EMBED_NAME", "WEIGHTS", "int6_banks_from_state",
           "load_model_from_artifact", "model_from_artifact", "resolve_attention_backend",
           "resolved_attention_backends", "varlen_attention", "PRECISIONS", "apply_precision"]
