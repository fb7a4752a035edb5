"""Committing scores of a window batch, with the compliance probes at sampled positions.

The score of a target is ``−log p[target]`` with ``p = softmax(z + δ)`` over the full vocabulary
(``z``: the model's softcapped logits, fp32; ``δ``: an optional (V,) logit delta, SLOT). A
:class:`LogitScorer` produces both the per-position scores (a fused cross-entropy, never a
(B, W, V) probability tensor) and, at a probe position, the full log-probability row the score
came from.

Every committed batch is checked at every scored position (:func:`commit_scores`). Probes (the
first batch, every ``probe_every``-th, and the first after the first update; a random scored
position): the normalization probe sums that position's probabilities in float64; the causality
probe replaces every later input of the row with random tokens, re-runs the forward under the
same state, and records how much the probed score moved.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from golf_fast.eval.compliance.events import EventLog
from golf_fast.eval.compliance.guarded import DriverLog, GuardedStream
from golf_fast.eval.windows import WindowBatch

Forward = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]
"""``forward(x (B, W), rows) -> logits (B, W, V)``; ``rows``: which rows of the adapter batch (None: all)."""


class LogitScorer:
    """``score = −log softmax(z + δ)[y]`` over the full vocabulary; ``delta`` (V,) for every row,
    (B, V) one per row of the (B, W, V) logits, or None."""

    def __init__(self, delta: Optional[torch.Tensor] = None) -> None:
        self.delta = delta

    def _z(self, logits: torch.Tensor) -> torch.Tensor:
        z = logits.float()
        if self.delta is None:
            return z
        d = self.delta.to(z.device)
        return z + (d[:, None, :] if d.dim() == 2 else d)

    def row(self, r: int) -> "LogitScorer":
        """The scorer of row ``r`` alone."""
        return LogitScorer(self.delta[r]) if self.delta is not None and self.delta.dim() == 2 else self

    def nats(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self._z(logits)
        return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1), reduction="none").view(y.shape)

    def log_probs(self, logits_row: torch.Tensor) -> torch.Tensor:
        """(V,) log-probabilities of one position, float64."""
        return torch.log_softmax(self._z(logits_row).double(), dim=-1)


def autocast_ctx(device: torch.device, dtype: Optional[torch.dtype]):
    """Autocast to ``dtype`` on ``device``'s type; a no-op context for None or float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


class ProbeSchedule:
    """When to probe: the first scored batch, every ``every``-th, and the first batch scored after the
    first update of the run (so at least one probe sees an adapted state). Probe positions are drawn
    from ``generator`` — seeded per run (``seed`` −1: a fresh random seed, reported in the notes)."""

    def __init__(self, every: int, seed: int = -1) -> None:
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every: expected an int >= 1, got {every!r}")
        self.seed = int(secrets.randbits(62)) if seed is None or seed < 0 else int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.every, self.batches, self._after_update = every, 0, False

    def due(self, log: EventLog | DriverLog) -> bool:
        """Whether the batch about to be scored is probed (call once per scored batch)."""
        first_after = not self._after_update and log.has_updates()
        due = self.batches % self.every == 0 or first_after
        if first_after:
            self._after_update = True
        self.batches += 1
        return due


def _probe_site(wb: WindowBatch, generator: torch.Generator) -> tuple[int, int]:
    """A random scored target: (row, column), drawn on the host (no device sync)."""
    lens = wb.pieces[:, 1] - wb.pieces[:, 0]
    k = int(torch.randint(0, int(lens.sum()), (1,), generator=generator))
    r = int(np.searchsorted(np.cumsum(lens), k, side="right"))
    return r, int(wb.first_target[r] + k - (np.cumsum(lens)[r] - lens[r]))


@torch.no_grad()
def run_probes(forward: Forward, wb: WindowBatch, logits: torch.Tensor, nats: torch.Tensor, scorer: LogitScorer,
               log: EventLog | DriverLog, rows: Optional[torch.Tensor], generator: torch.Generator, device,
               dtype) -> None:
    """Normalization and causality probes at a random scored target of the batch (float64 Σp; the score
    after every later input of the row is replaced by random tokens, under the same state)."""
    r, i = _probe_site(wb, generator)
    pos = int(wb.windows[r, 0]) + i + 1
    scorer = scorer.row(r)
    lp = scorer.log_probs(logits[r, i])
    log.normalization_probe(pos, float(lp.exp().sum()), lp.numel(), float(nats[r, i]), float(-lp[wb.y[r, i]]))
    x = wb.x.clone()  # the whole batch (the same kernels and batch shape as the scored forward), row r altered
    n_later = x.shape[1] - (i + 1)
    if n_later > 0:
        vocab = logits.shape[-1]
        x[r, i + 1:] = torch.randint(0, vocab, (n_later,), generator=generator).to(x.device)
    with autocast_ctx(device, dtype):
        z = forward(x, rows)
    changed = scorer.nats(z[r:r + 1, i:i + 1], wb.y[r:r + 1, i:i + 1])
    log.causality_probe(pos, abs(float(changed) - float(nats[r, i])))


