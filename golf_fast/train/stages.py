"""The post-training stages, each one small function over the package's pieces.

* :func:`collect_hessians`: ``H[name] = Σ XᵀX / tokens`` for every quantized matrix, from the
  model's activation hook into ``golf_fast.quant.hessian.HessianCollector`` (its kernel:
  ``golf_fast.hessian_accumulate_``). c_q, c_k and c_v read the same input and share one tensor.
* :func:`quantize`: ``golf_fast.quant.quantize_model`` (GPTQ with the record's per-role bits and
  SDClip sigmas) over the un-banked state.
* :func:`fit_to_budget`: re-quantize so code + artifact ≤ 16,000,000 (``golf_fast.train.budget``).
* :func:`write_artifact` / :func:`load_model_from_artifact`: ``golf_fast.artifact`` (a checksummed,
  pickle-free file) and a fresh model rebuilt from it for evaluation.

A stage whose piece is not in this installation raises :class:`StageUnavailable`; the trainer
reports it in the final table and skips what depends on it.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable, Iterable, Optional

import torch

from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT
from golf_fast.train import budget


class StageUnavailable(RuntimeError):
    """A pipeline stage needs a piece of the package that this installation does not have."""


def _need(module: str, name: str):
    try:
        mod = __import__(module, fromlist=[name])
        return getattr(mod, name)
    except (ImportError, AttributeError) as e:
        raise StageUnavailable(f"{module}.{name} is not available in this installation ({e})") from e


@torch.no_grad()
def collect_hessians(model: GPT, batches: Iterable, n_batches: int,
                     autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, torch.Tensor]:
    """Hessians ``Σ XᵀX / tokens`` of the quantized matrices from ``n_batches`` training batches.

    ``golf_fast.quant.hessian.HessianCollector`` is fed by the model's activation hook; c_q, c_k
    and c_v read the same tensor, so the collector accumulates it once for the three. The model
    runs in eval mode with its current loop state (looped layers accumulate once per visit, like
    the record). Returns name → (K, K) fp32 for every name of ``model.matrix_names()``.
    """
    HessianCollector = _need("golf_fast.quant.hessian", "HessianCollector")
    if n_batches < 1:
        raise ValueError(f"n_batches: expected >= 1, got {n_batches}")
    collector = HessianCollector(device=next(model.parameters()).device)
    was_training, old = model.training, model.activation_hook
    model.eval()
    model.activation_hook = collector.add
    try:
        it = iter(batches)
        for _ in range(n_batches):
            b = next(it)
            with autocast():
                model.hidden(b.x, b.cu_seqlens)
    finally:
        model.activation_hook = old
        model.train(was_training)
    hessians = collector.finalize("mean").hessians
    missing = [n for n in model.matrix_names() if n not in hessians]
    if missing:
        raise RuntimeError(f"collect_hessians: no activations reached {missing[:4]}")
    return {n: hessians[n] for n in model.matrix_names()}


def quantize(model: GPT, hessians: dict[str, torch.Tensor], recipe: Any = None) -> tuple[dict, float, str]:
    """GPTQ the un-banked state: returns (name → QuantizedTensor or tensor, seconds, table text)."""
    quantize_model = _need("golf_fast.quant", "quantize_model")
    t0 = time.perf_counter()
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.unbanked_state_dict().items()}
    hs = {k: v.float().cpu() for k, v in hessians.items()}
    if recipe is None:
        # every matrix is GPTQ'd and every control tensor passes through as fp16, whatever the model
        # size: the record's 65,536-element threshold would pass a small model's matrices through
        QuantRecipe = _need("golf_fast.quant", "QuantRecipe")
        matrices = set(model.matrix_names())
        largest_control = max(v.numel() for k, v in state.items() if k not in matrices)
        smallest_matrix = min(state[k].numel() for k in matrices)
        if largest_control >= smallest_matrix:
            raise ValueError(f"model: a control tensor ({largest_control} elements) is as large as the smallest "
                             f"matrix ({smallest_matrix}); no passthrough threshold separates them")
        recipe = QuantRecipe(passthrough_max_numel=min(65_536, smallest_matrix - 1))
    qm = quantize_model(state, hs, recipe)
    table = qm.format_table() if hasattr(qm, "format_table") else ""
    return dict(qm.tensors), time.perf_counter() - t0, table


def write_artifact(path: os.PathLike, tensors: dict, model_cfg: ModelConfig, codec: str = "",
                   metadata: Optional[dict] = None) -> int:
    """Write the artifact atomically; returns its size in bytes."""
    save_artifact = _need("golf_fast.artifact", "save_artifact")
    kwargs = {"codec": codec} if codec else {}
    return int(save_artifact(path, tensors, model_cfg, metadata=metadata or {}, **kwargs))


def load_model_from_artifact(path: os.PathLike, device: torch.device, attention: str = "auto") -> GPT:
    """A fresh GPT built from the artifact's config with its (dequantized) weights; nothing executed."""
    load_artifact = _need("golf_fast.artifact", "load_artifact")
    dequantize_state = _need("golf_fast.artifact", "dequantize_state")
    art = load_artifact(path)
    cfg = ModelConfig(**art.config)
    with torch.device("meta"):
        model = GPT(cfg, attention_backend=attention)
    model = model.to_empty(device="cpu")
    model.load_unbanked_state_dict(dequantize_state(art.state, torch.float32))
    for name, buf in model.named_buffers():  # non-persistent buffers (RoPE inv_freq) are rebuilt
        if name.endswith("inv_freq"):
            rd = cfg.rope_dims or cfg.head_dim
            buf.copy_(1.0 / (cfg.rope_base ** (torch.arange(0, rd, 2, dtype=torch.float32) / rd)))
    model = model.to(device)
    model.resolve_attention(torch.device(device))
    return model


def fit_to_budget(model: GPT, hessians: dict[str, torch.Tensor], tensors: dict, code_bytes: int,
                  model_cfg: ModelConfig, codec: str, log: Callable[[str], None]) -> Any:
    """Re-quantize so code + artifact fit 16,000,000 bytes (``golf_fast.train.budget.fit_to_budget``)."""
    state = {k: v.detach().float().cpu() for k, v in model.unbanked_state_dict().items() if k in hessians}
    matrices = [n for n in model.matrix_names() if n in hessians]
    passthrough = {k: v for k, v in tensors.items() if k not in matrices}
    hs = {k: v.float().cpu() for k, v in hessians.items()}
    return budget.fit_to_budget(state, hs, matrices, passthrough, code_bytes, model_cfg, codec, log=log)
