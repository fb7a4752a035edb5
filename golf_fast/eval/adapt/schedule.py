"""The record's document schedule for per-document TTT (R0611 ``train_gpt.py``, §6.3–6.4).

* documents: ``(start, length)`` with ``length = target_end − start`` — a document's span runs one
  past its closing BOS (the record's ``_find_docs``: ``end = next BOS + 1``, the last document to
  the stream's end), so its ``length − 1`` predictions include the next document's BOS;
* batches (``_build_ttt_global_batches``): documents sorted by length, ascending, stable (ties in
  stream order), cut into batches of ``batch_docs`` from the shortest; the queue runs the batches
  by descending longest document (stable). Each batch keeps its original index ``b`` and each
  document its position ``p`` in the batch;
* phases (``eval_val_ttt_phased``): boundaries ``⌊prefix·(i+1)/P⌋``, i = 0..P−1 with
  ``prefix = min(prefix_docs, D)`` (not deduplicated, as the record); after a batch, when the
  number of documents scored so far reaches the current boundary ``k``, a phase runs on the first
  ``k`` scored documents in ``(b, p)`` order, then the next boundary applies (one phase per
  entry, as the record's pause flag). This is the record's one-process schedule; with several
  ranks the record's shared-counter queue makes the pause points depend on timing (its 8-rank log
  shows 1296 documents scored at the first pause), while golf_fast keeps the one-process schedule
  on any number of ranks (every rank walks the queue and meets at the same entries).
"""

from __future__ import annotations

import numpy as np


def record_batches(lengths: np.ndarray, batch_docs: int) -> list[tuple[int, np.ndarray]]:
    """Queue of ``(original batch index, document indices in batch-position order)`` for documents of
    ``lengths`` (the record's length: targets + 1), as ``_build_ttt_global_batches`` orders them."""
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.ndim != 1 or lens.size == 0:
        raise ValueError(f"lengths: expected a non-empty 1-D array of document lengths, got shape {lens.shape}")
    if not isinstance(batch_docs, int) or batch_docs < 1:
        raise ValueError(f"batch_docs: expected an int >= 1, got {batch_docs!r}")
    order = np.argsort(lens, kind="stable")
    batches = [order[i:i + batch_docs] for i in range(0, len(order), batch_docs)]
    queue = sorted(range(len(batches)), key=lambda b: -int(lens[batches[b]].max()))  # stable, as sorted()
    return [(b, batches[b]) for b in queue]


def phase_boundaries(n_docs: int, prefix_docs: int, num_phases: int) -> list[int]:
    """``[⌊min(prefix, n)·(i+1)/P⌋ for i < P]`` (R0611's log: 2,500 documents in 3 phases → [833, 1666, 2500])."""
    for name, v in (("n_docs", n_docs), ("prefix_docs", prefix_docs)):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}: expected an int >= 0, got {v!r}")
    if not isinstance(num_phases, (int, np.integer)) or num_phases < 1:
        raise ValueError(f"num_phases: expected an int >= 1, got {num_phases!r}")
    pre = max(0, min(int(n_docs), int(prefix_docs)))
    return [pre * (i + 1) // num_phases for i in range(num_phases)]


def phase_plan(queue: list, n_docs: int, prefix_docs: int, num_phases: int) -> dict:
    """``{queue index j: k}``: after queue entry ``j``, a phase trains on the first
    ``k`` scored documents. Empty when ``prefix_docs`` is 0 (the record's ``global_ttt_done``)."""
    bounds = phase_boundaries(n_docs, prefix_docs, num_phases)
    if not bounds or min(int(prefix_docs), int(n_docs)) == 0:
        return {}
    plan, phase, done = {}, 0, 0
    for j, (_, idx) in enumerate(queue):
        done += len(idx)
        if phase < len(bounds) and done >= bounds[phase]:
            plan[j] = bounds[phase]
            phase += 1
    return plan


def phase_documents(queue: list, upto: int, k: int) -> np.ndarray:
    """Indices of the first ``k`` documents scored in queue entries ``0..upto``, in (batch, position) order."""
    scored = [(b, p, int(d)) for b, idx in queue[:upto + 1] for p, d in enumerate(idx)]
    scored.sort(key=lambda t: (t[0], t[1]))
    return np.array([d for _, _, d in scored[:k]], dtype=np.int64)
