"""The run owns the record: :func:`run_driver` runs one adaptive-evaluation driver on a guarded stream.

A *driver* is ``driver(model, stream, cfg, *, rank, world_size, device, dtype, **kw) -> DriverOutput``:
it gets the :class:`~golf_fast.eval.compliance.guarded.GuardedStream` alone (no token array, no byte
sidecar, no event log or accumulator of its own), reads windows from it, commits scores with
:func:`golf_fast.eval.scoring.commit_scores`, and returns its label, notes and void fractions.

:func:`run_driver` (trusted) builds from the true tokens: the event log (document-start BOS tokens
recorded as given), the bpb accumulator, the stream (watching every parameter of the model and every
optimizer step, guarded.py); runs the driver; closes the stream; then takes the sums from its own
accumulator and runs the checker with its own expected targets (:func:`expected_targets`) and
per-position bytes (windows.target_bytes) — so a driver cannot choose which targets count, what
they weigh, or skip the checker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AdaptResult, finish
from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.eval.compliance.events import EventLog
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.windows import scoring_inputs, target_bytes


@dataclass
class DriverOutput:
    """What a driver reports besides its committed scores: a label for reports, notes, void fractions."""

    label: str
    notes: list = field(default_factory=list)
    void: Optional[list] = None
    """(when, overall void fraction) at each adaptation epoch/phase, or None."""


Driver = Callable[..., DriverOutput]
"""``driver(model, stream, cfg, *, rank, world_size, device, dtype, **kw) -> DriverOutput``."""


def expected_targets(n_tokens: int) -> np.ndarray:
    """Bool mask of the positions every mode must score: the targets of the plain evaluation of the
    same stream, ``1 .. N−1`` (every position but 0; a document's closing BOS included)."""
    if not isinstance(n_tokens, (int, np.integer)) or n_tokens < 2:
        raise ValueError(f"n_tokens: expected an int >= 2, got {n_tokens!r}")
    m = np.ones(int(n_tokens), dtype=bool)
    m[0] = False
    return m


def run_driver(driver: Driver, model, tokens: np.ndarray, table: Optional[TokenByteTable], cfg: AdaptConfig, *,
               rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None,
               dtype: Optional[torch.dtype] = None, val_bytes=None, **driver_kw) -> AdaptResult:
    """Run ``driver`` on ``model`` over the validation ``tokens`` (see the module docstring) and return the
    result with the checker's verdict. ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens``
    (then ``table`` may be None); ``driver_kw``: the driver's own options."""
    if not callable(driver):
        raise TypeError(f"driver: expected a callable, got {type(driver).__name__}")
    if not isinstance(cfg, AdaptConfig):
        raise TypeError(f"cfg: expected an AdaptConfig, got {type(cfg).__name__}")
    for name, v, lo in (("rank", rank, 0), ("world_size", world_size, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    t_start = time.perf_counter()
    device, tokens, toks, vb, n, V, bos, docs = scoring_inputs(model, tokens, cfg.seq_len, device, val_bytes)
    log = EventLog(n, rank=rank, vocab_size=V)
    log.given(docs[tokens[docs[:, 0]] == bos, 0])
    acc = BpbAccumulator(table, device)
    stream = GuardedStream(toks, log, cfg.seq_len, vb, acc=acc, bos_id=bos)
    stream.watch(model)
    with stream.running():
        out = driver(model, stream, cfg, rank=rank, world_size=world_size, device=device, dtype=dtype, **driver_kw)
    if not isinstance(out, DriverOutput):
        raise TypeError(f"driver: expected it to return a DriverOutput, got {type(out).__name__}")
    result = acc.result(seconds=time.perf_counter() - t_start)
    return finish(out.label, result, log, expected_targets(n), V, world_size, list(out.notes), out.void or None,
                  position_bytes=target_bytes(toks, table, vb))
