"""Evaluation: exact val_bpb, plain and sliding-window, document-isolated, all-reduced across ranks.

Evaluation-time adaptation lives in ``adapt/`` (``adapt.run.run_adaptive``, configured by
``adapt.config``): score-first TTT (``adapt.stream``: AdamW on the last blocks; ``adapt.documents``:
per-document LoRA and the phased global SGD), causal SLOT (``adapt.slot``), the seed submissions'
non-compliant methods as flagged research modes (``adapt.research_modes``). ``compliance/`` decides
conditions 1–4 from the guarded stream's reads and the score/update event log (``compliance.events``,
``compliance.checker``, the replay ``compliance.audit``); ``ternary_void`` is the void-fraction
diagnostic.
"""

from golf_fast.eval.bpb import BpbAccumulator, EvalResult
from golf_fast.eval.evaluate import evaluate, sliding_window_plan, truncate_val

__all__ = ["BpbAccumulator", "EvalResult", "evaluate", "sliding_window_plan", "truncate_val"]
