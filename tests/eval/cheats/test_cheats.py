"""Every held-out cheating driver (drivers.py) is caught: by the event log and the per-position
checks of the run itself, or by the replay audit. The honest version of the same driver passes both."""

from __future__ import annotations

import pytest

from golf_fast.eval.compliance.audit import replay_audit

from ..adapt_helpers import BOS, VOCAB, byte_table, tiny_config, tiny_model, tiny_stream
from .drivers import CHEATS, run

# cheat -> (conditions the run's own verdict breaks, whether the replay audit is what catches it)
CAUGHT = {
    "train_before_score": ([], True),  # the step reuses the score batch: no read to see; the audit sees it
    "train_before_score_reread": ([1, 3], True),
    "slot_on_scored_batch": ([], True),  # the batch's targets are its own inputs: only the audit sees it
    # the context read of tokens not yet scored; (a next document that the queue already scored is
    # information from scored tokens, which the audit's rule allows, as it allows phased SGD on them)
    "next_doc_context": ([1], False),
    "off_by_one_chunk": ([1, 3], False),
    "drop_worst": ([4], False),
    "bias_except_probe": ([2], False),
    "best_of_two_passes": ([4], False),
}


def _cfg():
    return tiny_config(ttt="lora", probe_seed=1)


def _tokens():
    return tiny_stream(101, n_docs=7, max_len=45)


def test_the_honest_driver_passes_the_checker_and_the_audit():
    tokens = _tokens()
    res = run(tiny_model(101), tokens, byte_table(), _cfg())
    assert res.flag == "compliant", res.compliance.as_dict()
    rep = replay_audit(lambda t: run(tiny_model(101), t, byte_table(), _cfg()), tokens, res, 2, bos_id=BOS,
                       vocab_size=VOCAB, seed=1)
    assert rep.ok is True, rep.as_dict()


@pytest.mark.parametrize("cheat", CHEATS)
def test_each_cheat_is_caught(cheat):
    assert set(CAUGHT) == set(CHEATS)
    tokens = _tokens()
    res = run(tiny_model(101), tokens, byte_table(), _cfg(), cheat)
    broken, by_audit = CAUGHT[cheat]
    assert res.compliance.broken == broken, res.compliance.as_dict()
    if broken:
        assert res.flag.startswith("non-compliant")
    if by_audit:
        rep = replay_audit(lambda t: run(tiny_model(101), t, byte_table(), _cfg(), cheat), tokens, res, 3,
                           bos_id=BOS, vocab_size=VOCAB, seed=1)
        assert rep.ok is False, rep.as_dict()
