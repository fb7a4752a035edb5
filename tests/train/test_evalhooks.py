"""Evaluation hooks: when they run, and that they call the evaluator with the run's settings."""

import io

import pytest

import golf_fast.train.evalhooks as evalhooks
from golf_fast.distributed import Dist
from golf_fast.eval.bpb import EvalResult
from golf_fast.train.config import EvalConfig
from golf_fast.train.runlog import RunLog


def test_eval_hooks_pass_the_run_settings(tmp_path, monkeypatch):
    calls = []

    def fake_evaluate(model, val, table, **kw):
        calls.append(kw)
        return EvalResult(val_loss=2.0 + len(calls), val_bpb=1.0 + len(calls), tokens=10, bytes=20)

    monkeypatch.setattr(evalhooks, "evaluate", fake_evaluate)
    out = io.StringIO()
    log = RunLog(tmp_path, stream=out)
    d = Dist(rank=1, world=2)
    hooks = evalhooks.EvalHooks(list(range(300)), table=None, cfg=EvalConfig(seq_len=64, stride=16, batch_seqs=4,
                                                                              val_every=5), d=d, dtype=None, log=log)
    assert [s for s in range(1, 16) if hooks.due(s)] == [5, 10, 15]
    hooks.periodic(object(), 5)
    res = hooks.full(object(), "pre-quant")
    assert [c["stride"] for c in calls] == [None, None, 16]
    assert all((c["rank"], c["world_size"], c["seq_len"], c["batch_seqs"]) == (1, 2, 64, 4) for c in calls)
    assert res["plain"]["val_bpb"] == 3.0 and res["sliding"]["val_bpb"] == 4.0
    text = out.getvalue()
    assert "step     5  val_loss 3.0000" in text and "pre-quant (sliding, stride 16)" in text
    plain_only = evalhooks.EvalHooks(list(range(300)), None, EvalConfig(seq_len=64, stride=0), d, None, log)
    assert not plain_only.due(5) and "sliding" not in plain_only.full(object(), "x")
    with pytest.raises(ValueError, match="val"):
        evalhooks.EvalHooks(list(range(10)), None, EvalConfig(seq_len=64), d, None, log)
    log.close()
