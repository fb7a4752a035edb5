"""Every held-out cheating driver (drivers.py) is caught by the run's own verdict (the event log, the
per-position checks and the tripwires of the trusted commit); the replay audit also catches the ones that
adapt on what they score. The honest version of the same driver passes both."""

from __future__ import annotations

import pytest

from golf_fast.eval.compliance.audit import replay_audit

from ..adapt_helpers import BOS, VOCAB, byte_table, tiny_config, tiny_model, tiny_stream
from .drivers import CHEATS, run

# cheat -> (conditions the run's own verdict breaks, whether the replay audit is asserted to catch it too)
CAUGHT = {
    # a step on the score batch between its read and its commit: the optimizer-step tripwire (the audit too)
    "train_before_score": ([1, 3], True),
    "train_before_score_reread": ([1, 3], True),
    "slot_on_scored_batch": ([1, 3], True),  # an L-BFGS step while the score read is open: the same tripwire
    # the context read of tokens not yet scored; (a next document that the queue already scored is
    # information from scored tokens, which the audit's rule allows, as it allows phased SGD on them)
    "next_doc_context": ([1], False),
    "off_by_one_chunk": ([1, 3], False),
    "drop_worst": ([4], False),
    "bias_except_probe": ([2], False),
    "best_of_two_passes": ([4], False),
    # the commit scores the read's own targets and compares the batch it is handed with them (the tripwire
    # breaks 2); the probes, run on the edited batch, then disagree with the committed scores (1 and 2)
    "edit_targets": ([1, 2], False),
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
    if cheat in ("train_before_score", "slot_on_scored_batch"):
        assert "tripwire" in res.compliance.conditions[3].detail and "optimizer stepped" in \
            res.compliance.conditions[3].detail
    if cheat == "best_of_two_passes":
        assert "read for score more than once" in res.compliance.conditions[4].detail
    if cheat == "edit_targets":
        assert "differ from what its read returned" in res.compliance.conditions[2].detail
    if by_audit:
        rep = replay_audit(lambda t: run(tiny_model(101), t, byte_table(), _cfg(), cheat), tokens, res, 3,
                           bos_id=BOS, vocab_size=VOCAB, seed=1)
        assert rep.ok is False, rep.as_dict()
