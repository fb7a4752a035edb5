"""Evaluation hooks of a training run: the periodic plain eval during training (``eval.val_every``)
and the full eval (plain, plus sliding-window when ``eval.stride`` < ``eval.seq_len``) of the
pre-quantization and round-tripped models, and the evaluation-time adaptation of the round-tripped
model (``eval.adapt``: its ``ttt`` / ``slot`` / ``research`` mode) with its compliance verdict. Each result is
logged as a line and a JSONL record; the void fraction goes with every periodic and full eval
(its one host sync is at these logging steps). Once ``flag`` is set (a non-compliant research
mode touched the weights), every line and record carries it. Bytes come from the CaseOps sidecar
``val_bytes`` when given, else from ``table``."""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.distributed import Dist
from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AUDIT_FAILED, NONCOMPLIANT_KEY, UNAUDITED, audit_text
from golf_fast.eval.adapt.run import run_adaptive
from golf_fast.eval.bpb import EvalResult
from golf_fast.eval.compliance.audit import AuditReport, prefix_audit
from golf_fast.eval.evaluate import evaluate
from golf_fast.eval.ternary_void import matrices_of, to_host, void_fractions
from golf_fast.model.gpt import GPT
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
        self.adapt: AdaptConfig = cfg.adapt
        self.flag: Optional[str] = None
        """The checker's verdict once a non-compliant research mode changed the weights."""

    def _tags(self) -> dict:
        return {NONCOMPLIANT_KEY: self.flag} if self.flag else {}

    def _suffix(self) -> str:
        return f"  [{self.flag}]" if self.flag else ""

    def void_fraction(self, model) -> Optional[float]:
        """Overall void fraction (|w| < ratio·mean|w| per matrix) of a GPT, one host sync; None for other models."""
        if not isinstance(model, GPT):
            return None
        return to_host(*void_fractions(matrices_of(model), self.adapt.void_ratio))[1]

    @staticmethod
    def _void_text(vf: Optional[float]) -> str:
        return f"  void {vf:.4f}" if vf is not None else ""

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
        vf = self.void_fraction(model)
        self.log.line(f"step {step:5d}  val_loss {r.val_loss:.4f}  val_bpb {r.val_bpb:.4f}{self._void_text(vf)}  "
                      f"({r.seconds:.1f} s, not timed){self._suffix()}")
        self.log.metric("val", step=step, void_fraction=vf, **r.as_dict(), **self._tags())
        return r

    def full(self, model, what: str) -> dict[str, dict]:
        """``{"plain": ..., "sliding": ...}`` (sliding only with a stride below seq_len); ``what`` labels the logs."""
        out = {}
        r = self._evaluate(model)
        vf = self.void_fraction(model)
        out["plain"] = {**r.as_dict(), "void_fraction": vf, **self._tags()}
        self.log.line(f"{what}: val_loss {r.val_loss:.5f}  val_bpb {r.val_bpb:.5f}{self._void_text(vf)}  "
                      f"({r.tokens:,} tokens, {r.seconds:.1f} s){self._suffix()}")
        self.log.metric("eval", what=what, mode="plain", **out["plain"])
        if self.cfg.stride and self.cfg.stride < self.cfg.seq_len:
            r = self._evaluate(model, self.cfg.stride)
            out["sliding"] = {**r.as_dict(), **self._tags()}
            self.log.line(f"{what} (sliding, stride {self.cfg.stride}): val_loss {r.val_loss:.5f}  "
                          f"val_bpb {r.val_bpb:.5f}  ({r.seconds:.1f} s){self._suffix()}")
            self.log.metric("eval", what=what, mode="sliding", **out["sliding"])
        return out

    def wants_adaptive(self) -> bool:
        """True when ``eval.adapt`` asks for an evaluation-time adaptation of the round-tripped model
        (``prequant`` runs before GPTQ, not here)."""
        return self.adapt.adapts(prequant_ran=True)

    def adaptive(self, model, what: str, int6_state: Optional[dict] = None) -> Optional[dict]:
        """The evaluation-time adaptation ``eval.adapt`` asks for (None when it asks for none), on ``model``
        (adapted in place: pass a fresh copy). Logged with the checker's verdict.

        Then, unless ``eval.adapt.audit_positions`` is 0, the replay audit on a short prefix (:meth:`audit`),
        its time reported apart (``entry["audit"]["seconds"]``, not in the entry's ``seconds``); a failed
        audit overrides the verdict with non-compliant. Without an audit the entry's ``audit`` is
        ``"unaudited"``."""
        a = self.adapt
        if not self.wants_adaptive():
            return None
        pristine = copy.deepcopy(model) if a.audit_positions > 0 else None  # the audit's runs start from it
        res = run_adaptive(model, self.val, self.table, a, rank=self.d.rank, world_size=self.d.world,
                           device=self.d.device, dtype=self.dtype, int6_state=int6_state, val_bytes=self.val_bytes)
        r = res.result
        entry = {"mode": res.label, **r.as_dict(), "stream_targets": res.stream_targets,
                 "scored_positions": res.scored_positions, NONCOMPLIANT_KEY: res.flag, "void": res.void,
                 "notes": res.notes, "audit": UNAUDITED}
        if pristine is not None:
            rep = self.audit(pristine, int6_state)
            entry["audit"] = rep.as_dict()
            if rep.ok is False:  # the trust-nothing check overrides the records' verdict
                entry[NONCOMPLIANT_KEY] = AUDIT_FAILED
        self.log.line(f"{what} {res.label}: val_loss {r.val_loss:.5f}  val_bpb {r.val_bpb:.5f}  "
                      f"({r.tokens:,} tokens, {r.seconds:.1f} s)  compliance: {entry[NONCOMPLIANT_KEY]}, "
                      f"{audit_text(entry['audit'])}")
        for n in res.notes:
            self.log.line(f"  {n}")
        self.log.metric("eval", what=what, **entry)
        return entry

    def audit(self, pristine, int6_state: Optional[dict] = None) -> AuditReport:
        """The replay audit of ``eval.adapt``'s mode at ``audit_positions`` positions of the first
        ``audit_docs`` validation documents, every run on a copy of ``pristine`` (compliance/audit.py)."""
        a = self.adapt
        kw = dict(rank=self.d.rank, world_size=self.d.world, device=self.d.device, dtype=self.dtype,
                  int6_state=int6_state)
        vb = self.val_bytes

        def run(tokens):
            sidecar = None if vb is None else np.asarray(vb)[:len(tokens)]  # the prefix's own bytes
            return run_adaptive(copy.deepcopy(pristine), tokens, self.table, a, val_bytes=sidecar, **kw)

        return prefix_audit(run, self.val, a.audit_positions, docs=a.audit_docs, bos_id=pristine.cfg.bos_id,
                            vocab_size=pristine.cfg.vocab_size, seed=a.seed, world_size=self.d.world)
