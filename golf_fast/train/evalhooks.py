"""Evaluation hooks of a training run: the periodic plain eval during training (``eval.val_every``)
and the full eval (plain, plus sliding-window when ``eval.stride`` < ``eval.seq_len``) of the
pre-quantization and round-tripped models. Each result is logged as a line and a JSONL record.
Bytes come from the CaseOps sidecar ``val_bytes`` when given, else from ``table``."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.distributed import Dist
from golf_fast.eval.bpb import EvalResult
from golf_fast.eval.evaluate import evaluate
from golf_fast.train.config import EvalConfig
from golf_fast.train.runlog import RunLog


class EvalHooks:
    """Evaluations of ``val`` (token ids) with ``table``'s byte counts, split over ``d``'s ranks."""

    def __init__(self, val: np.ndarray, table: TokenByteTable, cfg: EvalConfig, d: Dist,
                 dtype: Optional[torch.dtype], log: RunLog, val_bytes: Optional[np.ndarray] = None) -> None:
        if not isinstance(cfg, EvalConfig):
            raise TypeError(f"cfg: expected an EvalConfig, got {type(cfg).__name__}")
        if len(val) < cfg.seq_len + 1:
            raise ValueError(f"val: {len(val)} validation tokens are fewer than eval.seq_len + 1 = {cfg.seq_len + 1}")
        if val_bytes is not None and len(val_bytes) != len(val):
            raise ValueError(f"val_bytes: {len(val_bytes)} byte counts for {len(val)} validation tokens")
        self.val, self.table, self.cfg, self.d, self.dtype, self.log = val, table, cfg, d, dtype, log
        self.val_bytes = val_bytes

    def _evaluate(self, model, stride: Optional[int] = None) -> EvalResult:
        return evaluate(model, self.val, self.table, seq_len=self.cfg.seq_len, stride=stride,
                        batch_seqs=self.cfg.batch_seqs, rank=self.d.rank, world_size=self.d.world,
                        device=self.d.device, dtype=self.dtype, val_bytes=self.val_bytes)

    def due(self, step: int) -> bool:
        """Whether a periodic evaluation runs after step ``step``."""
        return bool(self.cfg.val_every) and step % self.cfg.val_every == 0

    def periodic(self, model, step: int) -> EvalResult:
        """Plain eval during training (the caller pauses its clock)."""
        r = self._evaluate(model)
        self.log.line(f"step {step:5d}  val_loss {r.val_loss:.4f}  val_bpb {r.val_bpb:.4f}  "
                      f"({r.seconds:.1f} s, not timed)")
        self.log.metric("val", step=step, **r.as_dict())
        return r

    def full(self, model, what: str) -> dict[str, dict]:
        """``{"plain": ..., "sliding": ...}`` (sliding only with a stride below seq_len); ``what`` labels the logs."""
        out = {}
        r = self._evaluate(model)
        out["plain"] = r.as_dict()
        self.log.line(f"{what}: val_loss {r.val_loss:.5f}  val_bpb {r.val_bpb:.5f}  "
                      f"({r.tokens:,} tokens, {r.seconds:.1f} s)")
        self.log.metric("eval", what=what, mode="plain", **r.as_dict())
        if self.cfg.stride and self.cfg.stride < self.cfg.seq_len:
            r = self._evaluate(model, self.cfg.stride)
            out["sliding"] = r.as_dict()
            self.log.line(f"{what} (sliding, stride {self.cfg.stride}): val_loss {r.val_loss:.5f}  "
                          f"val_bpb {r.val_bpb:.5f}  ({r.seconds:.1f} s)")
            self.log.metric("eval", what=what, mode="sliding", **r.as_dict())
        return out
