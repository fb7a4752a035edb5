"""Stream-order adaptive evaluation: score-first full-model TTT (AdamW), SLOT, and the baseline.

The validation stream is cut into chunks of ``chunk_tokens`` positions; every chunk's targets
(every position but 0: a document's closing BOS is its last target, windows.py) are split into pieces (windows.py), the pieces dealt round-robin to the
ranks. For each chunk, in order:

1. **score** this rank's pieces under no-grad with the current state (weights, δ), committing the
   scores (event: score; probes every ``probe_every`` batches);
2. **adapt** on the chunk, unless it is the last one: ``adamw`` runs ``epochs`` steps of AdamW on
   the unfrozen last blocks over the chunk's targets (gradients summed over ranks: a collective
   update, recorded at the start of a new epoch of the event log); ``slot="causal"`` re-fits δ on
   the last ``focal_positions`` scored positions (gathered from every rank, so δ is the same on all).

``slot="window"`` (research mode, the SLOT submission as written) fits δ on the chunk's own targets
*before* scoring them. ``update_before_score`` does the same for AdamW: a deliberately broken TTT,
for testing the checker. The checker (not these names) decides the verdict.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.full_model import last_blocks_parameters, train_on_pieces
from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.result import AdaptResult
from golf_fast.eval.collectives import all_gather_cat
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.scoring import LogitScorer, ProbeSchedule, autocast_ctx, commit_scores, run_probes
from golf_fast.eval.adapt.slot import SlotBuffer, fit_delta
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.eval.windows import piece_windows, stream_chunk_pieces


def _gather_buffer(z, y, pos, read, world_size, device):
    if world_size <= 1:
        return z, y, pos, read
    z = all_gather_cat(z, world_size)
    y = all_gather_cat(y, world_size)
    meta = all_gather_cat(torch.from_numpy(np.concatenate([pos[:, None], read], 1)).to(device), world_size).cpu().numpy()
    return z, y, meta[:, 0], meta[:, 1:]


def run_stream(model, tokens: np.ndarray, table: TokenByteTable, cfg: AdaptConfig, *, adapt: str = "none",
               slot: str = "none", update_before_score: bool = False, rank: int = 0, world_size: int = 1,
               device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
               label: Optional[str] = None, val_bytes=None) -> AdaptResult:
    """Score ``tokens`` in stream chunks with optional AdamW TTT and SLOT (see the module docstring):
    :func:`stream_driver` run by the harness (which owns the log, the sums and the verdict).

    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (else ``table``'s byte counts).
    """
    return run_driver(stream_driver, model, tokens, table, cfg, rank=rank, world_size=world_size, device=device,
                      dtype=dtype, val_bytes=val_bytes, adapt=adapt, slot=slot,
                      update_before_score=update_before_score, label=label)


def stream_driver(model, stream: GuardedStream, cfg: AdaptConfig, *, adapt: str = "none", slot: str = "none",
                  update_before_score: bool = False, rank: int = 0, world_size: int = 1,
                  device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
                  label: Optional[str] = None) -> DriverOutput:
    """The stream-order driver (module docstring) on the run's guarded ``stream``."""
    if adapt not in ("none", "adamw"):
        raise ValueError(f"adapt: expected none or adamw, got {adapt!r}")
    if slot not in ("none", "causal", "window"):
        raise ValueError(f"slot: expected none, causal or window, got {slot!r}")
    if not isinstance(stream, GuardedStream):
        raise TypeError(f"stream: expected a GuardedStream, got {type(stream).__name__}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    log = stream.log
    n, V, docs = stream.num_tokens, model.cfg.vocab_size, stream.documents()
    chunk = cfg.adamw.chunk_tokens if adapt == "adamw" else cfg.slot_cfg.chunk_tokens if slot != "none" \
        else cfg.adamw.chunk_tokens
    chunks = [(c, min(c + chunk, n)) for c in range(0, n, chunk)]
    scorer = LogitScorer(torch.zeros(V, device=device) if slot != "none" else None)
    buffer = SlotBuffer(cfg.slot_cfg.focal_positions)
    probes = ProbeSchedule(cfg.probe_every, cfg.probe_seed * 7919 + rank if cfg.probe_seed >= 0 else -1)
    notes, void = [f"probe seed {probes.seed}"], []
    if adapt == "adamw":
        params, mask = last_blocks_parameters(model, cfg.adamw.freeze_blocks)
        a = cfg.adamw
        opt = torch.optim.AdamW(params, lr=a.lr, betas=(a.beta1, a.beta2), weight_decay=a.weight_decay)
    was_training = model.training
    model.eval()

    def forward(x, rows):
        return model.logits(x)

    def adapt_on(pieces, mine):
        log.new_epoch()
        log.update(piece_windows(mine, cfg.seq_len), "adamw", collective=True)
        total = int(sum(p[2] - p[1] for p in pieces))
        for _ in range(cfg.adamw.epochs):
            train_on_pieces(model, stream, mine, total, params, opt, batch_seqs=cfg.batch_seqs,
                            world_size=world_size, device=device, dtype=dtype, tag="adamw", grad_clip=cfg.adamw.grad_clip,
                            mask_grads=mask)

    def fit(z, y, pos, read):
        z, y, pos, read = _gather_buffer(z, y, pos, read, world_size, device)
        log.new_epoch()  # the gather is a synchronization point on every rank
        if not len(pos):
            return
        b = SlotBuffer(cfg.slot_cfg.focal_positions)  # the latest positions over all ranks, in position order
        b.add(z, y, pos, read)
        log.update(b.read, "slot", collective=True)
        scorer.delta = fit_delta(b.z, b.y, scorer.delta, cfg.slot_cfg)

    try:
        for k, (c0, c1) in enumerate(chunks):
            pieces = stream_chunk_pieces(docs, c0, c1, cfg.seq_len, n)
            if not pieces:
                continue
            mine = pieces[rank::world_size]
            last = k == len(chunks) - 1
            if adapt == "adamw" and update_before_score:
                adapt_on(pieces, mine)
            if slot == "window":  # research: δ fitted on the targets it is about to score
                zs, ys, ps, rs = [], [], [], []
                with torch.no_grad():
                    for i in range(0, len(mine), cfg.batch_seqs):
                        wb = stream.windows(mine[i:i + cfg.batch_seqs], "update", "slot").to(device)
                        with autocast_ctx(device, dtype):
                            z = forward(wb.x, None).float()
                        r_, c_ = wb.mask.nonzero(as_tuple=True)
                        zs.append(z[r_, c_])
                        ys.append(wb.y[r_, c_])
                        ps.append(wb.windows[r_.cpu().numpy(), 0] + c_.cpu().numpy() + 1)
                        rs.append(wb.windows[r_.cpu().numpy()])
                b = SlotBuffer(cfg.slot_cfg.focal_positions)
                if zs:
                    b.add(torch.cat(zs), torch.cat(ys), np.concatenate(ps), np.concatenate(rs))
                    fit(b.z, b.y, b.pos, b.read)
                else:
                    fit(torch.zeros(0, V, device=device), torch.zeros(0, dtype=torch.long, device=device),
                        np.zeros(0, np.int64), np.zeros((0, 2), np.int64))
            for i in range(0, len(mine), cfg.batch_seqs):
                wb_host = stream.windows(mine[i:i + cfg.batch_seqs], "score")
                wb = wb_host.to(device)
                with torch.no_grad(), autocast_ctx(device, dtype):
                    logits = forward(wb.x, None)
                nats = commit_scores(wb, logits, scorer, stream)
                if probes.due(log):
                    run_probes(forward, wb, logits, nats, scorer, log, None, probes.generator, device, dtype)
                if slot == "causal":
                    r_, c_ = wb_host.mask.nonzero(as_tuple=True)  # the host mask: no device sync
                    rn, cn = r_.numpy(), c_.numpy()
                    r_, c_ = r_.to(device), c_.to(device)
                    buffer.add(logits[r_, c_].float(), wb.y[r_, c_], wb.windows[rn, 0] + cn + 1, wb.windows[rn])
            if last:
                continue
            if adapt == "adamw" and not update_before_score:
                adapt_on(pieces, mine)
            if slot == "causal":
                z = buffer.z if buffer.z is not None else torch.zeros(0, V, device=device)
                y = buffer.y if buffer.y is not None else torch.zeros(0, dtype=torch.long, device=device)
                fit(z, y, buffer.pos, buffer.read)
        if adapt == "adamw":
            void.append(("end", to_host(*void_fractions(matrices_of(model), cfg.void_ratio))[1]))
    finally:
        model.train(was_training)
    name = label or ("+".join([f"ttt:{adapt}"] + ([f"slot:{slot}"] if slot != "none" else []))
                     + (" (update before score)" if update_before_score else ""))
    return DriverOutput(name, notes, void or None)
