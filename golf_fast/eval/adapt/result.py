"""The outcome of an adaptive evaluation: val_bpb, the compliance verdict, the event log, notes.

``flags``: the compliance checker's verdict for non-compliant runs, as the string every report,
metrics line and artifact metadata carries (``"non-compliant: condition 1, 3"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from golf_fast.eval.bpb import EvalResult
from golf_fast.eval.compliance.checker import ComplianceReport, ConditionResult, check_events, check_losses
from golf_fast.eval.compliance.events import EventLog, gather_logs

NONCOMPLIANT_KEY = "eval_compliance"
"""Artifact-metadata / metrics key holding the verdict of the evaluation that produced them."""
UNAUDITED = "unaudited"
"""A report's ``audit`` entry when no replay audit ran (the verdict then rests on the run's records only)."""
AUDIT_FAILED = "non-compliant: condition 1 (replay audit)"
"""The verdict when the replay audit failed, whatever the records say."""


def audit_text(audit) -> str:
    """One phrase for a report's ``audit`` entry: ``unaudited``, or ``audit passed (2 positions of the first
    16 documents (1,234 tokens), 3.1 s)``."""
    if not isinstance(audit, dict):
        return UNAUDITED
    return (f"audit {audit.get('verdict')} ({len(audit.get('positions', []))} positions of "
            f"{audit.get('scope', 'the stream')}, {audit.get('seconds', 0):.1f} s)")


@dataclass
class AdaptResult:
    label: str
    result: EvalResult
    compliance: ComplianceReport
    log: EventLog
    notes: list = field(default_factory=list)
    void: Optional[list] = None
    """(when, overall void fraction) at each adaptation epoch/phase."""

    @property
    def flag(self) -> str:
        return self.compliance.verdict

    @property
    def stream_targets(self) -> int:
        """Targets in the evaluated stream: what the plain evaluation of the same prefix scores (N − 1)."""
        return int(self.compliance.stats.get("stream_targets", -1))

    @property
    def scored_positions(self) -> int:
        """Positions the mode committed scores for (its score events); must equal :attr:`stream_targets`."""
        return int(self.compliance.stats.get("scored_positions", -1))

    def as_dict(self) -> dict:
        return {"mode": self.label, **self.result.as_dict(), "stream_targets": self.stream_targets,
                "scored_positions": self.scored_positions, "compliance": self.compliance.as_dict(),
                NONCOMPLIANT_KEY: self.flag, "notes": list(self.notes), "void": self.void}


def finish(label: str, result: EvalResult, log: EventLog, expected: np.ndarray, vocab_size: int, world_size: int,
           notes: list, void: Optional[list] = None, position_bytes: Optional[np.ndarray] = None) -> AdaptResult:
    """Merge the ranks' logs, run the checker, recompute the sums from the logged losses, bundle the result.

    ``position_bytes`` (N,): the bytes of each target (windows.target_bytes); None leaves the sums
    unverified (condition 4 not compliant)."""
    merged = gather_logs(log, world_size)
    report = check_events(merged, vocab_size=vocab_size, expected=expected)
    scored = report.stats["scored_positions"]
    c4 = report.conditions[4]
    why = ""
    if result.tokens != scored or scored != report.stats["stream_targets"]:
        why = (f"the loss sums count {result.tokens} targets, the score events {scored}, the stream has "
               f"{report.stats['stream_targets']} (every target of the plain evaluation must be scored once)")
    elif position_bytes is None:
        report.conditions[4] = ConditionResult(4, None, "the sums were not recomputed (no per-position bytes)")
    else:
        sums = check_losses(merged, val_loss=result.val_loss, val_bpb=result.val_bpb, tokens=result.tokens,
                            nbytes=result.bytes, position_bytes=position_bytes)
        report.stats["recomputed_val_bpb"] = sums.detail
        if not sums.ok:
            why = sums.detail
        elif c4.ok:
            report.conditions[4] = ConditionResult(4, True, f"{c4.detail}; {sums.detail}")
    if why:
        report.conditions[4] = ConditionResult(4, False, why if c4.ok else f"{c4.detail}; {why}")
    return AdaptResult(label, result, report, merged, notes, void)


def mark_metadata(metadata: dict, verdict: str) -> dict:
    """A copy of ``metadata`` carrying ``verdict`` under :data:`NONCOMPLIANT_KEY`."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    return {**metadata, NONCOMPLIANT_KEY: verdict}


def assert_record_exportable(metadata: dict) -> None:
    """Raise unless an artifact's metadata records the verdict ``compliant`` (fail closed: no recorded
    verdict is "unverified", never compliant)."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    v = metadata.get(NONCOMPLIANT_KEY, "unverified: no compliance verdict recorded")
    if v != "compliant":
        raise ValueError(f"metadata: this artifact is flagged '{v}' and cannot be exported as a record submission")
