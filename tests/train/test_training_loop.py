"""The loop itself: stop rule, lr schedule and looping switch applied per step; device values are
read back only when the step log flushes (not once per step)."""

import io
import json
import os
import sys
import types

import pytest
import torch

from golf_fast.model.gpt import GPT
from golf_fast.train.config import OptimConfig, ScheduleConfig
from golf_fast.train.loop import training_loop
from golf_fast.train.optimizers import build_optimizers, set_lr_scale
from golf_fast.train.runlog import RunLog
from golf_fast.train.schedule import Schedule, TrainClock
from golf_fast.train.step import TrainStep
from golf_fast.train.steplog import StepLog


def _steplog(tmp_path, every):
    return StepLog(RunLog(tmp_path, stream=io.StringIO()), every=every, tokens_per_step=16,
                   lrs_at=lambda m: {"all": m}, seconds_left=lambda s, t: 0.0)


def test_wallclock_loop_applies_the_schedule_and_stops_in_time(tmp_path):
    t = {"now": 0.0}
    model = types.SimpleNamespace(looping_active=False)
    seen = []

    def step_fn(loaders):
        t["now"] += 1.0  # every step takes one second
        seen.append(model.looping_active)
        return torch.tensor(float(len(seen)))

    lrs = []
    sched = Schedule(ScheduleConfig(clock="wallclock", warmdown_frac=0.5, min_lr=0.0, enable_looping_at=0.3),
                     budget_s=5.5, looping=True)
    clock = TrainClock(timer=lambda: t["now"])
    sl = _steplog(tmp_path, every=2)
    out = training_loop(model, step_fn, [], schedule=sched, clock=clock, steplog=sl, set_lr=lrs.append)
    # after k steps train_s = k; one more 1 s step must end by 5.5 s: 5 steps
    assert out.steps == 5 and out.train_seconds == 5.0 and out.losses == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert out.looping_step == 2 and seen == [False, False, True, True, True]  # frac 2/5.5 = 0.36 >= 0.3
    want = [1.0 if k / 5.5 < 0.5 else (1 - k / 5.5) / 0.5 for k in range(5)]
    assert lrs == pytest.approx(want)
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3, 4, 5]


class _ReadCounter:
    """Counts the ways a tensor's value reaches the host (item, float, int, bool, tolist) from code
    outside torch. Excluded: torch's own CPU AdamW reading its CPU step counters
    (``torch/optim/optimizer.py`` ``_get_value``); on CUDA the trainer uses the fused AdamW."""

    NAMES = ("item", "__float__", "__int__", "__bool__", "tolist")

    def __init__(self, monkeypatch):
        self.n = 0
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def counted(self_t, *a, _orig=orig, **k):
                caller = sys._getframe(1).f_code.co_filename
                if f"{os.sep}torch{os.sep}" not in caller:
                    self.n += 1
                return _orig(self_t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


def _reads_for(tiny, steps, tmp_path, monkeypatch):
    torch.manual_seed(31)
    model = GPT(tiny.cfg)
    opt = build_optimizers(model, OptimConfig(matrix_optimizer="muon", grad_clip=0.3), distributed=False)
    step = TrainStep(model, opt, list(model.parameters()), accum=1, grad_clip=0.3, world=1, device="cpu")
    g = torch.Generator().manual_seed(32)
    loaders = [tiny.FixedLoader(tiny.batch(g))]
    sched = Schedule(ScheduleConfig(clock="steps", max_steps=steps), budget_s=1.0, looping=False)
    with monkeypatch.context() as m:
        counter = _ReadCounter(m)
        out = training_loop(model, step, loaders, schedule=sched, clock=TrainClock(), steplog=_steplog(tmp_path, 1000),
                            set_lr=lambda x: set_lr_scale(opt, x))
    assert out.steps == steps
    return counter.n


def test_no_host_read_per_step(tiny, tmp_path, monkeypatch):
    """Reads happen at the flushes (step 1 and the end), so 2 steps and 7 steps read equally often."""
    few = _reads_for(tiny, 2, tmp_path / "a", monkeypatch)
    many = _reads_for(tiny, 7, tmp_path / "b", monkeypatch)
    assert many == few and few > 0  # the flushes do read: the counter sees them
