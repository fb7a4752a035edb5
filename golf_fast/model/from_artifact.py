"""A fresh :class:`GPT` rebuilt from an artifact file: its config and its weights.

Loading parses the checksummed, pickle-free artifact (``golf_fast.artifact``); nothing in the file
is executed. Two ways to hold the block matrices (``weights``):

* ``"dequantized"``: quantized matrices come back as ``codes · scale`` in float32 in the model's
  float banks (every other tensor too);
* ``"int6"``: the int6 block matrices stay packed (0.75 byte per weight) in
  :class:`golf_fast.nn.Int6Bank` banks and the forward multiplies straight from the codes
  (``golf_fast.int6_linear``: the fused kernel on CUDA, the eager reference on CPU); no dense
  block matrix is ever made. The float banks are dropped. Every block matrix must be int6. LQER
  factors of block matrices become the banks' low-rank terms (added in the same kernel).

Everything else (embedding, control tensors) is dequantized to float32. The non-persistent RoPE
``inv_freq`` buffers are recomputed from the config.

A file may come from anyone: the artifact's config is checked like any config (``ModelConfig``'s
types and ranges) and the model is first built on the meta device, so a config that does not match
the artifact's tensors is an ``ArtifactError`` before any weight memory is allocated (LQER entries,
``<matrix>.lqer.*``, are set aside for that comparison); any later failure to place the tensors
is an ``ArtifactError`` too.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Union

import torch

from golf_fast.artifact import Artifact, ArtifactError, dequantize_state, load_artifact
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import BANK_NAMES, GPT, bank_matrix_names
from golf_fast.nn.int6_bank import Int6Bank
from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.lqer import LowRankFactors, pop_state_entries, to_state_entries

WEIGHTS = ("dequantized", "int6")


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


def int6_banks_from_state(state: Mapping, cfg: ModelConfig, device: Union[str, torch.device] = "cpu",
                          lqer: Optional[Mapping[str, LowRankFactors]] = None) -> dict[str, Int6Bank]:
    """The four :class:`Int6Bank` banks of an artifact state (name → QuantizedTensor), on ``device``.

    ``lqer``: matrix name → LQER factors (``golf_fast.quant.lqer.pop_state_entries``); they become
    the banks' low-rank terms (fp32 ``A = qA·sA``, ``B = qB·sB``), so ``W = q·s + A·B`` exactly as
    ``dequantize_state`` folds them. A bank where only some matrices have factors gives the others
    zero factors of the same rank (r extra fp32 rank-1 updates in the kernel's epilogue).
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg: expected a ModelConfig, got {type(cfg).__name__}")
    lqer = dict(lqer or {})
    banks = {}
    for bank, names in bank_matrix_names(cfg.num_layers).items():
        qts = []
        for name in names:
            q = state.get(name) if isinstance(state, Mapping) else None
            if not isinstance(q, QuantizedTensor) or q.bits != 6:
                what = "missing" if q is None else (f"{q.bits}-bit" if isinstance(q, QuantizedTensor)
                                                    else f"a {type(q).__name__}")
                raise ValueError(f"state[{name!r}]: the int6 path needs every block matrix quantized to 6 bits, "
                                 f"got {what}; load with weights='dequantized'")
            qts.append(q)
        lowrank = None
        rank = max((lqer[n].rank for n in names if n in lqer), default=0)
        if rank:
            lowrank = []
            for name, q in zip(names, qts):
                if name in lqer:
                    a, b = lqer[name].factors()
                else:
                    a, b = torch.zeros(q.shape[0], 0), torch.zeros(0, q.shape[1])
                pad = rank - a.shape[1]
                lowrank.append((torch.cat((a, a.new_zeros(a.shape[0], pad)), 1),
                                torch.cat((b, b.new_zeros(pad, b.shape[1])), 0)))
        banks[bank] = Int6Bank.from_quantized([q.codes for q in qts], [q.scales for q in qts], lowrank,
                                              lowrank_dtype=torch.float32).to(device)
    return banks


def _load_weights(model: GPT, art: Artifact, cfg: ModelConfig, weights: str) -> None:
    """Fill ``model`` (already materialized) from ``art``'s state, dequantized or as int6 banks."""
    if weights == "dequantized":
        model.load_unbanked_state_dict(dequantize_state(art.state, torch.float32))
        return
    state = dict(art.state)
    factors = pop_state_entries(state)
    matrices = {n for names in bank_matrix_names(cfg.num_layers).values() for n in names}
    banks = int6_banks_from_state(state, cfg, lqer={n: f for n, f in factors.items() if n in matrices})
    rest = {k: v for k, v in state.items() if k not in matrices}
    for name, f in factors.items():  # LQER of a matrix outside the banks (the embedding): folded
        if name not in matrices:
            rest.update(to_state_entries(name, f))
    rest = dequantize_state(rest, torch.float32)
    missing, unexpected = model.load_state_dict(rest, strict=False)
    missing = [m for m in missing if m not in BANK_NAMES]
    if missing or unexpected:
        raise KeyError(f"state: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.use_int6_banks(banks, drop_float=True)


def model_from_artifact(art: Artifact, device: Union[str, torch.device] = "cpu", attention: str = "auto",
                        weights: str = "dequantized") -> GPT:
    """A GPT with ``art``'s config and weights on ``device``, attention backend resolved.

    ``weights``: ``"dequantized"`` or ``"int6"`` (see the module docstring).
    """
    if not isinstance(art, Artifact):
        raise TypeError(f"art: expected a golf_fast.artifact.Artifact, got {type(art).__name__}")
    if not isinstance(art.config, dict) or not art.config:
        raise ValueError("art: the artifact carries no model config (it was saved with config=None)")
    if weights not in WEIGHTS:
        raise ValueError(f"weights: expected one of {WEIGHTS}, got {weights!r}")
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
    model = model.to_empty(device="cpu")
    try:
        _load_weights(model, art, cfg, weights)
    except ArtifactError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as exc:
        raise ArtifactError(f"the artifact's tensors cannot be loaded: {exc}") from None
    for name, buf in model.named_buffers():  # non-persistent buffers (RoPE inv_freq) are rebuilt
        if name.endswith("inv_freq"):
            rd = cfg.rope_dims or cfg.head_dim
            buf.copy_(1.0 / (cfg.rope_base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd)))
    device = torch.device(device)
    model = model.to(device)
    model.resolve_attention(device)
    return model


def load_model_from_artifact(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                             attention: str = "auto", weights: str = "dequantized") -> GPT:
    """:func:`model_from_artifact` of the artifact file at ``path`` (a missing or damaged file raises)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a path to an artifact file, got {type(path).__name__}")
    return model_from_artifact(load_artifact(path), device, attention, weights)
