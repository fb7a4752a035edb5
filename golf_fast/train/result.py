"""What a training run returns and prints at the end: :class:`RunResult` and its final table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from golf_fast.eval.adapt.result import audit_text
from golf_fast.train.runlog import fmt_secs


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf."""


class RunSetupError(ValueError):
    """A setting that can only be judged once the run has started (e.g. a wall-clock window shorter
    than the measured Hessian reserve): the user's to fix, reported as one line."""


@dataclass
class RunResult:
    """The numbers of the final table (the same on every rank). Eval dicts are ``EvalResult.as_dict()``."""

    steps: int = 0
    train_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    looping_step: Optional[int] = None
    pre_quant: Optional[dict] = None
    pre_quant_sliding: Optional[dict] = None
    round_trip: Optional[dict] = None
    round_trip_sliding: Optional[dict] = None
    adaptive: Optional[dict] = None
    """The evaluation-time adaptation of the round-tripped model (eval.adapt), with its verdict."""
    artifact_path: Optional[str] = None
    artifact_bytes: Optional[int] = None
    code_bytes: Optional[int] = None
    """Counted bytes of the submission script (the exported train_gpt.py); None: not measured."""
    submission_ok: Optional[bool] = None
    """True: code + artifact ≤ 16,000,000; False: over budget; None: not measurable (see ``budget``)."""
    budget: str = ""
    clip_factor: float = 1.0
    seed: Optional[int] = None
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: Optional[str] = None

    def final_metrics(self) -> dict[str, Any]:
        """The ``final`` JSONL record."""
        return dict(steps=self.steps, train_seconds=self.train_seconds, pre_quant=self.pre_quant,
                    round_trip=self.round_trip, pre_quant_sliding=self.pre_quant_sliding,
                    round_trip_sliding=self.round_trip_sliding, adaptive=self.adaptive,
                    artifact_bytes=self.artifact_bytes, code_bytes=self.code_bytes,
                    submission_ok=self.submission_ok, budget=self.budget, clip_factor=self.clip_factor,
                    seed=self.seed, phases=self.phases, notes=self.notes)


def final_table(res: RunResult, backends: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows (label, value) of the run's final table."""
    if not isinstance(res, RunResult):
        raise TypeError(f"res: expected a RunResult, got {type(res).__name__}")

    def bpb(x):
        return f"{x['val_bpb']:.5f}" if x else "n/a"

    rows: list[tuple[str, Any]] = [
        ("steps", res.steps), ("train time", fmt_secs(res.train_seconds)),
        ("ms/step (mean)", f"{1000 * res.train_seconds / max(res.steps, 1):.1f}"),
        ("looping from step", res.looping_step if res.looping_step is not None else "never"),
        ("pre-quant val_bpb", bpb(res.pre_quant)), ("pre-quant val_bpb sliding", bpb(res.pre_quant_sliding)),
        ("round-trip val_bpb", bpb(res.round_trip)), ("round-trip val_bpb sliding", bpb(res.round_trip_sliding)),
        ("round-trip void fraction", f"{res.round_trip['void_fraction']:.4f}"
         if res.round_trip and res.round_trip.get("void_fraction") is not None else "n/a"),
        (f"adaptive val_bpb ({res.adaptive['mode']})" if res.adaptive else "adaptive val_bpb",
         f"{res.adaptive['val_bpb']:.5f} ({res.adaptive['eval_compliance']}, "
         f"{audit_text(res.adaptive.get('audit'))})" if res.adaptive
         else "n/a (eval.adapt.ttt none)"),
        ("artifact bytes", f"{res.artifact_bytes:,}" if res.artifact_bytes else "n/a"),
        ("code bytes", f"{res.code_bytes:,} (the exported train_gpt.py)" if res.code_bytes is not None
         else "not measured"),
        ("clip-sigma factor", f"{res.clip_factor:.4f}"),
        ("budget", ("fits: " if res.submission_ok else "NOT A SUBMISSION: ") + res.budget)]
    rows += [(f"time: {k}", fmt_secs(v)) for k, v in res.phases.items()]
    rows += [("note", n) for n in res.notes]
    rows += [("backends", backends)]
    return rows
