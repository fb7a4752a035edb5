"""Step logging: losses read back only on flush, one record per step, NaN names the first bad step."""

import io
import json

import pytest
import torch

from golf_fast.train.result import TrainingDiverged
from golf_fast.train.runlog import RunLog
from golf_fast.train.steplog import StepLog


def _steplog(tmp_path, every=3):
    out = io.StringIO()
    log = RunLog(tmp_path, stream=out)
    sl = StepLog(log, every=every, tokens_per_step=100, lrs_at=lambda m: {"matrix": 0.02 * m, "scalar": 1e30 * m},
                 seconds_left=lambda step, t: 7.0)
    return sl, log, out


def _records(tmp_path):
    return [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_records_every_step_and_prints_on_logging_steps(tmp_path):
    sl, log, out = _steplog(tmp_path)
    losses = [5.0, 4.5, 4.25, 4.0]
    for i, v in enumerate(losses, 1):
        sl.record(i, torch.tensor(v), lr_mul=1.0 - 0.1 * i, dt=0.5, train_s=0.5 * i, looping=i > 2)
        if sl.due(i):
            sl.flush()
    assert [r["step"] for r in _records(tmp_path)] == [1, 2, 3]  # step 4 is still pending
    sl.flush()
    log.close()
    recs = _records(tmp_path)
    assert [r["loss"] for r in recs] == losses and [r["looping"] for r in recs] == [False, False, True, True]
    assert recs[2]["lr_mul"] == pytest.approx(0.7) and recs[2]["step_ms"] == 500.0 and recs[2]["train_s"] == 1.5
    lines = out.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["1", "3"]  # a line on logging steps only
    for needle in ("loss 4.2500", "500.0 ms/step", "200 tok/s", "ETA 7.0 s"):
        assert needle in lines[1], needle
    assert sl.losses == losses


def test_nan_names_the_first_bad_step_and_its_rates(tmp_path):
    sl, log, out = _steplog(tmp_path, every=10)
    for i, v in enumerate([3.0, float("nan"), float("inf")], 1):
        sl.record(i, torch.tensor(v), lr_mul=0.5 * i, dt=0.1, train_s=0.1 * i, looping=False)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 2 \(lr_mul 1\.000; learning rates "
                                               r"matrix=0\.02, scalar=1e\+30\)"):
        sl.flush()
    log.close()
    recs = _records(tmp_path)
    assert [r["event"] for r in recs] == ["step", "diverged"] and recs[1]["step"] == 2
    assert "ERROR: loss is nan at step 2" in out.getvalue()


def test_bad_arguments(tmp_path):
    sl, log, _ = _steplog(tmp_path)
    with pytest.raises(ValueError, match="loss"):
        sl.record(1, torch.ones(2), lr_mul=1.0, dt=0.1, train_s=0.1, looping=False)
    with pytest.raises(ValueError, match="every"):
        StepLog(log, every=0, tokens_per_step=1, lrs_at=dict, seconds_left=lambda s, t: 0.0)
    log.close()
