"""Research modes: the two seed submissions' methods exactly as written. Non-compliant, flagged.

* ``prequant`` — pre-quant TTT (the TTT-AdamW-before-GPTQ submission): the model trains on the
  validation targets themselves for ``epochs`` epochs of AdamW (cosine lr ``lr → min_lr`` over all
  steps, gradients summed over ranks), and only then is anything scored. In the trainer this runs
  before GPTQ (:func:`prequant_adapt`); on an artifact it runs on the dequantized weights. The event
  log shows updates that read every position before its score: conditions 1 and 3 broken.
* ``slot_window`` — SLOT optimized on the window it scores: ``ttt_stream.run_stream(slot="window")``.

Whatever the name, the verdict comes from the checker; these functions only run the method.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.adapt.full_model import cosine_lr, train_on_pieces
from golf_fast.eval.compliance.checker import check_events
from golf_fast.eval.compliance.events import EventLog, gather_logs
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.adapt.stream import run_stream
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.eval.windows import build_windows, document_targets, split_targets


def prequant_adapt(model, tokens: np.ndarray, cfg: AdaptConfig, *, rank: int = 0, world_size: int = 1,
                   device=None, dtype=None, log: Optional[EventLog] = None) -> list:
    """Train ``model`` in place on every validation target (see the module docstring).

    Returns ``[(epoch, void fraction)]``; records the collective updates in ``log`` when given.
    """
    pq = cfg.prequant
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokens = np.asarray(tokens)
    toks = torch.from_numpy(tokens.astype(np.int64))
    if log is None:
        log = EventLog(len(tokens), rank=rank)
    stream = GuardedStream(toks, log, cfg.seq_len)
    docs = document_targets(tokens, model.cfg.bos_id)
    pieces = [p for s, _, te in docs for p in split_targets(int(s), int(s) + 1, int(te), cfg.seq_len) if te - s > 1]
    step_pieces = cfg.batch_seqs * world_size
    batches = [pieces[i:i + step_pieces] for i in range(0, len(pieces), step_pieces)]
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=pq.lr, weight_decay=pq.weight_decay)
    total_steps, step, void = pq.epochs * len(batches), 0, []
    was_training = model.training
    model.train()
    try:
        for ep in range(pq.epochs):
            for b in batches:
                for g in opt.param_groups:
                    g["lr"] = cosine_lr(pq.lr, step, total_steps, pq.min_lr)
                mine = b[rank::world_size]
                log.new_epoch()  # each step's gradient all-reduce is a synchronization point
                log.update(build_windows(toks, mine, cfg.seq_len).windows if mine else [], "prequant",
                           collective=True)
                train_on_pieces(model, stream, mine, int(sum(p[2] - p[1] for p in b)), params, opt,
                                batch_seqs=cfg.batch_seqs, world_size=world_size, device=device, dtype=dtype,
                                tag="prequant")
                step += 1
            void.append((ep + 1, to_host(*void_fractions(matrices_of(model), cfg.void_ratio))[1]))
    finally:
        model.train(was_training)
    return void


def run_prequant(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, rank: int = 0,
                 world_size: int = 1, device=None, dtype=None, val_bytes=None) -> AdaptResult:
    """Pre-quant TTT on the validation tokens, then the stream scoring without adaptation."""
    t0 = time.perf_counter()
    log = EventLog(len(tokens), rank=rank, vocab_size=model.cfg.vocab_size)
    void = prequant_adapt(model, tokens, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype, log=log)
    res = run_stream(model, tokens, table, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype,
                     label="research:prequant", prior_log=log, val_bytes=val_bytes)
    res.result.seconds = time.perf_counter() - t0
    res.void = [(f"epoch {e}", v) for e, v in void]
    res.notes.append(f"pre-quant TTT: {cfg.prequant.epochs} epochs of AdamW on the validation targets before scoring")
    return res


def prequant_before_gptq(model, tokens: np.ndarray, cfg: AdaptConfig, *, rank: int = 0, world_size: int = 1,
                         device=None, dtype=None) -> tuple[str, list]:
    """The trainer's pre-quant TTT: adapt on the validation tokens, then the checker's verdict on
    the recorded updates alone (no position scored yet; condition 4 is not at issue here).
    Returns (verdict, [(epoch, void fraction)]) — the verdict goes into the artifact metadata."""
    log = EventLog(len(tokens), rank=rank)
    void = prequant_adapt(model, tokens, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype, log=log)
    rep = check_events(gather_logs(log, world_size), vocab_size=model.cfg.vocab_size,
                       expected=np.zeros(len(tokens), dtype=bool))
    return rep.verdict, void
