"""A tiny model, token stream and byte table for the adaptive-evaluation tests (no files needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig, AdamWConfig, LoRAConfig, PhasedConfig, PrequantConfig, SlotConfig
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT

VOCAB = 48
BOS = 1


def tiny_model(seed: int, num_loops: int = 0) -> GPT:
    cfg = ModelConfig(vocab_size=VOCAB, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, rope_dims=8,
                      num_loops=num_loops, loop_start=1, loop_end=1, parallel_start_layer=2, xsa_last_n=3,
                      gate_window=8, max_seqlen=64)
    torch.manual_seed(seed)
    model = GPT(cfg)
    with torch.no_grad():  # the record's init zeroes the output matrices: give them weight so adapters matter
        for p in (model.qo_bank, model.mlp_down_bank):
            p.normal_(0, 0.05)
        model.tok_emb.weight.normal_(0, 0.3)
    return model


def tiny_stream(seed: int, n_docs: int = 14, max_len: int = 70) -> np.ndarray:
    """Documents with a repeated per-document motif (so adaptation has something to learn)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_docs):
        motif = rng.integers(2, VOCAB, size=rng.integers(3, 7))
        n = int(rng.integers(8, max_len))
        body = np.resize(motif, n)
        noise = rng.random(n) < 0.15
        body[noise] = rng.integers(2, VOCAB, size=int(noise.sum()))
        out += [BOS] + body.tolist()
    return np.array(out, dtype=np.uint16)


def byte_table() -> TokenByteTable:
    base = torch.ones(VOCAB, dtype=torch.int16)
    base[BOS] = 0
    boundary = torch.zeros(VOCAB, dtype=torch.bool)
    boundary[BOS] = True
    return TokenByteTable(base, torch.zeros(VOCAB, dtype=torch.bool), boundary)


def tiny_config(**kw) -> AdaptConfig:
    cfg = AdaptConfig(
        seq_len=32, batch_seqs=4, probe_every=3,
        lora=LoRAConfig(rank=4, alpha=8.0, lr=1e-2, chunk=8, batch_docs=4, warm_start_a=False),
        adamw=AdamWConfig(lr=3e-3, epochs=1, freeze_blocks=1, chunk_tokens=96),
        phased=PhasedConfig(num_phases=2, prefix_docs=8, lr=5e-2, chunk_tokens=64, row_groups=2),
        slot_cfg=SlotConfig(chunk_tokens=64, max_iter=10, history=10, clamp=5.0, focal_positions=64, l2=1.0),
        prequant=PrequantConfig(epochs=2, lr=3e-3, min_lr=3e-4),
    )
    return dataclasses.replace(cfg, **kw)
