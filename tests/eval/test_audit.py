"""The replay audit: legal modes reproduce the score of every audited position; the deliberately
broken ``update_before_score`` TTT is caught."""

from __future__ import annotations

import numpy as np
import pytest

from golf_fast.eval.adapt.run import run_adaptive
from golf_fast.eval.adapt.stream import run_stream
from golf_fast.eval.compliance.audit import randomized_stream, replay_audit, score_order

from .adapt_helpers import BOS, VOCAB, byte_table, tiny_config, tiny_model, tiny_stream


def _audit(run, tokens, n=2, seed=0):
    original = run(tokens)
    return original, replay_audit(run, tokens, original, n, bos_id=BOS, vocab_size=VOCAB, seed=seed)


@pytest.mark.parametrize("kw", [dict(ttt="lora"), dict(ttt="phased"), dict(ttt="adamw")])
def test_legal_modes_pass_the_audit(kw):
    tokens = tiny_stream(71, n_docs=7, max_len=45)
    cfg = tiny_config(probe_seed=3, **kw)
    original, rep = _audit(lambda t: run_adaptive(tiny_model(71), t, byte_table(), cfg), tokens)
    assert original.flag == "compliant"
    assert rep.ok is True and rep.verdict == "passed", rep.as_dict()
    assert max(rep.deltas) <= 1e-5 and len(rep.positions) == 2


def test_update_before_score_is_caught():
    tokens = tiny_stream(72, n_docs=7, max_len=45)
    cfg = tiny_config(probe_seed=3)
    run = lambda t: run_stream(tiny_model(72), t, byte_table(), cfg, adapt="adamw", update_before_score=True)  # noqa: E731
    _, rep = _audit(run, tokens)
    assert rep.ok is False and rep.verdict == "failed", rep.as_dict()


def test_the_randomized_stream_keeps_the_past_and_the_document_starts():
    tokens = tiny_stream(73, n_docs=5, max_len=30)
    res = run_adaptive(tiny_model(73), tokens, byte_table(), tiny_config(ttt="lora"))
    pos = res.log.losses()[0]
    j = int(pos[len(pos) // 2])
    alt = randomized_stream(tokens, res.log, j, BOS, VOCAB, np.random.default_rng(0))
    _, _, sq, _ = score_order(res.log)
    assert np.array_equal(alt == BOS, tokens == BOS)  # documents keep their starts
    earlier = (sq >= 0) & (sq < sq[j])
    assert np.array_equal(alt[earlier], tokens[earlier])  # what was scored before j is untouched
    later = (sq > sq[j]) & (tokens != BOS)
    assert later.sum() > 20 and (alt[later] != tokens[later]).mean() > 0.8  # the rest is redrawn
    with pytest.raises(ValueError, match="n"):
        replay_audit(lambda t: res, tokens, res, 0, bos_id=BOS, vocab_size=VOCAB)
