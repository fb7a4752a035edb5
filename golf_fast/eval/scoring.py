"""Committing scores of a window batch, with the compliance probes at sampled positions.

The score of a target is ``−log p[target]`` with ``p = softmax(z + δ)`` over the full vocabulary
(``z``: the model's softcapped logits, fp32; ``δ``: an optional (V,) logit delta, SLOT). A
:class:`LogitScorer` produces both the per-position scores (a fused cross-entropy, never a
(B, W, V) probability tensor) and, at a probe position, the full log-probability row the score
came from.

Probes (every ``probe_every``-th scored batch, one row): the normalization probe sums that row's
probabilities in float64; the causality probe replaces every later input of the row with random
tokens, re-runs the forward under the same state, and records how much the probed score moved.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.eval.compliance.events import EventLog
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


def _probe_row(wb: WindowBatch) -> int:
    counts = wb.mask.sum(1)
    return int(torch.argmax(counts).item())


@torch.no_grad()
def run_probes(forward: Forward, wb: WindowBatch, logits: torch.Tensor, nats: torch.Tensor, scorer: LogitScorer,
               log: EventLog, rows: Optional[torch.Tensor], generator: torch.Generator, device, dtype) -> None:
    """Normalization and causality probes at the first scored target of the best-filled row."""
    r = _probe_row(wb)
    i = int(wb.first_target[r])
    pos = int(wb.pieces[r, 0])
    scorer = scorer.row(r)
    lp = scorer.log_probs(logits[r, i])
    log.normalization_probe(pos, float(lp.exp().sum()), lp.numel(), float(nats[r, i]), float(-lp[wb.y[r, i]]))
    x = wb.x[r:r + 1].clone()
    n_later = x.shape[1] - (i + 1)
    if n_later > 0:
        vocab = logits.shape[-1]
        x[0, i + 1:] = torch.randint(0, vocab, (n_later,), generator=generator).to(x.device)
    sub = rows[r:r + 1] if rows is not None else torch.tensor([r], device=x.device)
    with autocast_ctx(device, dtype):
        z = forward(x, sub)
    changed = scorer.nats(z[:, i:i + 1], wb.y[r:r + 1, i:i + 1])
    log.causality_probe(pos, abs(float(changed) - float(nats[r, i])))


def commit_scores(wb: WindowBatch, logits: torch.Tensor, scorer: LogitScorer, acc: BpbAccumulator,
                  log: EventLog) -> torch.Tensor:
    """Score the rows' pieces from ``logits`` (no grad), add them to ``acc``, record the event; returns nats."""
    with torch.no_grad():
        nats = scorer.nats(logits.detach(), wb.y)
        acc.add(nats, wb.x, wb.y, wb.mask, target_bytes=wb.tbytes)
        idx = torch.from_numpy(wb.flat_targets()).to(nats.device, non_blocking=True)
        committed = nats.reshape(-1).index_select(0, idx)  # each row's targets t0 .. t1−1, as the ranges
    log.score(wb.pieces, committed)
    return nats


def masked_loss_sum(logits: torch.Tensor, wb: WindowBatch, row_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Σ CE over the scored targets (rows with ``row_mask`` False excluded), fp32, differentiable."""
    ce = LogitScorer().nats(logits, wb.y)
    m = wb.mask if row_mask is None else wb.mask & row_mask[:, None]
    return (ce * m).sum()
