"""A fresh :class:`GPT` rebuilt from an artifact file: its config and its dequantized weights.

Loading parses the checksummed, pickle-free artifact (``golf_fast.artifact``); nothing in the file
is executed. Quantized matrices come back as ``codes · scale`` in float32; the non-persistent
RoPE ``inv_freq`` buffers are recomputed from the config.
"""

from __future__ import annotations

import os
from typing import Union

import torch

from golf_fast.artifact import Artifact, dequantize_state, load_artifact
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT


def model_from_artifact(art: Artifact, device: Union[str, torch.device] = "cpu", attention: str = "auto") -> GPT:
    """A GPT with ``art``'s config and weights on ``device``, attention backend resolved."""
    if not isinstance(art, Artifact):
        raise TypeError(f"art: expected a golf_fast.artifact.Artifact, got {type(art).__name__}")
    if not isinstance(art.config, dict) or not art.config:
        raise ValueError("art: the artifact carries no model config (it was saved with config=None)")
    cfg = ModelConfig(**art.config)
    with torch.device("meta"):
        model = GPT(cfg, attention_backend=attention)
    model = model.to_empty(device="cpu")
    model.load_unbanked_state_dict(dequantize_state(art.state, torch.float32))
    for name, buf in model.named_buffers():  # non-persistent buffers (RoPE inv_freq) are rebuilt
        if name.endswith("inv_freq"):
            rd = cfg.rope_dims or cfg.head_dim
            buf.copy_(1.0 / (cfg.rope_base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd)))
    device = torch.device(device)
    model = model.to(device)
    model.resolve_attention(device)
    return model


def load_model_from_artifact(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                             attention: str = "auto") -> GPT:
    """:func:`model_from_artifact` of the artifact file at ``path`` (a missing or damaged file raises)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a path to an artifact file, got {type(path).__name__}")
    return model_from_artifact(load_artifact(path), device, attention)
