"""Held-out cheating drivers: per-document LoRA TTT written from golf_fast's public parts, each with one
cheat, and the logging calls where the legal drivers put them (they do not announce themselves).

``run(model, tokens, table, cfg, cheat)`` with ``cheat`` one of :data:`CHEATS` (or ``None``: the
honest driver, which must pass) runs the driver under the package's harness: it gets the guarded
stream only. What catches each one is asserted in test_cheats.py.
"""

from __future__ import annotations

import numpy as np
import torch

from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.lora import BatchedLoRA, LoRAHook
from golf_fast.eval.adapt.schedule import record_batches
from golf_fast.eval.adapt.slot import fit_delta
from golf_fast.eval.scoring import LogitScorer, ProbeSchedule, commit_scores, run_probes
from golf_fast.eval.windows import WindowBatch, target_ends

CHEATS = ("train_before_score", "train_before_score_reread", "slot_on_scored_batch", "next_doc_context",
          "off_by_one_chunk", "drop_worst", "bias_except_probe", "best_of_two_passes", "edit_targets")


class _BiasedScorer(LogitScorer):
    """−0.2 nats on every score; the probes are handed the honest values by the driver."""

    def nats(self, logits, y):
        return super().nats(logits, y) - 0.2


def _with_context(wb: WindowBatch, ctx: list) -> WindowBatch:
    """``wb`` with each row's tokens ``ctx[r]`` prepended as extra left context (scored columns shift)."""
    k = max(len(c) for c in ctx)
    B, W = wb.x.shape
    x = torch.zeros(B, W + k, dtype=wb.x.dtype)
    y = torch.zeros(B, W + k, dtype=wb.y.dtype)
    m = torch.zeros(B, W + k, dtype=torch.bool)
    for r, c in enumerate(ctx):
        x[r, k - len(c):k] = c
        x[r, k:] = wb.x[r]
        y[r, k:] = wb.y[r]
        m[r, k:] = wb.mask[r]
    win = wb.windows.copy()
    win[:, 0] -= k  # the scored columns now sit k further right
    return WindowBatch(x, y, m, wb.pieces, win, wb.tbytes, wb.read_seq, wb.purpose)


def run(model, tokens, table, cfg, cheat=None):
    """The cheating driver run by the package's harness (which builds the stream, the log and the sums)."""
    if cheat is not None and cheat not in CHEATS:
        raise ValueError(f"cheat: expected one of {CHEATS} or None, got {cheat!r}")
    return run_driver(_driver, model, tokens, table, cfg, cheat=cheat)


