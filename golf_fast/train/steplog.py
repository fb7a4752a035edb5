"""Step logging without a host sync per step.

Each step's loss stays on the device; :meth:`StepLog.record` keeps it with the host-side numbers
of the step (lr multiplier, seconds, loop state). On logging steps (:meth:`StepLog.due`: every
``every`` steps, step 1, and whenever the caller needs the values, e.g. before an evaluation or at
the end) :meth:`StepLog.flush` reads all pending losses back in one transfer, checks them, writes
one JSONL ``step`` record per step and, on logging steps, one progress line (loss, lr_mul,
ms/step, tok/s, ETA).

A NaN/inf loss raises :class:`TrainingDiverged` at the flush, naming the first bad step, its loss,
lr multiplier and learning rates (so detection lags by at most ``every`` steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from golf_fast.train.result import TrainingDiverged
from golf_fast.train.runlog import RunLog, fmt_secs


@dataclass
class _Pending:
    step: int
    loss: torch.Tensor
    lr_mul: float
    dt: float
    train_s: float
    looping: bool


class StepLog:
    """Buffers per-step losses on the device; writes them on logging steps.

    ``lrs_at(lr_mul) -> {group: lr}`` names the learning rates in a divergence message;
    ``seconds_left(step, train_s)`` gives the ETA.
    """

    def __init__(self, log: RunLog, *, every: int, tokens_per_step: int,
                 lrs_at: Callable[[float], dict[str, float]], seconds_left: Callable[[int, float], float]) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every: expected a positive int, got {every!r}")
        if tokens_per_step <= 0:
            raise ValueError(f"tokens_per_step: expected > 0, got {tokens_per_step}")
        self.log, self.every, self.tokens_per_step = log, every, tokens_per_step
        self.lrs_at, self.seconds_left = lrs_at, seconds_left
        self.losses: list[float] = []
        self._pending: list[_Pending] = []

    def due(self, step: int) -> bool:
        return step == 1 or step % self.every == 0

    def record(self, step: int, loss: torch.Tensor, *, lr_mul: float, dt: float, train_s: float,
               looping: bool) -> None:
        """Keep step ``step``'s loss (a 0-d tensor, not read back here) and its host-side numbers."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"loss: expected a one-element tensor, got {loss!r}")
        self._pending.append(_Pending(step, loss.detach().reshape(()), lr_mul, dt, train_s, looping))

    def flush(self) -> None:
        """Read the pending losses back (one transfer), check them and write their records; a progress
        line follows when the last pending step is a logging step (:meth:`due`)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        values = torch.stack([p.loss.float() for p in pending]).cpu().tolist()
        for p, v in zip(pending, values):
            if not math.isfinite(v):
                lrs = self.lrs_at(p.lr_mul)
                text = ", ".join(f"{k}={x:.3g}" for k, x in lrs.items())
                msg = f"loss is {v} at step {p.step} (lr_mul {p.lr_mul:.3f}; learning rates {text}); stopping"
                self.log.line("ERROR: " + msg)
                self.log.metric("diverged", step=p.step, loss=str(v), lrs=lrs)
                raise TrainingDiverged(msg)
            self.losses.append(v)
            self.log.metric("step", step=p.step, loss=v, lr_mul=p.lr_mul, step_ms=1000 * p.dt, train_s=p.train_s,
                            looping=p.looping)
        last, loss = pending[-1], values[-1]
        if not self.due(last.step):
            return
        ms = 1000 * last.train_s / last.step
        left = self.seconds_left(last.step, last.train_s)
        self.log.line(f"step {last.step:5d}  loss {loss:.4f}  lr_mul {last.lr_mul:.3f}  {ms:7.1f} ms/step  "
                      f"{self.tokens_per_step * last.step / max(last.train_s, 1e-9):,.0f} tok/s  "
                      f"train {fmt_secs(last.train_s)}  ETA {fmt_secs(left)}")
