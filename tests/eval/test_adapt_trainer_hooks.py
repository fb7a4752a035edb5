"""The trainer's side: the adaptive eval of the round-tripped model is logged with its verdict, and a
research flag rides on every later line and record; eval.* config fields reach the adaptation."""

from __future__ import annotations

import copy
import io
import json

import pytest

from golf_fast.eval.adapt.config import AdaptConfig
from golf_fast.eval.adapt.result import AUDIT_FAILED
from golf_fast.eval.adapt.stream import run_stream
from golf_fast.eval.compliance.audit import document_prefix, prefix_audit
from golf_fast.distributed import Dist
from golf_fast.train.config import EvalConfig, apply_overrides, preset
from golf_fast.train.evalhooks import EvalHooks
from golf_fast.train.runlog import RunLog

from .adapt_helpers import BOS, VOCAB, byte_table, tiny_config, tiny_model, tiny_stream


def test_adaptive_hook_logs_the_verdict_and_flags_propagate(tmp_path):
    out = io.StringIO()
    log = RunLog(tmp_path, stream=out)
    val = tiny_stream(71)
    hooks = EvalHooks(val, byte_table(), EvalConfig(seq_len=32, stride=0, batch_seqs=4,
                                                    adapt=tiny_config(ttt="lora", audit_positions=0)),
                      Dist(), None, log)
    entry = hooks.adaptive(tiny_model(71), "round-trip")
    assert entry["mode"] == "ttt:lora" and entry["eval_compliance"] == "compliant"
    assert entry["stream_targets"] == entry["scored_positions"] == entry["tokens"]  # every target, once
    assert "round-trip ttt:lora" in out.getvalue() and "compliance: compliant, unaudited" in out.getvalue()
    assert entry["audit"] == "unaudited"
    hooks.flag = "non-compliant: condition 1, 3"
    res = hooks.full(tiny_model(72), "round-trip")
    assert res["plain"]["eval_compliance"] == hooks.flag and 0 < res["plain"]["void_fraction"] < 1
    assert out.getvalue().rstrip().endswith("[non-compliant: condition 1, 3]")
    log.close()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["eval_compliance"] == hooks.flag
    none = EvalHooks(val, byte_table(), EvalConfig(seq_len=32, stride=0, adapt=tiny_config()), Dist(), None, log)
    assert none.adaptive(tiny_model(73), "round-trip") is None


def test_eval_adapt_is_the_train_configs():
    rec = preset("record").eval.adapt
    assert rec.ttt == "phased" and rec.lora.rank == 80  # the record preset: phased LoRA TTT as in R0611
    smoke = apply_overrides(preset("smoke"), {"eval.adapt.ttt": "adamw", "eval.adapt.slot": "causal"}).eval.adapt
    assert (smoke.ttt, smoke.slot, smoke.seq_len, smoke.adamw.freeze_blocks) == ("adamw", "causal", 256, 3)
    h100 = preset("h100x1").eval.adapt
    assert h100.lora.rank == 80 and h100.ttt == "none"  # the record's settings, no adaptation


def test_the_trainer_audits_the_adaptive_eval_by_default_apart_from_its_time(tmp_path):
    """A 2-position replay audit on the first documents, after the timed evaluation (its seconds apart);
    a failed audit overrides the records' verdict (fail closed)."""
    assert AdaptConfig().audit_positions == 2 and preset("record").eval.adapt.audit_positions == 2
    out = io.StringIO()
    log = RunLog(tmp_path, stream=out)
    hooks = EvalHooks(tiny_stream(74), byte_table(), EvalConfig(seq_len=32, stride=0, batch_seqs=4,
                                                                adapt=tiny_config(ttt="adamw", audit_docs=5)),
                      Dist(), None, log)
    model = tiny_model(74)
    entry = hooks.adaptive(model, "round-trip")
    a = entry["audit"]
    assert a["verdict"] == "passed" and len(a["positions"]) == 2, a
    assert "first 5 documents" in a["scope"] and a["seconds"] > 0
    assert entry["eval_compliance"] == "compliant"
    assert "audit passed (2 positions of the first 5 documents" in out.getvalue()
    cut = document_prefix(tiny_stream(74), BOS, 5)
    assert max(a["positions"]) < len(cut) < len(tiny_stream(74))
    assert (cut == BOS).sum() == 5
    with pytest.raises(ValueError, match="audit_positions"):
        tiny_config(audit_positions=65).validate("eval.adapt")

    class Broken(EvalHooks):  # the broken switch, audited through the same hook
        def audit(self, pristine, int6_state=None):
            return prefix_audit(lambda t: run_stream(copy.deepcopy(pristine), t, byte_table(), self.adapt,
                                                     adapt="adamw", update_before_score=True),
                                self.val, 2, docs=5, bos_id=BOS, vocab_size=VOCAB, seed=0)

    bad = Broken(tiny_stream(74), byte_table(), EvalConfig(seq_len=32, stride=0, batch_seqs=4,
                                                           adapt=tiny_config(ttt="adamw", audit_docs=5)),
                 Dist(), None, log)
    entry = bad.adaptive(tiny_model(74), "round-trip")
    assert entry["audit"]["verdict"] == "failed" and entry["eval_compliance"] == AUDIT_FAILED
    log.close()