def _driver(model, stream, cfg, *, cheat, rank, world_size, device, dtype):
    n, V, docs = stream.num_tokens, model.cfg.vocab_size, stream.documents()
    te = target_ends(docs, n)
    keep = te - docs[:, 0] >= 2
    starts, lengths = docs[keep, 0], (te - docs[:, 0])[keep]
    lo, C = cfg.lora, cfg.lora.chunk
    log = stream.log
    probes = ProbeSchedule(cfg.probe_every, 5)
    draws = torch.Generator().manual_seed(cfg.seed)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    kept_nats, kept = [], []
    try:
        for _, idx in record_batches(lengths, lo.batch_docs):
            lora = BatchedLoRA(model.cfg, len(idx), lo.rank, lo.alpha, lo.targets)
            lora.reset(draws)
            hook = LoRAHook(lora)
            model.set_linear_hook(hook)
            opt = torch.optim.AdamW(lora.parameters(), lr=lo.lr, betas=(lo.beta1, lo.beta2), eps=lo.eps,
                                    weight_decay=lo.weight_decay)
            s, ln = starts[idx], lengths[idx]
            nch = -(-(ln - 1) // C)

            def forward(x, rows):
                lora.rows = rows
                return model.logits(x)

            def step(wb, rows, train):
                m = wb.mask & train[:, None]
                with torch.enable_grad():
                    ce = LogitScorer().nats(forward(wb.x, rows), wb.y)
                    loss = ((ce * m).sum(1) / m.sum(1).clamp(min=1)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()

            for ci in range(int(nch.max())):
                active = np.flatnonzero(nch > ci)
                rows = torch.from_numpy(active)
                train_host = nch[active] > ci + 1
                train = torch.from_numpy(train_host)
                pieces = [(int(s[r]), int(s[r]) + 1 + ci * C, min(int(s[r]) + 1 + (ci + 1) * C, int(s[r] + ln[r])))
                          for r in active]
                if cheat == "train_before_score_reread" and train_host.any():
                    step(stream.windows(pieces, "update", "lora"), rows, train)  # adapt on the chunk, then score it
                wb = stream.windows(pieces, "score")
                declared = wb.windows  # what the legal driver declares for its update
                if cheat == "train_before_score" and train_host.any():
                    step(wb, rows, train)  # the same batch: one step on it before its scores are taken
                with torch.no_grad():
                    logits = forward(wb.x, rows)
                if cheat == "next_doc_context":  # the forward sees 4 tokens of the next document as left context
                    nxt = [min(int(s[r] + ln[r]) + 4, n) for r in active]
                    ctx = stream.read([(int(s[r] + ln[r]), e) for r, e in zip(active, nxt)], "context")
                    wide = _with_context(wb, ctx)
                    with torch.no_grad():
                        logits = forward(wide.x, rows)[:, wide.x.shape[1] - wb.x.shape[1]:]  # the batch's columns
                if cheat == "edit_targets":  # score a target as the model's top guess where that keeps its bytes
                    guess, bos = logits.argmax(-1), model.cfg.bos_id
                    sel = wb.mask & (wb.y != bos) & (guess != bos)  # (every other token of the table has 1 byte)
                    wb.y[sel] = guess[sel]
                scorer = LogitScorer()
                if cheat == "slot_on_scored_batch":
                    rr, cc = wb.mask.nonzero(as_tuple=True)  # δ fitted on the targets it is about to score
                    scorer = LogitScorer(fit_delta(logits[rr, cc].float(), wb.y[rr, cc], torch.zeros(V), cfg.slot_cfg))
                if cheat == "bias_except_probe":
                    scorer = _BiasedScorer()
                if cheat == "best_of_two_passes":
                    again = stream.windows(pieces, "score")  # a second pass over the chunk ...
                    with torch.no_grad():
                        logits2 = forward(again.x, rows)
                    commit_scores(again, logits2, LogitScorer(), stream)
                nats = commit_scores(wb, logits, scorer, stream)
                if cheat == "drop_worst":
                    kept_nats.append(nats[wb.mask])
                    kept.append((wb.x[wb.mask], wb.y[wb.mask]))
                if probes.due(log):
                    honest = LogitScorer().nats(logits, wb.y) if cheat == "bias_except_probe" else nats
                    run_probes(forward, wb, logits, honest, LogitScorer() if cheat == "bias_except_probe" else scorer,
                               log, rows, probes.generator, device, None)
                if train_host.any() and cheat not in ("train_before_score", "train_before_score_reread"):
                    if cheat == "off_by_one_chunk":  # the step's batch reaches one target into the next chunk
                        ext = [(a, b, min(c + 1, int(s[r] + ln[r]))) for (a, b, c), r in zip(pieces, active)]
                        step(stream.windows(ext, "update", "lora"), rows, train)
                    else:
                        step(wb, rows, train)
                    log.update(declared[train_host], "lora")
                elif train_host.any():
                    log.update(declared[train_host], "lora")  # declared where the legal driver declares it
            model.set_linear_hook(None)
    finally:
        model.set_linear_hook(None)
        for p in model.parameters():
            p.requires_grad_(True)
    if cheat == "drop_worst":  # the run's sums lose the worst 5% of the scored positions
        nats = torch.cat(kept_nats)
        x = torch.cat([k[0] for k in kept])
        y = torch.cat([k[1] for k in kept])
        worst = nats > torch.quantile(nats, 0.95)
        acc = stream.accumulator
        nbytes = acc.table.count_bytes(x[worst], y[worst]).double().sum()
        acc.sums -= torch.stack([nats[worst].double().sum(), worst.sum().double(), nbytes])
    return DriverOutput(f"cheat:{cheat}")