def commit_scores(wb: WindowBatch, logits: torch.Tensor, scorer: LogitScorer, stream: GuardedStream) -> torch.Tensor:
    """Commit the scores of a guarded score batch (no grad): add them to the run's accumulator, record the
    score event with its per-position losses, its per-position check and its tripwires; returns the
    (B, W) nats.

    Trusted code; it trusts nothing of ``wb`` but its read: the tokens ``x``, targets ``y``, mask and
    target bytes are the stream's own copy of what read ``wb.read_seq`` returned (the driver's tensors
    are only compared with them: any difference trips BATCH_EDITED, on the device, without a sync), and
    a batch whose pieces or windows differ from its read is rejected. The check recomputes
    ``−log softmax(z + δ)[y]`` over the full vocabulary with ``F.cross_entropy`` from the logits and the
    scorer's δ (not from ``scorer.nats``) at every scored position and records the largest deviation
    from what the scorer committed. ``logits``: (B, W, V) from the driver's forward of ``wb.x``.
    """
    if not isinstance(stream, GuardedStream):
        raise TypeError(f"stream: expected the run's GuardedStream, got {type(stream).__name__}")
    if not isinstance(wb, WindowBatch) or wb.purpose != "score" or wb.read_seq is None:
        raise ValueError("wb: scores are committed only for a batch read through the guarded stream to score")
    acc = stream.accumulator
    if acc is None:
        raise ValueError("stream: it has no accumulator to commit scores to")
    true, trips = stream.settle(wb)  # once per read: a second commit of the same read raises here
    if wb.x.shape != true.x.shape or wb.y.shape != true.y.shape or wb.mask.shape != true.mask.shape:
        raise ValueError(f"wb: shape {tuple(wb.x.shape)} differs from its read's {tuple(true.x.shape)}")
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(true.y.shape):
        raise ValueError(f"logits: expected (B, W, V) with (B, W) = {tuple(true.y.shape)}, got {tuple(logits.shape)}")
    with torch.no_grad():
        z = logits.detach()
        dev_ = z.device
        x, y = true.x.to(dev_, non_blocking=True), true.y.to(dev_, non_blocking=True)
        m = true.mask.to(dev_, non_blocking=True)
        tb = true.tbytes.to(dev_, non_blocking=True) if true.tbytes is not None else None
        edited = (wb.x.to(dev_) != x).any() | ((wb.y.to(dev_) != y) & m).any() | (wb.mask.to(dev_) != m).any()
        nats = scorer.nats(z, y)
        idx = torch.from_numpy(true.flat_targets()).to(nats.device, non_blocking=True)
        committed = nats.reshape(-1).index_select(0, idx)  # each row's targets t0 .. t1−1, as the ranges
        V, W = z.shape[-1], z.shape[1]
        zs = z.reshape(-1, V).index_select(0, idx).float()  # only the scored positions: (n, V)
        if scorer.delta is not None:
            d = scorer.delta.to(zs.device).float()
            zs = zs + (d.index_select(0, torch.div(idx, W, rounding_mode="floor")) if d.dim() == 2 else d)
        ref = F.cross_entropy(zs, y.reshape(-1).index_select(0, idx), reduction="none")
        dev = (committed.double() - ref.double()).abs().max() if idx.numel() else torch.zeros((), dtype=torch.float64)
        if V != stream.vocab_size and stream.vocab_size:
            dev = torch.full((), float("inf"), dtype=torch.float64)  # not the whole vocabulary
        acc.add(nats, x, y, m, target_bytes=tb)
    stream.record_score(true, committed, dev, trips, edited)
    if stream.audit_watch is not None:
        _record_watched(true, LogitScorer(scorer.delta), z, stream.audit_watch)
    return nats


def _record_watched(wb: WindowBatch, scorer: LogitScorer, z: torch.Tensor, watch: dict) -> None:
    """The replay audit: ``log p[token]`` at each watched position this batch scores (the same fp32
    cross-entropy the score uses, so a legal mode reproduces its committed score)."""
    for j, tok in watch["want"].items():
        rows = np.flatnonzero((wb.pieces[:, 0] <= j) & (j < wb.pieces[:, 1]))
        for r in rows:
            col = int(j - wb.windows[r, 0] - 1)
            t = torch.tensor([tok], device=z.device)
            zr = scorer.row(int(r))._z(z[r, col:col + 1])
            watch["got"][j] = -float(F.cross_entropy(zr, t))


def masked_loss_sum(logits: torch.Tensor, wb: WindowBatch, row_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Σ CE over the scored targets (rows with ``row_mask`` False excluded), fp32, differentiable."""
    ce = LogitScorer().nats(logits, wb.y)
    m = wb.mask if row_mask is None else wb.mask & row_mask[:, None]
    return (ce * m).sum()
