"""The guarded validation stream: the only way golf_fast's adaptive drivers read validation tokens.

:func:`golf_fast.eval.adapt.harness.run_driver` (behind ``run_adaptive``) builds the run's
:class:`~golf_fast.eval.compliance.events.EventLog`, its bpb accumulator and this stream from the true
tokens (and the CaseOps byte sidecar), and hands a driver the stream alone: no token array, no log or
accumulator it could replace. After the driver returns, the harness closes the stream and runs the
checker on its own log. Every read goes into the log with its purpose at the moment it happens, so
the checker decides from what was read, not from what a mode declares:

* ``windows(pieces, "score")`` — the windows of a score batch (windows.py). The driver gets copies;
  the stream keeps the true batch (tokens, targets, mask, target bytes) of every *open* score read
  (read, not yet committed) with a snapshot of the watched tensors' version counters. Only
  :func:`golf_fast.eval.scoring.commit_scores` closes a read, once, and it scores the stream's true
  targets, not the copy's;
* ``windows(pieces, "update", tag)`` — the windows an adaptation step trains on: recorded as an
  update event (tag ``tag``) reading ``[w0, t1)`` of each row, before the step uses them;
* ``read(ranges, "context")`` — raw tokens (any other use). A context read must touch only
  positions that are given, already scored, or before every target of the next score event.

Tripwires (events.TRIPWIRES), recorded on the score event when it is committed:

* ``STATE_CHANGED`` — while a score read is open, any ``torch.optim.Optimizer`` stepped (a global
  step pre-hook, installed by :meth:`running`), or the version counter (``Tensor._version``) of a
  watched tensor changed: every parameter of the model, every tensor or module a driver registers
  with :meth:`watch`, and every parameter of an optimizer that stepped during the run;
* ``READ_TWICE`` — a target of a score read was already read for score (committed or not);
* ``BATCH_EDITED`` — set by the commit when the batch it is handed differs from the read's tokens,
  targets or mask.

What this does not catch: a state change made without an optimizer step to a tensor that is not
watched (a δ fitted in closed form, or updated by hand in place on an unregistered tensor, between
the read and the commit); logits computed from other inputs than the batch read (the causality
probes sample that; the replay audit, audit.py, tests it without trusting any of these records);
and a driver that imitates the trusted commit (calls :meth:`GuardedStream.settle` and
:meth:`GuardedStream.record_score` itself) or reaches into the stream's private attributes. The
replay audit remains the trust-nothing check.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from golf_fast.eval.compliance.events import PURPOSES, READ_TWICE, STATE_CHANGED, EventLog, as_ranges
from golf_fast.eval.windows import WindowBatch, build_windows, document_spans


@dataclass
class _OpenRead:
    batch: WindowBatch
    """The true batch of the read (host tensors the driver never saw)."""
    versions: list
    """(weakref, version counter) of each watched tensor at the read."""
    trips: int = 0


class DriverLog:
    """A driver's view of the run's event log: it may record its update events, synchronization epochs and
    probes, and ask whether any update happened; score events and their checks are written only by the
    trusted commit (:func:`~golf_fast.eval.scoring.commit_scores`, through :meth:`GuardedStream.record_score`)."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def update(self, ranges, kind: str, collective: bool = False) -> int:
        return self._log.update(ranges, kind, collective)

    def new_epoch(self) -> None:
        self._log.new_epoch()

    def has_updates(self) -> bool:
        return self._log.has_updates()

    def normalization_probe(self, position: int, prob_sum: float, entries: int, nats_recorded: float,
                            nats_from_probs: float) -> None:
        self._log.normalization_probe(position, prob_sum, entries, nats_recorded, nats_from_probs)

    def causality_probe(self, position: int, max_abs_change: float) -> None:
        self._log.causality_probe(position, max_abs_change)


