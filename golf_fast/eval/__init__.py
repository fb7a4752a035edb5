"""Evaluation: exact val_bpb, plain and sliding-window, document-isolated, all-reduced across ranks.

Evaluation-time adaptation (``run_adaptive`` in adapt_run.py, configured by adapt_config.py):
score-first TTT (ttt_stream.py: AdamW on the last blocks; ttt_docs.py: per-document LoRA and
phased global SGD; adapters/), causal SLOT (slot.py), the seed submissions' non-compliant methods as
flagged research modes (research.py), the void fraction (void.py), and the compliance checker
(compliance.py) that decides conditions 1–4 from the score/update event log (events.py).
"""

from golf_fast.eval.bpb import BpbAccumulator, EvalResult
from golf_fast.eval.evaluate import evaluate, sliding_window_plan, truncate_val

__all__ = ["BpbAccumulator", "EvalResult", "evaluate", "sliding_window_plan", "truncate_val"]
