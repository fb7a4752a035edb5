"""The trainer's side: the adaptive eval of the round-tripped model is logged with its verdict, and a
research flag rides on every later line and record; eval.* config fields reach the adaptation."""

from __future__ import annotations

import io
import json

from golf_fast.distributed import Dist
from golf_fast.train.config import EvalConfig, apply_overrides, preset
from golf_fast.train.evalhooks import EvalHooks
from golf_fast.train.runlog import RunLog

from .adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream


def test_adaptive_hook_logs_the_verdict_and_flags_propagate(tmp_path):
    out = io.StringIO()
    log = RunLog(tmp_path, stream=out)
    val = tiny_stream(71)
    hooks = EvalHooks(val, byte_table(), EvalConfig(seq_len=32, stride=0, batch_seqs=4, adapt=tiny_config(ttt="lora")),
                      Dist(), None, log)
    entry = hooks.adaptive(tiny_model(71), "round-trip")
    assert entry["mode"] == "ttt:lora" and entry["eval_compliance"] == "compliant"
    assert entry["stream_targets"] == entry["scored_positions"] == entry["tokens"]  # every target, once
    assert "round-trip ttt:lora" in out.getvalue() and "compliance: compliant" in out.getvalue()
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
