"""Compile warm-up before the clock starts: every graph the run will need is compiled on throw-away
batches, then the weights and optimizer state are restored, so warm-up leaves no trace in the model.

For each loop state (off, and on when the model has a recurrence) one forward+backward per common
``cu_seqlens`` bucket (64, 128, 192, 256 entries, each its own graph) and ``steps`` full steps.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Optional

import torch

from golf_fast.model.gpt import GPT
from golf_fast.train.batches import TrainData
from golf_fast.train.optimizers import Optimizers
from golf_fast.train.step import TrainStep

BUCKETS = (64, 128, 192, 256)


def compile_warmup(model: GPT, forward: Callable, opt: Optimizers, step: TrainStep, data: TrainData, steps: int,
                   autocast: Callable[[], contextlib.AbstractContextManager],
                   progress: Optional[Callable[[str], None]] = None) -> None:
    """Run the warm-up described in the module doc; ``model`` and ``opt`` end as they started (loop off).
    ``progress`` (optional) is called with one line before each graph is compiled (torch.compile takes
    tens of seconds per graph on a first run, so a silent warm-up looks like a hang)."""
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps: expected a non-negative int, got {steps!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress: expected a callable taking one str or None, got {type(progress).__name__}")
    say = progress or (lambda line: None)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dicts())
    loaders = data.loaders(seed_offset=1)
    L, device = data.tokens_per_rank, data.d.device
    try:
        for looping in ([False, True] if model.cfg.num_loops > 0 else [False]):
            model.looping_active = looping
            for n in BUCKETS:
                starts = torch.arange(0, L, model.cfg.max_seqlen, dtype=torch.int32, device=device)
                if starts.numel() + 1 > n:
                    continue  # segments of at most max_seqlen do not fit this bucket
                cu = torch.full((n,), L, dtype=torch.int32, device=device)
                cu[:starts.numel()] = starts
                b = loaders[0].next_batch()
                say(f"compile warm-up: forward+backward, loop {'on' if looping else 'off'}, {n} cu_seqlens entries")
                with autocast():
                    forward(b.x, b.y, cu).backward()
                opt.zero_grad()
            for i in range(steps):
                say(f"compile warm-up: full step {i + 1}/{steps} (loop {'on' if looping else 'off'})")
                step(loaders)
    finally:
        for ld in loaders:
            ld.close()
    model.load_state_dict(saved_model)
    opt.load_state_dicts(saved_opt)
    model.looping_active = False
