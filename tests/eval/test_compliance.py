"""The compliance checker: conditions 1-4 decided from recorded events, on synthetic logs and on
real runs of every mode (legal modes pass; research modes and a broken TTT are caught)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf_fast.eval.adapt.run import run_adaptive
from golf_fast.eval.compliance.checker import check_events
from golf_fast.eval.compliance.events import EventLog
from golf_fast.eval.adapt.research_modes import prequant_before_gptq
from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.scoring import LogitScorer, commit_scores, run_probes
from golf_fast.eval.adapt.stream import run_stream
from golf_fast.eval.windows import build_windows

from .adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream


def _score(log: EventLog, ranges) -> int:
    """A score event as the trusted commit records it: with its per-position check (deviation 0)."""
    seq = log.score(ranges)
    log.score_check(seq, 0.0)
    return seq


def _probed(log: EventLog, pos: int = 1) -> EventLog:
    log.normalization_probe(pos, 1.0, 10, 2.0, 2.0)
    log.causality_probe(pos, 0.0)
    return log


def test_score_first_log_passes_and_each_violation_is_named():
    log = _probed(EventLog(10))
    _score(log, [(0, 5)])
    log.update([(0, 5)], "ttt")
    _score(log, [(5, 10)])
    rep = check_events(log, vocab_size=10)
    assert rep.verdict == "compliant", rep.as_dict()

    bad = _probed(EventLog(10))  # adapt on the chunk before scoring it
    bad.update([(0, 5)], "ttt")
    _score(bad, [(0, 5)])
    _score(bad, [(5, 10)])
    assert check_events(bad, vocab_size=10).broken == [1, 3]

    twice = _probed(EventLog(10))
    _score(twice, [(0, 6)])
    _score(twice, [(5, 10)])
    r = check_events(twice, vocab_size=10)
    assert r.broken == [4] and "more than once" in r.conditions[4].detail

    missing = _probed(EventLog(10))
    _score(missing, [(0, 4)])
    r = check_events(missing, vocab_size=10)
    assert r.broken == [4] and "never scored" in r.conditions[4].detail
    given = _probed(EventLog(10))
    given.given([4, 5, 6, 7, 8, 9])
    _score(given, [(0, 4)])
    given.update([(0, 9)], "ttt")  # reading given (BOS) positions is allowed
    assert check_events(given, vocab_size=10).verdict == "compliant"


def test_reading_a_later_scored_position_breaks_1_and_3_but_reading_the_past_does_not():
    log = _probed(EventLog(12))
    _score(log, [(0, 4)])
    log.update([(0, 6)], "ttt")  # positions 4, 5 are read before they are scored
    _score(log, [(4, 12)])
    r = check_events(log, vocab_size=10)
    assert r.broken == [1, 3]
    assert "[0, 6)" in r.conditions[3].detail


def test_ranks_in_one_epoch_are_unordered_and_collectives_start_an_epoch():
    r0, r1 = _probed(EventLog(8, rank=0)), _probed(EventLog(8, rank=1))
    _score(r0, [(0, 4)])
    _score(r1, [(4, 8)])
    r0.update([(4, 8)], "ttt")  # rank 1's positions, same epoch, no sync: not "before"
    merged = EventLog.merge([r0.to_state(), r1.to_state()])
    rep = check_events(merged, vocab_size=10)
    assert rep.broken == [3], rep.as_dict()

    r0, r1 = _probed(EventLog(8, rank=0)), _probed(EventLog(8, rank=1))
    _score(r0, [(0, 4)])
    _score(r1, [(4, 6)])
    for lg in (r0, r1):
        lg.new_epoch()
    r0.update([(0, 4)], "sgd", collective=True)
    r1.update([(4, 6)], "sgd", collective=True)
    _score(r1, [(6, 8)])
    assert check_events(EventLog.merge([r0.to_state(), r1.to_state()]), vocab_size=10).verdict == "compliant"
    with pytest.raises(RuntimeError, match="collective"):
        r1.update([(0, 2)], "sgd", collective=True)  # after a local event of the epoch


def test_condition_2_from_probes_and_unverified_without_them():
    log = EventLog(4)
    _score(log, [(0, 4)])
    log.causality_probe(1, 0.0)
    assert check_events(log, vocab_size=10).verdict == "unverified: condition 2"
    log.normalization_probe(2, 1.7, 10, 1.0, 1.0)
    assert check_events(log, vocab_size=10).broken == [2]
    ok = _probed(EventLog(4))
    _score(ok, [(0, 4)])
    ok.normalization_probe(3, 1.0, 9, 1.0, 1.0)  # did not cover the vocabulary
    assert check_events(ok, vocab_size=10).broken == [2]
    with pytest.raises(TypeError, match="log"):
        check_events("not a log")
    with pytest.raises(ValueError, match="ranges"):
        _score(ok, [(3, 2)])
    with pytest.raises(ValueError, match="past"):
        _score(ok, [(0, 5)])


class _Unnormalized(LogitScorer):
    """A broken scorer: -z[target] with z the raw logits (no normalization)."""

    def nats(self, logits, y):
        return -logits.float().gather(-1, y[..., None]).squeeze(-1)

    def log_probs(self, logits_row):
        return logits_row.double()


def test_probes_catch_an_unnormalized_score_and_a_non_causal_forward():
    torch.manual_seed(3)
    model = tiny_model(3)
    toks = torch.from_numpy(tiny_stream(3).astype(np.int64))
    gen = torch.Generator().manual_seed(3)

    def forward(x, rows):
        return model.logits(x)

    def leaky(x, rows):  # every position sees the mean embedding of the whole row (later tokens too)
        e = model.tok_emb(x).mean(1, keepdim=True)
        return model.logits(x) + e @ model.tok_emb.weight.T

    for fwd, scorer, broken in ((forward, LogitScorer(), []), (forward, _Unnormalized(), [2]), (leaky, LogitScorer(), [1])):
        log = EventLog(len(toks), vocab_size=model.cfg.vocab_size)
        stream = GuardedStream(toks, log, 32, acc=BpbAccumulator(byte_table(), torch.device("cpu")))
        wb = stream.windows([(0, 1, 20), (21, 30, 40)], "score")
        with torch.no_grad():
            logits = fwd(wb.x, None)
        nats = commit_scores(wb, logits, scorer, stream)
        run_probes(fwd, wb, logits, nats, scorer, log, None, gen, torch.device("cpu"), None)
        rep = check_events(log, vocab_size=model.cfg.vocab_size, expected=np.zeros(len(toks), dtype=bool))
        assert rep.broken == broken, rep.as_dict()
        if broken == [2]:  # caught at every position by the trusted commit, not only at the probe
            assert "not −log softmax" in rep.conditions[2].detail
    with pytest.raises(ValueError, match="guarded"):  # a batch not read through the guard cannot be committed
        commit_scores(build_windows(toks, [(0, 1, 20)], 32), logits[:1], LogitScorer(), stream)


@pytest.mark.parametrize("ttt,slot", [("none", "none"), ("adamw", "none"), ("none", "causal"), ("lora", "none"),
                                      ("phased", "none"), ("lora", "causal")])
def test_every_legal_mode_is_compliant(ttt, slot):
    seed = {"none": 11, "adamw": 12, "lora": 13, "phased": 14}[ttt] + (5 if slot != "none" else 0)
    model = tiny_model(seed)
    res = run_adaptive(model, tiny_stream(seed), byte_table(), tiny_config(ttt=ttt, slot=slot))
    assert res.flag == "compliant", res.compliance.as_dict()
    s = res.compliance.stats
    assert s["normalization_probes"] >= 1 and s["causality_probes"] >= 1
    want = {"none": set(), "adamw": {"adamw"}, "lora": {"lora"}, "phased": {"lora", "phased_sgd"}}[ttt]
    want |= {"slot"} if slot != "none" else set()
    assert set(s["update_kinds"]) == want  # something was really adapted, by the mode asked for


@pytest.mark.parametrize("research", ["prequant", "slot_window"])
def test_research_modes_are_caught_for_conditions_1_and_3(research):
    seed = 21 if research == "prequant" else 22
    res = run_adaptive(tiny_model(seed), tiny_stream(seed), byte_table(), tiny_config(research=research))
    assert res.compliance.broken == [1, 3], res.compliance.as_dict()
    assert res.flag == "non-compliant: condition 1, 3" and res.as_dict()["eval_compliance"] == res.flag


def test_a_deliberately_broken_ttt_is_caught():
    """AdamW that adapts on each chunk before scoring it: same code path, order swapped."""
    model = tiny_model(31)
    res = run_stream(model, tiny_stream(31), byte_table(), tiny_config(), adapt="adamw", update_before_score=True)
    assert res.compliance.broken == [1, 3]
    assert "adamw" in res.compliance.conditions[3].detail


def test_trainer_prequant_verdict_before_any_score():
    """The trainer's pre-quant TTT (before GPTQ): the verdict of its updates alone goes into the metadata."""
    model = tiny_model(23)
    before = model.qo_bank.detach().clone()
    verdict, void = prequant_before_gptq(model, tiny_stream(23, n_docs=5, max_len=30), tiny_config())
    assert verdict == "non-compliant: condition 1, 3"
    assert len(void) == 2 and all(0 < v < 1 for _, v in void)  # one void fraction per epoch
    assert not torch.equal(model.qo_bank, before)
