"""Every adaptive mode scores exactly the targets the plain evaluation of the same prefix scores —
the target after each document's last token (the next BOS) included — and its report says so."""

from __future__ import annotations

import numpy as np
import pytest

from golf_fast.eval.adapt.run import run_adaptive
from golf_fast.eval.evaluate import evaluate
from golf_fast.eval.windows import document_spans, stream_chunk_pieces

from .adapt_helpers import BOS, byte_table, tiny_config, tiny_model, tiny_stream


def _prefix(seed: int) -> np.ndarray:
    val = tiny_stream(seed, n_docs=9, max_len=50)
    n = ((len(val) - 1) // 32) * 32 + 1  # the plain evaluation's truncation at seq_len 32: same prefix
    return val[:n]


@pytest.mark.parametrize("kw", [dict(), dict(ttt="adamw"), dict(slot="causal"), dict(ttt="lora"),
                                dict(ttt="phased"), dict(ttt="lora", slot="causal")])
def test_every_mode_scores_the_plain_evaluations_targets(kw):
    val = _prefix(91)
    plain = evaluate(tiny_model(91), val, byte_table(), seq_len=32)
    res = run_adaptive(tiny_model(91), val, byte_table(), tiny_config(**kw))
    d = res.as_dict()
    assert plain.tokens == len(val) - 1
    assert d["stream_targets"] == d["scored_positions"] == res.result.tokens == plain.tokens, d
    assert res.result.bytes == plain.bytes  # the same targets carry the same bytes
    assert res.flag == "compliant", res.compliance.as_dict()


def test_the_closing_bos_is_scored_from_its_own_document():
    val = _prefix(92)
    docs = document_spans(val, BOS)
    pieces = stream_chunk_pieces(docs, 0, len(val), 16, len(val))
    owner = {j: s for s, a, b in pieces for j in range(a, b)}
    for s, e in docs[:-1]:
        assert val[e] == BOS and owner[int(e)] == s  # the next BOS: the last target of the document before it


def test_a_mode_that_drops_targets_is_not_compliant():
    """Dropping the closing BOS targets from the sums (the old per-document driver) breaks condition 4."""
    from golf_fast.eval.adapt import documents as docs_mod

    val = _prefix(93)
    orig = docs_mod.target_ends
    try:
        docs_mod.target_ends = lambda d, n: np.asarray(d)[:, 1].copy()  # targets s+1 .. e−1 only
        res = run_adaptive(tiny_model(93), val, byte_table(), tiny_config(ttt="lora"))
    finally:
        docs_mod.target_ends = orig
    assert res.stream_targets == len(val) - 1 and res.scored_positions < res.stream_targets
    assert 4 in res.compliance.broken and "never scored" in res.compliance.conditions[4].detail
