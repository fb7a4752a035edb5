"""One global-SGD phase of phased TTT, as the record runs it (R0611 ``train_val_ttt_global_sgd_distributed``).

The phase's text is the concatenation of its documents' spans ``tokens[s : s + length]`` (each
span ends one past its closing BOS, so that BOS appears twice in the text, as in the record). With
``T = len(text) − 1`` predictions cut into ``n = ⌈T / chunk_tokens⌉`` chunks, chunk ``ci < n − 1``
(the last is skipped) trains on its ``⌊(chunk end − chunk start) / seq_len⌋`` rows of ``seq_len``
targets (the rest of the chunk is not trained on), rows split contiguously into ``row_groups`` groups — the
record's ranks: each group is its own flat buffer, ``batch_seqs`` rows of it per step — over
``epochs`` passes. Groups are dealt to golf_fast's ranks round-robin, so the result does not
depend on how many processes run it (``row_groups = 8``: the record's 8×H100 run; 1: its
one-process run):

    lr(ci) = lr · ½(1 + cos(π·ci / max(n − 1, 1)))          (after ``warmup_chunks`` linear warm-up chunks)
    loss   = mean CE over a group's step buffer (one row, attention segments at every BOS and every
             ``seq_len`` tokens of a longer document; ``respect_doc_boundaries=False``: plain rows)
    grads  ← Σ_groups ∇(group loss) / row_groups;  clip to ``grad_clip``;  SGD(momentum) step on every parameter.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from golf_fast.data.loader import cu_seqlens_from_bos
from golf_fast.eval.collectives import all_reduce_grads
from golf_fast.eval.scoring import autocast_ctx


def phase_lr(cfg, ci: int, num_chunks: int) -> float:
    """The record's lr of chunk ``ci`` of ``num_chunks`` (linear warm-up, then cosine over n − 1 chunks)."""
    ph = cfg.phased
    warm = max(0, min(ph.warmup_chunks, num_chunks - 1))
    if warm > 0 and ci < warm:
        t = ci / max(warm - 1, 1)
        return ph.warmup_start_lr + (ph.lr - ph.warmup_start_lr) * t
    steps = max(num_chunks - 1 - warm, 1)
    return ph.lr * 0.5 * (1.0 + math.cos(math.pi * max(ci - warm, 0) / steps))


def global_sgd_phase(model, text: torch.Tensor, cfg, *, rank: int, world_size: int, device, dtype) -> int:
    """Train ``model`` in place on the phase ``text`` (1-D int64 CPU); returns the number of steps taken."""
    if not isinstance(text, torch.Tensor) or text.dim() != 1 or text.dtype != torch.int64:
        raise TypeError("text: expected a 1-D int64 tensor")
    ph, seq_len = cfg.phased, cfg.seq_len
    total = text.numel() - 1
    if total <= 0:
        return 0
    C = ph.chunk_tokens
    num_chunks = (total + C - 1) // C
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=ph.lr, momentum=ph.momentum)
    bos = model.cfg.bos_id
    steps = 0
    was_training = model.training
    model.train()
    try:
        for ci in range(num_chunks - 1):  # the last chunk is skipped
            c0, c1 = ci * C, min((ci + 1) * C, total)
            seqs = (c1 - c0) // seq_len
            if seqs <= 0:
                continue
            lr = phase_lr(cfg, ci, num_chunks)
            for g in opt.param_groups:
                g["lr"] = lr
            G = ph.row_groups
            bounds = [(seqs * g // G, seqs * (g + 1) // G) for g in range(G)]
            most = max(b - a for a, b in bounds)
            for _ in range(ph.epochs):
                for bs in range(0, most, ph.batch_seqs):  # every group steps together (zero rows: zero gradient)
                    opt.zero_grad(set_to_none=True)
                    for g in range(rank, G, world_size):
                        s0, s1 = bounds[g]
                        if bs >= s1 - s0:
                            continue
                        be = min(bs + ph.batch_seqs, s1 - s0)
                        local = text[c0 + (s0 + bs) * seq_len:c0 + (s0 + be) * seq_len + 1]
                        x, y = local[:-1], local[1:]
                        with torch.enable_grad(), autocast_ctx(device, dtype):
                            if ph.respect_doc_boundaries:
                                cu = cu_seqlens_from_bos(x.numpy(), bos, seq_len, bucket=64)
                                loss = model(x[None].to(device), y[None].to(device), torch.from_numpy(cu).to(device))
                            else:
                                loss = model(x.view(-1, seq_len).to(device), y.view(-1, seq_len).to(device))
                        (loss / G).backward()
                    all_reduce_grads(params, world_size)
                    if ph.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, ph.grad_clip)
                    opt.step()
                    steps += 1
    finally:
        model.train(was_training)
    return steps


def phase_text(stream, spans: np.ndarray) -> torch.Tensor:
    """The concatenation of ``tokens[s : s + length]`` for the ``(start, length)`` rows of ``spans``, read
    from the guarded ``stream`` as an update read (tag ``phased_sgd``)."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    if len(spans) == 0:
        return torch.zeros(0, dtype=torch.int64)
    parts = stream.read(np.stack([spans[:, 0], spans[:, 0] + spans[:, 1]], 1), "update", "phased_sgd")
    return torch.cat(parts)