class GuardedStream:
    """``tokens`` (1-D int64 CPU) and the CaseOps byte sidecar behind a recording reader.

    ``acc``: the run's :class:`~golf_fast.eval.bpb.BpbAccumulator` (the trusted commit adds to it);
    ``bos_id``: the BOS token, for :meth:`documents` (the evaluation's structure, readable at any time).
    """

    def __init__(self, tokens: torch.Tensor, log: EventLog, seq_len: int,
                 val_bytes: Optional[torch.Tensor] = None, *, acc=None, bos_id: Optional[int] = None) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 1:
            raise TypeError("tokens: expected a 1-D int64 tensor")
        if not isinstance(log, EventLog) or log.num_tokens != tokens.numel():
            raise ValueError("log: expected an EventLog over the same number of tokens")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len: expected an int >= 1, got {seq_len!r}")
        if val_bytes is not None and (not isinstance(val_bytes, torch.Tensor) or val_bytes.shape != tokens.shape):
            raise ValueError("val_bytes: expected a tensor parallel to the tokens, or None")
        if bos_id is not None and (not isinstance(bos_id, (int, np.integer)) or bos_id < 0):
            raise ValueError(f"bos_id: expected a token id >= 0 or None, got {bos_id!r}")
        self._tokens, self._bytes, self._log, self._seq_len = tokens, val_bytes, log, seq_len
        self._acc = acc
        self._driver_log = DriverLog(log)
        self._bos = None if bos_id is None else int(bos_id)
        self._docs: Optional[np.ndarray] = None
        self._open: dict = {}
        self._score_read = np.zeros(tokens.numel(), dtype=bool)
        self._watched: dict = {}  # id -> weakref: a watched tensor is not kept alive by the stream
        self._closed = False

    # ------------------------------------------------------------------ what a driver may know

    @property
    def num_tokens(self) -> int:
        return int(self._tokens.numel())

    @property
    def seq_len(self) -> int:
        return self._seq_len

    @property
    def log(self) -> DriverLog:
        """The driver's view of the run's event log (:class:`DriverLog`: update events, epochs, probes); the
        harness keeps the log itself, so a driver can neither substitute another nor write score events."""
        return self._driver_log

    def documents(self) -> np.ndarray:
        """(D, 2) int64 ``[start, end)`` of the stream's documents (windows.document_spans): where the
        BOS tokens are is the evaluation's structure, not information about the text."""
        if self._bos is None:
            raise ValueError("bos_id: this stream was built without a BOS id; documents() needs it")
        if self._docs is None:
            self._docs = document_spans(self._tokens.numpy(), self._bos)
        return self._docs.copy()

    # ------------------------------------------------------------------ tripwires

    def watch(self, *objs) -> None:
        """Watch the version counters of tensors, of modules' parameters, or of iterables of them: any
        change between a score read and its commit trips STATE_CHANGED."""
        for o in objs:
            if isinstance(o, nn.Module):
                self.watch(*o.parameters())
            elif isinstance(o, torch.Tensor):
                ref = self._watched.get(id(o))
                if ref is None or ref() is not o:
                    self._watched[id(o)] = weakref.ref(o)
            elif isinstance(o, (list, tuple)) or hasattr(o, "__iter__"):
                self.watch(*list(o))
            else:
                raise TypeError(f"objs: expected tensors, modules or iterables of them, got {type(o).__name__}")

    def _versions(self) -> list:
        """(weakref, version counter) of every live watched tensor."""
        out = []
        for k, ref in list(self._watched.items()):
            t = ref()
            if t is None:
                del self._watched[k]
            else:
                out.append((ref, t._version))
        return out

    def _optimizer_step(self, optimizer, args, kwargs) -> None:
        """The global optimizer step pre-hook: trips every open score read, and watches the stepped parameters."""
        for rec in self._open.values():
            rec.trips |= STATE_CHANGED
        for g in optimizer.param_groups:
            self.watch(*g["params"])

    @contextlib.contextmanager
    def running(self):
        """While active, every ``torch.optim.Optimizer`` step in the process is seen (global step pre-hook);
        on exit the stream is closed (no read or commit after the driver returned)."""
        handle = register_optimizer_step_pre_hook(self._optimizer_step)
        try:
            yield self
        finally:
            handle.remove()
            self._closed = True

    # ------------------------------------------------------------------ reads

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("stream: closed (the driver returned); nothing more can be read or committed")

    def windows(self, pieces, purpose: str, tag: str = "") -> WindowBatch:
        """The :class:`WindowBatch` of ``pieces``, its read recorded (``purpose`` score or update); a score
        batch is a copy, the true one stays open here until :func:`~golf_fast.eval.scoring.commit_scores`."""
        self._check_open()
        if purpose not in ("score", "update"):
            raise ValueError(f"purpose: windows are read to score or to update, got {purpose!r}")
        wb = build_windows(self._tokens, pieces, self._seq_len, self._bytes if purpose == "score" else None)
        wb.read_seq = self._log.read(wb.windows, purpose, tag)
        wb.purpose = purpose
        if purpose == "update":
            return wb
        trips = 0
        for a, b in wb.pieces:
            if self._score_read[a:b].any():
                trips |= READ_TWICE
            self._score_read[a:b] = True
        self._open[wb.read_seq] = _OpenRead(wb, self._versions(), trips)
        return WindowBatch(wb.x.clone(), wb.y.clone(), wb.mask.clone(), wb.pieces.copy(), wb.windows.copy(),
                           wb.tbytes.clone() if wb.tbytes is not None else None, wb.read_seq, wb.purpose)

    def read(self, ranges, purpose: str = "context", tag: str = "") -> list:
        """Raw token ranges (a list of 1-D int64 tensors), the read recorded (an update read tagged ``tag``)."""
        self._check_open()
        if purpose not in PURPOSES:
            raise ValueError(f"purpose: expected one of {PURPOSES}, got {purpose!r}")
        if purpose == "score":
            raise ValueError("purpose: a score read is a windows(pieces, 'score') read")
        r = as_ranges(ranges)
        self._log.read(r, purpose, tag or ("raw" if purpose == "update" else ""))
        return [self._tokens[int(a):int(b)].clone() for a, b in r]

    # ------------------------------------------------------------------ the trusted commit's side

    def settle(self, wb: WindowBatch) -> tuple[WindowBatch, int]:
        """For :func:`~golf_fast.eval.scoring.commit_scores` only: close the open score read of ``wb`` and
        return (its true host batch, its tripwire bits). Raises when ``wb`` is not an open score read of
        this stream or its pieces or windows differ from what the read recorded."""
        self._check_open()
        if not isinstance(wb, WindowBatch):
            raise TypeError(f"wb: expected a WindowBatch, got {type(wb).__name__}")
        rec = self._open.pop(wb.read_seq, None)
        if rec is None:
            raise ValueError(f"wb: read {wb.read_seq} is no open score read of this stream (already committed, "
                             f"or not read here to score)")
        true = rec.batch
        if not (np.array_equal(wb.pieces, true.pieces) and np.array_equal(wb.windows, true.windows)):
            raise ValueError(f"wb: its pieces or windows differ from what read {wb.read_seq} recorded")
        for ref, v in rec.versions:
            t = ref()
            if t is not None and t._version != v:
                rec.trips |= STATE_CHANGED
                break
        return true, rec.trips

    def record_score(self, true: WindowBatch, nats: torch.Tensor, max_dev, trips: int, edited) -> int:
        """For :func:`~golf_fast.eval.scoring.commit_scores` only: the score event of a settled read, with its
        per-position losses ``nats`` (1-D, the pieces' targets in order), check and tripwires; returns its seq."""
        seq = self._log.score(true.pieces, nats)
        self._log.score_check(seq, max_dev, trips, edited)
        return seq

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary the run's log expects every committed score to cover (0: unknown)."""
        return self._log.vocab_size

    @property
    def audit_watch(self) -> Optional[dict]:
        """The replay audit's watch of this run (events.watching), or None."""
        return self._log.watch

    @property
    def accumulator(self):
        """The run's bpb accumulator (the trusted commit adds to it); None when the stream has none."""
        return self._acc

    def open_reads(self) -> int:
        """Score reads not committed (yet)."""
        return len(self._open)
