"""Evaluation: exact val_bpb, plain and sliding-window, document-isolated, all-reduced across ranks."""

from golf_fast.eval.bpb import BpbAccumulator, EvalResult
from golf_fast.eval.evaluate import evaluate, sliding_window_plan, truncate_val

__all__ = ["BpbAccumulator", "EvalResult", "evaluate", "sliding_window_plan", "truncate_val"]
