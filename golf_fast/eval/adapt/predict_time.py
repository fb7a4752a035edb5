"""Predicted evaluation time on 8×H100 for an adaptive mode: FLOPs counted, efficiency stated.

Nothing here is measured on a GPU. The count, per processed token of a forward:
``2·(Σ_virtual-layers matrix params + d·V)`` (matmuls) ``+ 4·c·d`` per virtual layer (attention
scores and values over a context of c tokens, counted at the mean context). A training forward is
followed by a backward of about twice its FLOPs (full-model modes) or about once (LoRA: gradients
to activations; the base weights take no gradient).

Processed tokens per mode (D documents of lengths L, chunk C, window W):

* per-document LoRA: chunk ``ci`` of a document re-runs a window of ``min(W, (ci+1)·C)`` tokens, so
  a document costs ``Σ_ci min(W, (ci+1)·C)`` ≈ ``L²/(2C)`` tokens for L ≤ W (forward + backward);
* phased: that, plus ``epochs`` forward+backward passes over the prefix documents' tokens per phase;
* AdamW (stream): one scoring forward over every token, plus ``epochs`` forward+backward per chunk;
* causal SLOT: one scoring forward over every token, plus per window an L-BFGS fit of
  ``≤ max_iter·(line-search evals ≈ 1.25)`` passes over (focal_positions × V) logits (negligible FLOPs,
  but one small fit per window: counted as ``fit_latency_s`` each, a stated assumption).

``seconds = FLOPs / (world · peak · efficiency)``. The efficiency is the assumption: for the record's
own method it is calibrated from its measured time (R0611: 508.8 s for phased LoRA TTT, its log).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from golf_fast.eval.adapt.config import AdaptConfig, record_adapt
from golf_fast.model.config import ModelConfig

H100_BF16_PEAK = 798e12
"""Measured dense bf16 matmul throughput of one H100 SXM on 8192³ (DESIGN.md)."""
R0611_TTT_SECONDS = 508.8


@dataclass
class Prediction:
    flops: float
    tokens_processed: float
    seconds: float
    text: str


def forward_flops_per_token(cfg: ModelConfig, looping: bool, mean_context: float) -> float:
    d, kv, h = cfg.model_dim, cfg.kv_dim, cfg.hidden_dim
    per_layer = d * d * 2 + d * kv * 2 + 2 * d * h
    layers = cfg.num_layers + (cfg.num_loops * (cfg.loop_end - cfg.loop_start + 1) if looping and cfg.num_loops else 0)
    return 2.0 * (layers * per_layer + d * cfg.vocab_size) + layers * 4.0 * mean_context * d


def lora_tokens(lengths: np.ndarray, chunk: int, window: int) -> float:
    """Σ over documents and chunks of the window length re-run for each chunk."""
    total = 0.0
    for L in np.asarray(lengths, dtype=np.int64):
        n = -(-(int(L) - 1) // chunk)
        ends = np.minimum(np.arange(1, n + 1) * chunk, window)
        total += float(ends.sum())
    return total


def predict_seconds(model_cfg: ModelConfig, doc_lengths, cfg: AdaptConfig, *, world: int = 8,
                    efficiency: float = 0.3, looping: bool = True, fit_latency_s: float = 5e-3) -> Prediction:
    """Predicted 8×H100 time of ``cfg``'s mode on documents of ``doc_lengths`` (see the module docstring)."""
    L = np.asarray(doc_lengths, dtype=np.int64)
    if L.ndim != 1 or L.size == 0 or (L < 1).any():
        raise ValueError("doc_lengths: expected a non-empty 1-D array of positive document lengths")
    if not (0 < efficiency <= 1):
        raise ValueError(f"efficiency: expected in (0, 1], got {efficiency}")
    n_tok = float(L.sum())
    W = cfg.seq_len
    ctx = float(np.minimum(L, W).mean()) / 2
    f = forward_flops_per_token(model_cfg, looping, ctx)
    lines = [f"forward: {f / 1e6:.1f} MFLOP/token (mean context {ctx:.0f})", f"documents {L.size:,}, tokens {n_tok:,.0f}"]
    extra_s = 0.0
    if cfg.ttt in ("lora", "phased"):
        toks = lora_tokens(L, cfg.lora.chunk, W)
        flops = toks * f * 2.0  # forward + activation-gradient backward
        lines.append(f"LoRA: {toks:,.0f} window tokens (chunk {cfg.lora.chunk}) × {f / 1e6:.1f} MFLOP × 2 (fwd+bwd)")
        if cfg.ttt == "phased":
            pre = np.sort(L)[::-1][:cfg.phased.prefix_docs]
            cum = sum(float(pre[:b].sum()) for b in
                      {min(cfg.phased.prefix_docs, L.size) * p // cfg.phased.num_phases
                       for p in range(1, cfg.phased.num_phases + 1)})
            flops += cum * f * 3.0 * cfg.phased.epochs
            lines.append(f"phases: {cum:,.0f} prefix tokens × {f / 1e6:.1f} MFLOP × 3 (fwd+full bwd)")
    else:
        toks = n_tok
        flops = n_tok * f
        lines.append(f"scoring: {n_tok:,.0f} tokens × {f / 1e6:.1f} MFLOP")
        if cfg.ttt == "adamw":
            flops += n_tok * f * 3.0 * cfg.adamw.epochs
            lines.append(f"AdamW: {cfg.adamw.epochs} epoch(s) × {n_tok:,.0f} tokens × 3 (fwd+bwd)")
        if cfg.slot != "none":
            fits = n_tok / cfg.slot_cfg.chunk_tokens
            extra_s = fits * fit_latency_s / world
            lines.append(f"SLOT: {fits:,.0f} L-BFGS fits × {fit_latency_s * 1e3:.1f} ms (assumed) / {world} ranks "
                         f"= {extra_s:.0f} s")
    secs = flops / (world * H100_BF16_PEAK * efficiency) + extra_s
    lines.append(f"total {flops:.3g} FLOP / ({world} × {H100_BF16_PEAK / 1e12:.0f} TFLOP/s × {efficiency:.0%}) "
                 f"+ {extra_s:.3g} s = {secs:.3g} s (predicted, not measured)")
    return Prediction(flops, toks, secs, "\n".join(lines))


def fineweb_like_lengths(seed: int = 0) -> np.ndarray:
    """An assumed FineWeb val document-length distribution: 50,000 documents, 47,851,520 tokens
    (the record's counts), lengths exponential (mean 957). The shape is an assumption."""
    rng = np.random.default_rng(seed)
    L = np.maximum(2, rng.exponential(957.0, 50_000)).astype(np.float64)
    return np.maximum(2, (L * 47_851_520 / L.sum()).astype(np.int64))


def record_efficiency(model_cfg: ModelConfig = None, doc_lengths=None, cfg: AdaptConfig = None, world: int = 8) -> float:
    """The efficiency at which ``cfg`` (default: the record preset, the record model, FineWeb-like
    lengths) takes R0611's measured 508.8 s."""
    from_cfg = cfg if cfg is not None else record_adapt()
    p = predict_seconds(model_cfg or ModelConfig(), doc_lengths if doc_lengths is not None else fineweb_like_lengths(),
                        from_cfg, world=world, efficiency=1.0)
    return p.seconds / R0611_TTT_SECONDS
