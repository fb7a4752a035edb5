"""The guarded validation stream: the way golf_fast's adaptive drivers read validation tokens.

Every read goes into the run's :class:`~golf_fast.eval.compliance.events.EventLog` with its purpose
at the moment it happens, so the checker decides from what was read, not from what a mode
declares:

* ``windows(pieces, "score")`` — the windows of a score batch (windows.py); the batch carries the
  seq of its read, and :func:`golf_fast.eval.scoring.commit_scores` accepts only such a batch, once;
* ``windows(pieces, "update", tag)`` — the windows an adaptation step trains on: recorded as an
  update event (tag ``tag``) reading ``[w0, t1)`` of each row, before the step uses them;
* ``read(ranges, "context")`` — raw tokens (any other use). A context read must touch only
  positions that are given, already scored, or before every target of the next score event.

The stream holds its tokens privately, but a driver is handed the raw token array by
:func:`golf_fast.eval.adapt.run.run_adaptive` and builds the stream itself: that every read goes
through it is a convention of the drivers, not something the stream enforces. A driver that reads
the array directly, or reuses a batch it already holds, leaves no read here; the replay audit
(audit.py) is the check that does not rely on these records.
"""

from __future__ import annotations

from typing import Optional

import torch

from golf_fast.eval.compliance.events import PURPOSES, EventLog, as_ranges
from golf_fast.eval.windows import WindowBatch, build_windows


class GuardedStream:
    """``tokens`` (1-D int64 CPU) and the CaseOps byte sidecar behind a recording reader."""

    def __init__(self, tokens: torch.Tensor, log: EventLog, seq_len: int,
                 val_bytes: Optional[torch.Tensor] = None) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 1:
            raise TypeError("tokens: expected a 1-D int64 tensor")
        if not isinstance(log, EventLog) or log.num_tokens != tokens.numel():
            raise ValueError("log: expected an EventLog over the same number of tokens")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len: expected an int >= 1, got {seq_len!r}")
        self._tokens, self._bytes, self.log, self.seq_len = tokens, val_bytes, log, seq_len

    @property
    def num_tokens(self) -> int:
        return int(self._tokens.numel())

    def windows(self, pieces, purpose: str, tag: str = "") -> WindowBatch:
        """The :class:`WindowBatch` of ``pieces``, its read recorded (``purpose`` score or update)."""
        if purpose not in ("score", "update"):
            raise ValueError(f"purpose: windows are read to score or to update, got {purpose!r}")
        wb = build_windows(self._tokens, pieces, self.seq_len, self._bytes if purpose == "score" else None)
        wb.read_seq = self.log.read(wb.windows, purpose, tag)
        wb.purpose = purpose
        return wb

    def read(self, ranges, purpose: str = "context", tag: str = "") -> list:
        """Raw token ranges (a list of 1-D int64 tensors), the read recorded (an update read tagged ``tag``)."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose: expected one of {PURPOSES}, got {purpose!r}")
        r = as_ranges(ranges)
        self.log.read(r, purpose, tag or ("raw" if purpose == "update" else ""))
        return [self._tokens[int(a):int(b)].clone() for a, b in r]
