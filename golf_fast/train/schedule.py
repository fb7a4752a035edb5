"""The training schedule (parameter_golf.md §4.3): progress, learning-rate multiplier, stop rule,
and the training clock.

Progress ``frac`` is ``train_s / budget_s`` on the ``wallclock`` clock and ``step / max_steps`` on
the ``steps`` clock. The learning-rate multiplier is

    lr_mul(frac) = 1                                   if frac < 1 − warmdown_frac
                 = max((1 − frac) / warmdown_frac, min_lr)   otherwise

Depth recurrence switches on once ``frac >= enable_looping_at``. The loop stops when
``frac >= 1``, when ``max_steps`` (if set) is reached, or, on the wallclock clock, when one more
step as long as the last would end past the budget.

:class:`TrainClock` counts training seconds on the host (evaluation pauses excluded). It does not
synchronize with the device, so on a GPU it leads the device by at most the launch queue;
:meth:`TrainClock.settle` waits for the device at the end. On several ranks under the wallclock
clock every tick takes the maximum over ranks (an all-reduce through ``golf_fast.distributed``, on
the process group's device), so all ranks see the same elapsed time and stop at the same step.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from golf_fast import distributed
from golf_fast.train.config import ScheduleConfig


def lr_multiplier(frac: float, warmdown_frac: float, min_lr: float) -> float:
    """``1`` before the warm-down, then linear from 1 to ``min_lr`` (floored there) as ``frac`` → 1."""
    if not (0 <= warmdown_frac <= 1 and 0 <= min_lr <= 1):
        raise ValueError(f"warmdown_frac/min_lr: expected values in [0, 1], got {warmdown_frac}, {min_lr}")
    if warmdown_frac <= 0 or frac < 1 - warmdown_frac:
        return 1.0
    return max((1 - frac) / warmdown_frac, min_lr)


class Schedule:
    """Progress, learning-rate multiplier, looping switch and stop rule for one run.

    ``budget_s``: training seconds on the wallclock clock (max_wallclock_s minus the Hessian
    reserve); ``looping``: whether the model has a recurrence to switch on.
    """

    def __init__(self, cfg: ScheduleConfig, budget_s: float, looping: bool) -> None:
        if not isinstance(cfg, ScheduleConfig):
            raise TypeError(f"cfg: expected a ScheduleConfig, got {type(cfg).__name__}")
        if cfg.clock not in ("wallclock", "steps"):
            raise ValueError(f"cfg.clock: expected wallclock or steps, got {cfg.clock!r}")
        if cfg.clock == "steps" and cfg.max_steps <= 0:
            raise ValueError("cfg.max_steps: expected > 0 when cfg.clock is steps")
        if cfg.clock == "wallclock" and not budget_s > 0:
            raise ValueError(f"budget_s: expected > 0 seconds of training on the wallclock clock, got {budget_s}")
        self.cfg, self.budget_s, self.looping = cfg, float(budget_s), bool(looping)

    @property
    def wallclock(self) -> bool:
        return self.cfg.clock == "wallclock"

    def progress(self, step: int, train_s: float) -> float:
        return train_s / self.budget_s if self.wallclock else step / self.cfg.max_steps

    def lr_mul(self, frac: float) -> float:
        return lr_multiplier(frac, self.cfg.warmdown_frac, self.cfg.min_lr)

    def looping_due(self, frac: float, looping_active: bool) -> bool:
        """Whether to switch depth recurrence on before this step."""
        return self.looping and not looping_active and frac >= self.cfg.enable_looping_at

    def should_stop(self, step: int, train_s: float, last_dt: float) -> bool:
        """Stop before step ``step + 1``? (``train_s``: training seconds so far; ``last_dt``: the last step's.)"""
        if self.progress(step, train_s) >= 1 or (self.cfg.max_steps and step >= self.cfg.max_steps):
            return True
        return self.wallclock and step > 0 and train_s + last_dt > self.budget_s

    def seconds_left(self, step: int, train_s: float) -> float:
        """Estimated training seconds left (ETA), never negative."""
        if self.wallclock:
            return max(self.budget_s - train_s, 0.0)
        return max(self.cfg.max_steps - step, 0) * train_s / max(step, 1)


class TrainClock:
    """Training seconds on the host, pausable; with ``agree_across_ranks`` every tick is the ranks' max.

    ``timer``: the seconds counter (``time.perf_counter``; tests pass a fake).
    """

    def __init__(self, agree_across_ranks: bool = False, timer: Callable[[], float] = time.perf_counter) -> None:
        self.agree = bool(agree_across_ranks)
        self.timer = timer
        self.train_s = 0.0
        self.last_dt = 0.0
        self._t_last: Optional[float] = None

    def start(self) -> None:
        """Start (or, after a pause such as an evaluation, resume) counting from now."""
        self._t_last = self.timer()

    resume = start

    def tick(self) -> float:
        """End a step: add the seconds since the last tick (agreed across ranks); returns the step's seconds."""
        if self._t_last is None:
            raise RuntimeError("TrainClock.tick: call start() first")
        now = self.timer()
        dt = now - self._t_last
        self._t_last = now
        if self.agree:
            el = torch.tensor([self.train_s + dt], dtype=torch.float64)
            distributed.all_reduce(el, op="max")  # all ranks stop at the same step
            dt = float(el) - self.train_s
        self.train_s += dt
        self.last_dt = dt
        return dt

    def settle(self, synchronize: Callable[[], None]) -> float:
        """After the last step: wait for the device (``synchronize``) and count the time that took."""
        synchronize()
        if self._t_last is None:
            return self.train_s
        last = self.last_dt
        self.tick()
        self.last_dt = last  # the drain belongs to the steps already counted, not a new step
        return self.train_s
