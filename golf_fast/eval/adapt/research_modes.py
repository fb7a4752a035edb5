"""Research modes: the two seed submissions' methods exactly as written. Non-compliant, flagged.

* ``prequant`` — pre-quant TTT (the TTT-AdamW-before-GPTQ submission): the model trains on the
  validation targets themselves for ``epochs`` epochs of AdamW (cosine lr ``lr → min_lr`` over all
  steps, gradients summed over ranks), and only then is anything scored. In the trainer this runs
  before GPTQ (:func:`prequant_adapt`); on an artifact it runs on the dequantized weights. The event
  log shows updates that read every position before its score: conditions 1 and 3 broken.
* ``slot_window`` — SLOT optimized on the window it scores: ``stream.stream_driver(slot="window")``.

Whatever the name, the verdict comes from the checker; these functions only run the method.
"""

from __future__ import annotations


import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.full_model import cosine_lr, train_on_pieces
from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.compliance.checker import check_events
from golf_fast.eval.compliance.events import EventLog, gather_logs
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.adapt.stream import stream_driver
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.eval.windows import piece_windows, split_targets, target_ends


def prequant_adapt(model, stream: GuardedStream, cfg: AdaptConfig, *, rank: int = 0, world_size: int = 1,
                   device=None, dtype=None) -> list:
    """Train ``model`` in place on every validation target of ``stream`` (see the module docstring).

    Returns ``[(epoch, void fraction)]``; the collective updates go into the stream's log.
    """
    if not isinstance(stream, GuardedStream):
        raise TypeError(f"stream: expected a GuardedStream, got {type(stream).__name__}")
    pq = cfg.prequant
    device = torch.device(device) if device is not None else next(model.parameters()).device
    log = stream.log
    d = stream.documents()
    docs = np.concatenate([d, target_ends(d, stream.num_tokens)[:, None]], axis=1)
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
                log.update(piece_windows(mine, cfg.seq_len), "prequant", collective=True)
                train_on_pieces(model, stream, mine, int(sum(p[2] - p[1] for p in b)), params, opt,
                                batch_seqs=cfg.batch_seqs, world_size=world_size, device=device, dtype=dtype,
                                tag="prequant")
                step += 1
            void.append((ep + 1, to_host(*void_fractions(matrices_of(model), cfg.void_ratio))[1]))
    finally:
        model.train(was_training)
    return void


def prequant_driver(model, stream: GuardedStream, cfg: AdaptConfig, *, rank: int = 0, world_size: int = 1,
                    device=None, dtype=None) -> DriverOutput:
    """Pre-quant TTT on the stream's validation tokens, then the stream scoring without adaptation."""
    void = prequant_adapt(model, stream, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype)
    out = stream_driver(model, stream, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype,
                        label="research:prequant")
    out.void = [(f"epoch {e}", v) for e, v in void]
    out.notes.append(f"pre-quant TTT: {cfg.prequant.epochs} epochs of AdamW on the validation targets before scoring")
    return out


def run_prequant(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, rank: int = 0,
                 world_size: int = 1, device=None, dtype=None, val_bytes=None) -> AdaptResult:
    """Pre-quant TTT on the validation tokens, then the stream scoring without adaptation (the harness
    owns the log, the sums and the verdict)."""
    return run_driver(prequant_driver, model, tokens, table, cfg, rank=rank, world_size=world_size, device=device,
                      dtype=dtype, val_bytes=val_bytes)


def prequant_before_gptq(model, tokens: np.ndarray, cfg: AdaptConfig, *, rank: int = 0, world_size: int = 1,
                         device=None, dtype=None) -> tuple[str, list]:
    """The trainer's pre-quant TTT: adapt on the validation tokens, then the checker's verdict on
    the recorded updates alone (no position scored yet; condition 4 is not at issue here).
    Returns (verdict, [(epoch, void fraction)]) — the verdict goes into the artifact metadata."""
    tokens = np.asarray(tokens)
    log = EventLog(len(tokens), rank=rank)
    stream = GuardedStream(torch.from_numpy(tokens.astype(np.int64)), log, cfg.seq_len, bos_id=model.cfg.bos_id)
    with stream.running():
        void = prequant_adapt(model, stream, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype)
    rep = check_events(gather_logs(log, world_size), vocab_size=model.cfg.vocab_size,
                       expected=np.zeros(len(tokens), dtype=bool))
    return rep.verdict, void
