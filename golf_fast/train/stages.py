"""The post-training stages, each one small function over the package's pieces.

* :func:`collect_hessians`: ``H[name] = (1/n) Σ XᵀX`` for every quantized matrix, from the model's
  activation hook, accumulated by ``golf_fast.hessian_accumulate_`` (the Hessian kernel family).
  c_q, c_k and c_v read the same input, so they share one tensor.
* :func:`quantize`: ``golf_fast.quant.quantize_model`` (GPTQ with the record's per-role bits and
  SDClip sigmas) over the un-banked state.
* :func:`write_artifact` / :func:`load_model_from_artifact`: ``golf_fast.artifact`` (a checksummed,
  pickle-free file) and a fresh model rebuilt from it for evaluation.

A stage whose piece is not in this installation raises :class:`StageUnavailable`; the trainer
reports it in the final table and skips what depends on it.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT


class StageUnavailable(RuntimeError):
    """A pipeline stage needs a piece of the package that this installation does not have."""


def _need(module: str, name: str):
    try:
        mod = __import__(module, fromlist=[name])
        return getattr(mod, name)
    except (ImportError, AttributeError) as e:
        raise StageUnavailable(f"{module}.{name} is not available in this installation ({e})") from e


def _shared_key(name: str) -> str:
    for m in (".attn.c_k.", ".attn.c_v."):
        if m in name:
            return name.replace(m, ".attn.c_q.")
    return name


@torch.no_grad()
def collect_hessians(model: GPT, batches: Iterable, n_batches: int,
                     autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, torch.Tensor]:
    """Hessians of the quantized matrices from ``n_batches`` training batches (model in eval mode).

    Looped layers accumulate once per visit, like the record. Returns name → (K, K) fp32.
    """
    accumulate = _need("golf_fast", "hessian_accumulate_")
    if n_batches < 1:
        raise ValueError(f"n_batches: expected >= 1, got {n_batches}")
    device = next(model.parameters()).device
    H: dict[str, torch.Tensor] = {}
    scale = 1.0 / n_batches

    def hook(name: str, x: torch.Tensor) -> None:
        key = _shared_key(name)
        if key != name:
            return  # c_k / c_v: the same input as c_q, accumulated once
        x2 = x.reshape(-1, x.shape[-1])
        if key not in H:
            H[key] = torch.zeros(x2.shape[1], x2.shape[1], dtype=torch.float32, device=device)
        accumulate(H[key], x2.contiguous(), scale)

    was_training, old = model.training, model.activation_hook
    model.eval()
    model.activation_hook = hook
    try:
        it = iter(batches)
        for _ in range(n_batches):
            b = next(it)
            with autocast():
                model.hidden(b.x, b.cu_seqlens)
    finally:
        model.activation_hook = old
        model.train(was_training)
    out = {}
    for name in model.matrix_names():
        out[name] = H[_shared_key(name)]
    return out


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


def code_bytes() -> int:
    """Bytes of the source needed to load and evaluate an artifact (model, eval, data readers)."""
    root = Path(__file__).resolve().parent.parent
    files = list((root / "model").glob("*.py")) + list((root / "eval").glob("*.py")) + \
        [root / "data" / f for f in ("shards.py", "byte_table.py", "loader.py")]
    return sum(f.stat().st_size for f in files)
