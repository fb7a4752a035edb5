"""The outcome of an adaptive evaluation: val_bpb, the compliance verdict, the event log, notes.

``flags``: the compliance checker's verdict for non-compliant runs, as the string every report,
metrics line and artifact metadata carries (``"non-compliant: condition 1, 3"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from golf_fast.eval.bpb import EvalResult
from golf_fast.eval.compliance.checker import ComplianceReport, check_events
from golf_fast.eval.compliance.events import EventLog, gather_logs

NONCOMPLIANT_KEY = "eval_compliance"
"""Artifact-metadata / metrics key holding the verdict of the evaluation that produced them."""


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

    def as_dict(self) -> dict:
        return {"mode": self.label, **self.result.as_dict(), "compliance": self.compliance.as_dict(),
                NONCOMPLIANT_KEY: self.flag, "notes": list(self.notes), "void": self.void}


def finish(label: str, result: EvalResult, log: EventLog, expected: np.ndarray, vocab_size: int, world_size: int,
           notes: list, void: Optional[list] = None) -> AdaptResult:
    """Merge the ranks' logs, run the checker, bundle the result."""
    merged = gather_logs(log, world_size)
    report = check_events(merged, vocab_size=vocab_size, expected=expected)
    return AdaptResult(label, result, report, merged, notes, void)


def mark_metadata(metadata: dict, verdict: str) -> dict:
    """A copy of ``metadata`` carrying ``verdict`` under :data:`NONCOMPLIANT_KEY`."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    return {**metadata, NONCOMPLIANT_KEY: verdict}


def assert_record_exportable(metadata: dict) -> None:
    """Raise if an artifact's metadata says it came from (or was scored by) a non-compliant run."""
    v = metadata.get(NONCOMPLIANT_KEY, "compliant")
    if v != "compliant":
        raise ValueError(f"metadata: this artifact is flagged '{v}' and cannot be exported as a record submission")
