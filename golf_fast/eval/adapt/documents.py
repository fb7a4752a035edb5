"""Per-document score-first TTT: LoRA (RVAR/R0611) and phased global SGD on top of it (R0611).

Documents, batches and phases follow the record's code exactly (schedule.py): a document's span
runs one past its closing BOS, so its targets are ``s+1 .. e`` (the next BOS included, as the plain
evaluation scores it); documents are grouped into batches of ``lora.batch_docs`` by ascending
length and the batches run longest first. Queue entry ``j`` runs on rank ``j mod world``; every
rank walks the whole queue, so the phases (collective) happen after the same entries on every
rank and the schedule is the one-process record schedule. For a batch, with one adapter per
document, for chunk ``ci = 0, 1, …`` (``lora.chunk`` targets, the record's ``_compute_chunk_window``):

1. every document with a chunk ``ci`` is scored on it (window of up to ``seq_len`` previous tokens
   of its document) under the adapters trained on chunks ``< ci``;
2. documents that have a chunk ``ci+1`` take ``grad_steps`` optimizer steps on
   ``Σ_doc mean CE(chunk ci)`` (each adapter sees only its document's gradient).

Adapters (lora.py): one generator seeded ``cfg.seed`` draws every A in the record's order — the
full-batch adapter at the start and after each phase, a fresh one for a batch of another size, and
at each reset unless ``warm_start_a`` (then only B is zeroed). Ranks replay the draws of the
entries they skip, so without warm start the result does not depend on the number of ranks (with
it, as in the record, each rank's A carries its own batches' training).

``phased``: after the queue entry where the number of documents scored reaches a boundary
(schedule.py), every rank synchronizes and runs the record's global SGD (global_sgd.py) on the
first that-many scored documents in (batch, position) order, all already scored; then a fresh
adapter is drawn and the queue continues with the updated base. ``adapt="none"``: the same scoring
with no adapter (the baseline these modes are compared with).

``cfg.slot == "causal"``: each document also gets a logit delta δ (slot.py), zero at its start;
after chunk ``ci`` is scored, δ is re-fitted (L-BFGS, warm start) on the last ``focal_positions``
scored targets of that document, and scores chunk ``ci+1`` (an update event reading only scored
positions). Fitted per document, so the result does not depend on the batch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.adapt.global_sgd import global_sgd_phase, phase_text
from golf_fast.eval.adapt.lora import BatchedLoRA, Int6Base, LoRAHook
from golf_fast.eval.adapt.schedule import phase_documents, phase_plan, record_batches
from golf_fast.eval.compliance.events import EventLog
from golf_fast.eval.compliance.guarded import DriverLog, GuardedStream
from golf_fast.eval.scoring import LogitScorer, ProbeSchedule, autocast_ctx, commit_scores, run_probes
from golf_fast.eval.adapt.slot import SlotBuffer, fit_delta
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.eval.windows import target_ends


def fit_document_deltas(logits: torch.Tensor, wb, active: np.ndarray, has_next: np.ndarray, deltas: torch.Tensor,
                        buffers: list, cfg: AdaptConfig, log: EventLog | DriverLog) -> None:
    """Per-document causal SLOT step: buffer the just-scored targets, re-fit δ of documents with a next chunk."""
    z = logits.detach()
    for k, r in enumerate(active):
        pos = np.arange(wb.pieces[k, 0], wb.pieces[k, 1])  # the row's scored targets, known on the host
        c = torch.from_numpy(pos - wb.windows[k, 0] - 1).to(z.device)
        buffers[r].add(z[k, c].float(), wb.y[k, c], pos, np.repeat(wb.windows[k:k + 1], len(pos), axis=0))
        if has_next[r]:
            log.update(buffers[r].read, "slot")
            deltas[r] = fit_delta(buffers[r].z, buffers[r].y, deltas[r], cfg.slot_cfg)


def _optimizer(lora: BatchedLoRA, cfg: AdaptConfig) -> torch.optim.Optimizer:
    lo = cfg.lora
    if lo.optimizer == "sgd":
        return torch.optim.SGD(lora.parameters(), lr=lo.lr, momentum=lo.beta1, weight_decay=lo.weight_decay)
    return torch.optim.AdamW(lora.parameters(), lr=lo.lr, betas=(lo.beta1, lo.beta2), eps=lo.eps,
                             weight_decay=lo.weight_decay)


def run_documents(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, adapt: str = "lora",
                  rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None,
                  dtype: Optional[torch.dtype] = None, int6_state: Optional[dict] = None,
                  label: Optional[str] = None, val_bytes=None) -> AdaptResult:
    """Per-document score-first evaluation with ``adapt`` in none | lora | phased (module docstring):
    :func:`documents_driver` run by the harness (which owns the log, the sums and the verdict).

    ``int6_state``: the artifact's state (name → QuantizedTensor), needed by ``lora.backend="int6"``.
    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (else ``table``'s byte counts).
    """
    return run_driver(documents_driver, model, tokens, table, cfg, rank=rank, world_size=world_size, device=device,
                      dtype=dtype, val_bytes=val_bytes, adapt=adapt, int6_state=int6_state, label=label)


def documents_driver(model, stream: GuardedStream, cfg: AdaptConfig, *, adapt: str = "lora", rank: int = 0,
                     world_size: int = 1, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                     int6_state: Optional[dict] = None, label: Optional[str] = None) -> DriverOutput:
    """The per-document driver (module docstring) on the run's guarded ``stream``."""
    if adapt not in ("none", "lora", "phased"):
        raise ValueError(f"adapt: expected none, lora or phased, got {adapt!r}")
    if not isinstance(stream, GuardedStream):
        raise TypeError(f"stream: expected a GuardedStream, got {type(stream).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n, V, all_docs = stream.num_tokens, model.cfg.vocab_size, stream.documents()
    log = stream.log
    te = target_ends(all_docs, n)
    keep = te - all_docs[:, 0] >= 2  # at least one target
    starts, lengths = all_docs[keep, 0], (te - all_docs[:, 0])[keep]  # the record's (start, length)
    lo = cfg.lora
    bd = lo.batch_docs
    queue = record_batches(lengths, bd)
    plan = phase_plan(queue, len(starts), cfg.phased.prefix_docs, cfg.phased.num_phases) if adapt == "phased" else {}
    slot = cfg.slot == "causal"
    probes = ProbeSchedule(cfg.probe_every, cfg.probe_seed * 7919 + rank if cfg.probe_seed >= 0 else -1)
    draws = torch.Generator().manual_seed(cfg.seed)  # the adapters' A, the same sequence on every rank
    notes, void = [f"probe seed {probes.seed}"], []
    full = hook = None
    int6 = None
    if adapt != "none":
        if lo.backend == "int6":
            if dtype not in (torch.bfloat16, torch.float16):
                raise ValueError(f"lora.backend: int6 runs golf_fast.int6_linear under bf16/fp16 autocast (the CUDA "
                                 f"path); got dtype {dtype}. Use lora.backend=reference here.")
            if int6_state is None:
                raise ValueError("int6_state: lora.backend='int6' needs the artifact's quantized state")
            int6 = Int6Base(int6_state, model, device)

    def new_adapter(rows: int) -> BatchedLoRA:
        a = BatchedLoRA(model.cfg, rows, lo.rank, lo.alpha, lo.targets, device=device)
        a.reset(draws)
        stream.watch(a)  # its factors may change only after the scores they produced are committed
        return a

    if adapt != "none":
        full = new_adapter(bd)
        hook = LoRAHook(full, int6)
        model.set_linear_hook(hook)
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def forward(x, rows):
        if hook is not None:
            hook.lora.rows = rows
        return model.logits(x)

    try:
        for j, (_, idx) in enumerate(queue):
            own = j % world_size == rank
            lora = None
            if full is not None:
                if len(idx) == bd:
                    if own or not lo.warm_start_a:  # skipped entries still draw: the sequence stays rank-free
                        full.reset(draws, keep_a=lo.warm_start_a)
                    lora = full
                else:
                    lora = new_adapter(len(idx))
                hook.lora = lora
            if own:
                _score_batch(forward, lora, stream, starts[idx], lengths[idx], cfg, probes, device, dtype, V, slot)
            if j in plan:
                k = plan[j]
                log.new_epoch()
                spans = np.stack([starts, lengths], 1)[phase_documents(queue, j, k)]
                log.update(np.stack([spans[:, 0], spans[:, 0] + spans[:, 1]], 1), "phased_sgd", collective=True)
                model.set_linear_hook(None)  # the phase trains the base model alone
                text = phase_text(stream, spans)  # read through the guard: an update read of these spans
                steps = global_sgd_phase(model, text, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype)
                for p in model.parameters():
                    p.requires_grad_(False)
                model.eval()
                vf = to_host(*void_fractions(matrices_of(model), cfg.void_ratio))[1]
                void.append((f"phase after {k} docs", vf))
                notes.append(f"phase after {k} docs (queue entry {j}): {steps} SGD steps, void fraction {vf:.4f}")
                if hook is not None:
                    full = new_adapter(bd)
                    hook.lora = full
                    if hook.int6 is not None:
                        hook.int6 = None
                        notes.append("int6 LoRA branch switched to the reference branch: the base weights changed")
                    model.set_linear_hook(hook)
    finally:
        model.set_linear_hook(None)
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    name = label or (f"ttt:{adapt}" if adapt != "none" else "ttt:none (per-document)")
    return DriverOutput(name, notes, void or None)


def _score_batch(forward, lora, stream, starts, lengths, cfg, probes, device, dtype, V, slot) -> None:
    """Score one batch of documents chunk by chunk, adapting between chunks."""
    log = stream.log
    C = cfg.lora.chunk
    nch = -(-(lengths - 1) // C)  # chunks of the length − 1 targets
    opt = _optimizer(lora, cfg) if lora is not None else None
    deltas = torch.zeros(len(starts), V, device=device) if slot else None
    buffers = [SlotBuffer(cfg.slot_cfg.focal_positions) for _ in starts] if slot else None
    for ci in range(int(nch.max())):
        active = np.flatnonzero(nch > ci)
        scorer = LogitScorer(deltas[torch.from_numpy(active).to(device)] if slot else None)
        pieces = [(int(starts[r]), int(starts[r]) + 1 + ci * C, min(int(starts[r]) + 1 + (ci + 1) * C,
                                                                    int(starts[r] + lengths[r])))
                  for r in active]
        wb = stream.windows(pieces, "score").to(device)
        rows = torch.from_numpy(active).to(device)
        train_host = nch[active] > ci + 1  # rows whose document has a later chunk to adapt for
        train = torch.from_numpy(train_host).to(device)
        learn = opt is not None and bool(train_host.any())
        with torch.set_grad_enabled(learn), autocast_ctx(device, dtype):
            logits = forward(wb.x, rows)
        nats = commit_scores(wb, logits, scorer, stream)
        if probes.due(log):
            run_probes(forward, wb, logits, nats, scorer, log, rows, probes.generator, device, dtype)
            if lora is not None:
                lora.rows = rows
        if learn:
            m = wb.mask & train[:, None]
            for gi in range(cfg.lora.grad_steps):
                if gi > 0:
                    with torch.enable_grad(), autocast_ctx(device, dtype):
                        logits = forward(wb.x, rows)
                ce = LogitScorer().nats(logits, wb.y)  # differentiable, without δ
                per_doc = (ce * m).sum(1) / m.sum(1).clamp(min=1)
                opt.zero_grad()
                per_doc.sum().backward()
                opt.step()
            log.update(wb.windows[train_host], "lora")
        if slot:
            fit_document_deltas(logits, wb, active, nch > ci + 1, deltas, buffers, cfg, log)
