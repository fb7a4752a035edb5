"""Per-document score-first TTT: LoRA (RVAR/R0611) and phased global SGD on top of it (R0611).

Documents (windows.py) are sorted longest first (ties: stream order) and cut into batches of
``lora.batch_docs``; batch ``j`` is processed by rank ``j mod world`` — a static schedule, so the
result does not depend on timing (the record's shared-counter queue does). For a batch, with one
fresh adapter per document (B = 0; A re-drawn from a generator seeded by the batch index, or kept
from the previous batch with ``warm_start_a``), for chunk ``ci = 0, 1, …``:

1. every document with a chunk ``ci`` is scored on it (targets ``s+1+ci·C …``, window of up to
   ``seq_len`` previous tokens of its document) under the adapters trained on chunks ``< ci``;
2. documents that have a chunk ``ci+1`` take one Adam step on ``Σ_doc mean CE(chunk ci)`` — per
   document independent (each adapter sees only its document's gradient).

``phased``: after the batch that completes document ``prefix_docs·p/num_phases`` (p = 1..P) in the
global order, every rank synchronizes and runs full-model SGD (momentum, cosine lr over chunks of
``chunk_tokens``, clipping, the last chunk skipped) over the tokens of the first that-many
documents (all already scored), gradients summed over ranks; then the LoRA starts fresh and the
queue continues with the updated base. ``adapt="none"``: the same scoring with no adapter (the
baseline these modes are compared with).

``cfg.slot == "causal"``: each document also gets a logit delta δ (slot.py), zero at its start;
after chunk ``ci`` is scored, δ is re-fitted (L-BFGS, warm start) on the last ``focal_positions``
scored targets of that document, and scores chunk ``ci+1`` (an update event reading only scored
positions). Fitted per document, so the result does not depend on the batch.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AdaptResult, finish
from golf_fast.eval.adapt.full_model import cosine_lr, train_on_pieces
from golf_fast.eval.adapt.lora import BatchedLoRA, Int6Base, LoRAHook
from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.eval.compliance.events import EventLog
from golf_fast.eval.scoring import LogitScorer, autocast_ctx, commit_scores, run_probes
from golf_fast.eval.adapt.slot import SlotBuffer, fit_delta
from golf_fast.eval.adapt.stream import expected_targets
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.eval.windows import build_windows, scoring_inputs, split_targets


def phase_boundaries(n_docs: int, prefix_docs: int, num_phases: int) -> list[int]:
    """Document counts after which a phase runs: ``⌊min(prefix, n)·p/P⌋``, p = 1..P, deduplicated
    (R0611's log: 2,500 documents in 3 phases → [833, 1666, 2500])."""
    pre = min(prefix_docs, n_docs)
    return sorted({pre * p // num_phases for p in range(1, num_phases + 1)} - {0})


def sgd_phase(model, toks: torch.Tensor, docs: np.ndarray, cfg: AdaptConfig, log: EventLog, *, rank: int,
              world_size: int, device, dtype) -> int:
    """Full-model SGD over the targets of ``docs`` (in order); returns the number of steps taken."""
    ph = cfg.phased
    pieces = [p for s, e in docs for p in split_targets(int(s), int(s) + 1, int(e), cfg.seq_len) if e - s > 1]
    chunks, cur, size = [], [], 0
    for p in pieces:
        cur.append(p)
        size += p[2] - p[1]
        if size >= ph.chunk_tokens:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        chunks.append(cur)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=ph.lr, momentum=ph.momentum)
    steps = 0
    n_train = len(chunks) - 1  # the last chunk is skipped
    for ci in range(n_train):
        lr = cosine_lr(ph.lr, ci, n_train)
        for g in opt.param_groups:
            g["lr"] = lr
        mine = chunks[ci][rank::world_size]
        total = int(sum(p[2] - p[1] for p in chunks[ci]))
        for _ in range(ph.epochs):
            log.update(build_windows(toks, mine, cfg.seq_len).windows if mine else [], "phased_sgd", collective=True)
            train_on_pieces(model, toks, mine, total, params, opt, seq_len=cfg.seq_len, batch_seqs=cfg.batch_seqs,
                            world_size=world_size, device=device, dtype=dtype, grad_clip=ph.grad_clip)
            steps += 1
    return steps


def fit_document_deltas(logits: torch.Tensor, wb, active: np.ndarray, has_next: np.ndarray, deltas: torch.Tensor,
                        buffers: list, cfg: AdaptConfig, log: EventLog) -> None:
    """Per-document causal SLOT step: buffer the just-scored targets, re-fit δ of documents with a next chunk."""
    z = logits.detach()
    for k, r in enumerate(active):
        pos = np.arange(wb.pieces[k, 0], wb.pieces[k, 1])  # the row's scored targets, known on the host
        c = torch.from_numpy(pos - wb.windows[k, 0] - 1).to(z.device)
        buffers[r].add(z[k, c].float(), wb.y[k, c], pos, np.repeat(wb.windows[k:k + 1], len(pos), axis=0))
        if has_next[r]:
            log.update(buffers[r].read, "slot")
            deltas[r] = fit_delta(buffers[r].z, buffers[r].y, deltas[r], cfg.slot_cfg)


def run_documents(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, adapt: str = "lora",
                  rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None,
                  dtype: Optional[torch.dtype] = None, int6_state: Optional[dict] = None,
                  label: Optional[str] = None, val_bytes=None) -> AdaptResult:
    """Per-document score-first evaluation with ``adapt`` in none | lora | phased (module docstring).

    ``int6_state``: the artifact's state (name → QuantizedTensor), needed by ``lora.backend="int6"``.
    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (else ``table``'s byte counts).
    """
    if adapt not in ("none", "lora", "phased"):
        raise ValueError(f"adapt: expected none, lora or phased, got {adapt!r}")
    t_start = time.perf_counter()
    device, tokens, toks, vb, n, V, bos, all_docs = scoring_inputs(model, tokens, cfg.seq_len, device, val_bytes)
    docs = all_docs[all_docs[:, 1] - all_docs[:, 0] >= 2]
    order = np.lexsort((docs[:, 0], -(docs[:, 1] - docs[:, 0])))
    docs = docs[order]
    lo = cfg.lora
    bd, C = lo.batch_docs, lo.chunk
    batches = [np.arange(i, min(i + bd, len(docs))) for i in range(0, len(docs), bd)]
    bounds = phase_boundaries(len(docs), cfg.phased.prefix_docs, cfg.phased.num_phases) if adapt == "phased" else []
    phase_after = {}
    for b in bounds:
        phase_after[(b - 1) // bd] = max(b, phase_after.get((b - 1) // bd, 0))
    log = EventLog(n, rank=rank)
    log.given(all_docs[tokens[all_docs[:, 0]] == bos, 0])
    acc = BpbAccumulator(table, device)
    slot = cfg.slot == "causal"
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
    notes, void = [], []
    lora = hook = None
    if adapt != "none":
        lora = BatchedLoRA(model.cfg, bd, lo.rank, lo.alpha, lo.targets, device=device)
        int6 = None
        if lo.backend == "int6":
            if dtype not in (torch.bfloat16, torch.float16):
                raise ValueError(f"lora.backend: int6 runs golf_fast.int6_linear under bf16/fp16 autocast (the CUDA "
                                 f"path); got dtype {dtype}. Use lora.backend=reference here.")
            if int6_state is None:
                raise ValueError("int6_state: lora.backend='int6' needs the artifact's quantized state")
            int6 = Int6Base(int6_state, model, device)
        hook = LoRAHook(lora, int6)
        model.set_linear_hook(hook)
    was_training = model.training
    model.eval()
    batches_scored, fresh = 0, True
    for p in model.parameters():
        p.requires_grad_(False)

    def forward(x, rows):
        if lora is not None:
            lora.rows = rows
        return model.logits(x)

    try:
        for j, idx in enumerate(batches):
            if j % world_size == rank:
                d = docs[idx]
                nch = -(-(d[:, 1] - d[:, 0] - 1) // C)
                opt = None
                if lora is not None:
                    lora.reset(torch.Generator().manual_seed(cfg.seed * 1_000_003 + j), keep_a=lo.warm_start_a and not fresh)
                    fresh = False
                    opt = torch.optim.AdamW(lora.parameters(), lr=lo.lr, betas=(lo.beta1, lo.beta2), eps=lo.eps,
                                            weight_decay=lo.weight_decay)
                deltas = torch.zeros(len(idx), V, device=device) if slot else None
                buffers = [SlotBuffer(cfg.slot_cfg.focal_positions) for _ in idx] if slot else None
                for ci in range(int(nch.max())):
                    active = np.flatnonzero(nch > ci)
                    scorer = LogitScorer(deltas[torch.from_numpy(active).to(device)] if slot else None)
                    pieces = [(int(d[r, 0]), int(d[r, 0]) + 1 + ci * C, min(int(d[r, 0]) + 1 + (ci + 1) * C, int(d[r, 1])))
                              for r in active]
                    wb = build_windows(toks, pieces, cfg.seq_len, vb).to(device)
                    rows = torch.from_numpy(active).to(device)
                    train_host = nch[active] > ci + 1  # rows whose document has a later chunk to adapt for
                    train = torch.from_numpy(train_host).to(device)
                    learn = opt is not None and bool(train_host.any())
                    with torch.set_grad_enabled(learn), autocast_ctx(device, dtype):
                        logits = forward(wb.x, rows)
                    nats = commit_scores(wb, logits, scorer, acc, log)
                    if batches_scored % cfg.probe_every == 0:
                        run_probes(forward, wb, logits, nats, scorer, log, rows, gen, device, dtype)
                        if lora is not None:
                            lora.rows = rows
                    batches_scored += 1
                    if learn:
                        m = wb.mask & train[:, None]
                        ce = LogitScorer().nats(logits, wb.y)  # differentiable, without δ
                        per_doc = (ce * m).sum(1) / m.sum(1).clamp(min=1)
                        opt.zero_grad()
                        per_doc.sum().backward()
                        opt.step()
                        log.update(wb.windows[train_host], "lora")
                    if slot:
                        fit_document_deltas(logits, wb, active, nch > ci + 1, deltas, buffers, cfg, log)
            if j in phase_after:
                log.new_epoch()
                k = phase_after[j]
                for p in model.parameters():
                    p.requires_grad_(True)
                model.set_linear_hook(None)  # the phase trains the base model alone
                steps = sgd_phase(model, toks, docs[:k], cfg, log, rank=rank, world_size=world_size, device=device,
                                  dtype=dtype)
                model.set_linear_hook(hook)
                for p in model.parameters():
                    p.requires_grad_(False)
                vf = to_host(*void_fractions(matrices_of(model), cfg.void_ratio))[1]
                void.append((f"phase after {k} docs", vf))
                notes.append(f"phase after {k} docs: {steps} SGD steps, void fraction {vf:.4f}")
                fresh = True
                if hook is not None and hook.int6 is not None:
                    hook.int6 = None
                    notes.append("int6 LoRA branch switched to the reference branch: the base weights changed")
    finally:
        model.set_linear_hook(None)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    result = acc.result(seconds=time.perf_counter() - t_start)
    name = label or (f"ttt:{adapt}" if adapt != "none" else "ttt:none (per-document)")
    return finish(name, result, log, expected_targets(tokens, all_docs), V, world_size, notes, void or None)
