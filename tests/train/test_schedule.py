"""Schedule: lr multiplier, progress, looping switch, stop rule; the training clock."""

import pytest

from golf_fast.train.config import ScheduleConfig
from golf_fast.train.schedule import Schedule, TrainClock, lr_multiplier


def test_lr_multiplier_is_flat_then_linear_then_floored():
    assert lr_multiplier(0.0, 0.85, 0.1) == 1.0
    assert lr_multiplier(0.1499, 0.85, 0.1) == 1.0
    assert lr_multiplier(0.15, 0.85, 0.1) == pytest.approx(1.0)
    assert lr_multiplier(0.575, 0.85, 0.1) == pytest.approx(0.5)  # (1 - 0.575) / 0.85
    assert lr_multiplier(0.95, 0.85, 0.1) == pytest.approx(0.1)  # (1 - 0.95)/0.85 = 0.059 < min_lr
    assert lr_multiplier(0.9, 0.0, 0.1) == 1.0  # no warm-down
    assert lr_multiplier(0.5, 1.0, 0.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="warmdown_frac"):
        lr_multiplier(0.5, 1.5, 0.1)


def test_steps_clock_progress_and_stop():
    s = Schedule(ScheduleConfig(clock="steps", max_steps=10, warmdown_frac=0.5, min_lr=0.0, enable_looping_at=0.3),
                 budget_s=1.0, looping=True)
    assert s.progress(4, 123.0) == 0.4  # time does not matter on the steps clock
    assert [s.should_stop(k, 1e9, 1e9) for k in (0, 9, 10)] == [False, False, True]
    assert s.lr_mul(s.progress(8, 0)) == pytest.approx(0.4)
    assert not s.looping_due(0.2, False) and s.looping_due(0.3, False) and not s.looping_due(0.5, True)
    assert not Schedule(s.cfg, 1.0, looping=False).looping_due(0.9, False)
    assert s.seconds_left(4, 2.0) == pytest.approx(3.0)  # 6 steps of 0.5 s


def test_wallclock_stop_rule_includes_one_more_step():
    s = Schedule(ScheduleConfig(clock="wallclock", max_wallclock_s=100.0), budget_s=10.0, looping=False)
    assert s.progress(3, 2.5) == 0.25
    assert not s.should_stop(0, 0.0, 0.0)
    assert not s.should_stop(4, 8.0, 2.0)  # 8 + 2 = 10: ends exactly at the budget
    assert s.should_stop(4, 8.5, 2.0)  # one more 2 s step would end at 10.5 > 10
    assert s.should_stop(9, 10.0, 0.1)  # frac = 1
    capped = Schedule(ScheduleConfig(clock="wallclock", max_steps=3), budget_s=10.0, looping=False)
    assert capped.should_stop(3, 0.3, 0.1) and not capped.should_stop(2, 0.2, 0.1)
    assert s.seconds_left(4, 12.0) == 0.0


def test_schedule_rejects_bad_configs():
    with pytest.raises(ValueError, match="max_steps"):
        Schedule(ScheduleConfig(clock="steps", max_steps=0), 1.0, False)
    with pytest.raises(ValueError, match="budget_s"):
        Schedule(ScheduleConfig(clock="wallclock"), 0.0, False)
    with pytest.raises(TypeError, match="ScheduleConfig"):
        Schedule({"clock": "steps"}, 1.0, False)


def test_clock_excludes_pauses_and_settle_counts_the_drain():
    t = {"now": 100.0}
    clock = TrainClock(timer=lambda: t["now"])
    with pytest.raises(RuntimeError, match="start"):
        clock.tick()
    clock.start()
    t["now"] += 2.0
    assert clock.tick() == 2.0
    t["now"] += 50.0  # an evaluation
    clock.resume()
    t["now"] += 3.0
    assert clock.tick() == 3.0 and clock.train_s == 5.0 and clock.last_dt == 3.0
    t["now"] += 0.25  # the device finishing queued work
    assert clock.settle(lambda: None) == 5.25 and clock.last_dt == 3.0
    synced = []
    clock.settle(lambda: synced.append(True))
    assert synced == [True]
