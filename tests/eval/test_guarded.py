"""The run owns the record: the harness hands a driver the guarded stream only and runs the checker itself;
the trusted commit scores the read's own batch, and the stream's tripwires (events.TRIPWIRES)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from golf_fast.eval.adapt.harness import DriverOutput, run_driver
from golf_fast.eval.adapt.stream import stream_driver
from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.eval.compliance.events import BATCH_EDITED, READ_TWICE, STATE_CHANGED, EventLog
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.eval.scoring import LogitScorer, commit_scores
from golf_fast.eval.windows import WindowBatch

from .adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream


def _stream(seed: int = 81):
    model = tiny_model(seed)
    toks = torch.from_numpy(tiny_stream(seed).astype(np.int64))
    log = EventLog(len(toks), vocab_size=model.cfg.vocab_size)
    stream = GuardedStream(toks, log, 32, acc=BpbAccumulator(byte_table(), torch.device("cpu")), bos_id=1)
    stream.watch(model)
    return model, stream, log


def _trips(log: EventLog) -> list:
    return [int(t) for t in log.checks()[:, 3]]


def test_a_driver_gets_the_stream_only_and_the_harness_owns_the_verdict():
    seen = {}

    def spy(model, stream, cfg, **kw):
        seen["args"], seen["kw"] = (model, stream, cfg), kw
        return stream_driver(model, stream, cfg, **kw)

    res = run_driver(spy, tiny_model(82), tiny_stream(82), byte_table(), tiny_config())
    assert isinstance(seen["args"][1], GuardedStream)
    assert set(seen["kw"]) == {"rank", "world_size", "device", "dtype"}  # no tokens, sidecar, log or sums
    assert not any(isinstance(v, (np.ndarray, EventLog, BpbAccumulator)) for v in seen["kw"].values())
    assert "tokens" not in inspect.signature(stream_driver).parameters
    view = seen["args"][1].log  # the driver's view of the log: updates, epochs, probes; no score events
    assert not any(hasattr(view, k) for k in ("score", "score_check", "rows", "given"))
    assert res.flag == "compliant" and res.scored_positions == res.stream_targets

    def half(model, stream, cfg, **kw):  # commits the first half of the documents only
        docs = stream.documents()
        for s, e in docs[: len(docs) // 2]:
            wb = stream.windows([(int(s), int(s) + 1, min(int(e) + 1, int(s) + 1 + cfg.seq_len))], "score")
            with torch.no_grad():
                commit_scores(wb, model.logits(wb.x), LogitScorer(), stream)
        return DriverOutput("half")

    res = run_driver(half, tiny_model(82), tiny_stream(82), byte_table(), tiny_config())
    assert 4 in res.compliance.broken and res.scored_positions < res.stream_targets  # the harness's targets count
    with pytest.raises(TypeError, match="DriverOutput"):
        run_driver(lambda model, stream, cfg, **kw: None, tiny_model(82), tiny_stream(82), byte_table(), tiny_config())


def test_the_commit_scores_the_reads_batch_and_rejects_another():
    model, stream, log = _stream()
    wb = stream.windows([(0, 1, 20)], "score")
    with torch.no_grad():
        logits = model.logits(wb.x)
    true_y = wb.y.clone()
    wb.y[0, 3] = (wb.y[0, 3] + 1) % model.cfg.vocab_size  # the driver edits a target
    nats = commit_scores(wb, logits, LogitScorer(), stream)
    assert torch.equal(nats, LogitScorer().nats(logits, true_y))  # scored against the read's own target
    assert _trips(log) == [BATCH_EDITED]
    with pytest.raises(ValueError, match="no open score read"):  # committed once only
        commit_scores(wb, logits, LogitScorer(), stream)
    other = stream.windows([(21, 22, 40)], "score")
    moved = WindowBatch(other.x, other.y, other.mask, other.pieces + 1, other.windows + 1, other.tbytes,
                        other.read_seq, "score")
    with pytest.raises(ValueError, match="differ from what read"):
        commit_scores(moved, logits, LogitScorer(), stream)
    with pytest.raises(TypeError, match="stream"):
        commit_scores(wb, logits, LogitScorer(), log)


def test_tripwires_state_change_and_second_score_read():
    model, stream, log = _stream()
    delta = torch.zeros(model.cfg.vocab_size)
    stream.watch(delta)
    with stream.running():
        wb = stream.windows([(0, 1, 20)], "score")  # an optimizer step while the read is open
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        opt.step()
        with torch.no_grad():
            commit_scores(wb, model.logits(wb.x), LogitScorer(), stream)
        wb = stream.windows([(21, 22, 40)], "score")  # a watched tensor changed in place
        delta.add_(0.5)
        with torch.no_grad():
            commit_scores(wb, model.logits(wb.x), LogitScorer(delta), stream)
        again = stream.windows([(21, 30, 40)], "score")  # targets read for score before
        with torch.no_grad():
            commit_scores(again, model.logits(again.x), LogitScorer(), stream)
        wb = stream.windows([(41, 42, 50)], "score")  # an optimizer step after the commit is legal
        with torch.no_grad():
            commit_scores(wb, model.logits(wb.x), LogitScorer(), stream)
        opt.step()
    assert _trips(log) == [STATE_CHANGED, STATE_CHANGED, READ_TWICE, 0]
    with pytest.raises(RuntimeError, match="closed"):
        stream.windows([(41, 42, 50)], "score")
