"""A fresh :class:`GPT` rebuilt from an artifact file: its config and its dequantized weights.

Loading parses the checksummed, pickle-free artifact (``golf_fast.artifact``); nothing in the file
is executed. The artifact's config is checked like any config (``ModelConfig``'s types and
ranges) and the model is first built on the meta device, so a config that does not match the
artifact's tensors is an ``ArtifactError`` before any weight memory is allocated (LQER entries,
``<matrix>.lqer.*``, are set aside for that comparison and folded into their matrix afterwards; a
malformed one is an ``ArtifactError`` too). Quantized matrices come back as ``codes · scale`` in
float32; the non-persistent RoPE ``inv_freq`` buffers are recomputed from the config.
"""

from __future__ import annotations

import os
from typing import Union

import torch

from golf_fast.artifact import Artifact, ArtifactError, dequantize_state, load_artifact
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT
from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.lqer import pop_state_entries


def _check_state_matches(model: GPT, state: dict) -> None:
    """The artifact's tensors have exactly the names and shapes of ``model``'s (meta) state."""
    want = {k: tuple(v.shape) for k, v in model.unbanked_state_dict().items()}
    got = {k: tuple((v.codes if isinstance(v, QuantizedTensor) else v).shape) for k, v in state.items()}
    if set(want) != set(got):
        raise ArtifactError(f"the artifact's tensors do not match its model config: missing "
                            f"{sorted(set(want) - set(got))[:5]}, unexpected {sorted(set(got) - set(want))[:5]}")
    bad = [k for k in want if want[k] != got[k]]
    if bad:
        raise ArtifactError(f"the artifact's tensor {bad[0]!r} has shape {got[bad[0]]}, its model config needs "
                            f"{want[bad[0]]}")


def model_from_artifact(art: Artifact, device: Union[str, torch.device] = "cpu", attention: str = "auto") -> GPT:
    """A GPT with ``art``'s config and weights on ``device``, attention backend resolved."""
    if not isinstance(art, Artifact):
        raise TypeError(f"art: expected a golf_fast.artifact.Artifact, got {type(art).__name__}")
    if not isinstance(art.config, dict) or not art.config:
        raise ValueError("art: the artifact carries no model config (it was saved with config=None)")
    try:
        cfg = ModelConfig(**art.config)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"the artifact's model config is invalid: {exc}") from None
    with torch.device("meta"):
        model = GPT(cfg, attention_backend=attention)
    plain = dict(art.state)
    try:
        pop_state_entries(plain)  # the LQER factors: compared below as part of their matrix
    except (TypeError, ValueError, IndexError) as exc:
        raise ArtifactError(f"the artifact's LQER entries are malformed: {exc}") from None
    _check_state_matches(model, plain)
    try:
        dense = dequantize_state(art.state, torch.float32)
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:  # ArtifactError is a ValueError
        raise ArtifactError(f"the artifact's tensors cannot be dequantized: {exc}") from None
    model = model.to_empty(device="cpu")
    model.load_unbanked_state_dict(dense)
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
