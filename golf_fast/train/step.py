"""One optimizer step and the weight EMA; nothing here reads a device value back to the host.

A step is ``accum`` micro-steps on this rank: micro-step k reads ``loaders[k]`` (virtual rank
``rank·accum + k`` of ``world·accum``), runs forward under autocast and backward of
``loss / accum``. Then the local gradient norm is clipped, the replicated (non-Muon) gradients
are averaged over ranks, the optimizers step and the gradients are cleared. The returned loss is
the mean over micro-steps and ranks, a 0-d fp32 tensor on the device:

    loss = (1 / world) · Σ_ranks (1 / accum) · Σ_k loss_k

EMA of the weights (fp32 shadow copies): ``ema ← ema + (1 − decay) · (p − ema)`` after each step.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import torch

from golf_fast import distributed
from golf_fast.train.optimizers import Optimizers, clip_grad_norm, sync_replicated_grads


def autocast_factory(device: torch.device,
                     dtype: Optional[torch.dtype]) -> Callable[[], contextlib.AbstractContextManager]:
    """A function returning a fresh autocast context for ``device`` (a no-op context when ``dtype`` is None)."""
    device = torch.device(device)
    if dtype is None:
        return contextlib.nullcontext
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"dtype: expected None, torch.bfloat16 or torch.float16, got {dtype}")
    return lambda: torch.autocast(device.type, dtype=dtype)


class TrainStep:
    """``step(loaders) -> loss``: one optimizer step over ``accum`` micro-batches (see the module doc).

    ``forward(x, y, cu_seqlens) -> loss`` is the (possibly compiled) model; ``params`` are all the
    model's parameters (for clipping); ``world``: ranks in the job.
    """

    def __init__(self, forward: Callable, opt: Optimizers, params: Sequence[torch.nn.Parameter], *, accum: int,
                 grad_clip: float, world: int, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> None:
        if not (isinstance(accum, int) and accum >= 1):
            raise ValueError(f"accum: expected a positive int, got {accum!r}")
        if not (isinstance(world, int) and world >= 1):
            raise ValueError(f"world: expected a positive int, got {world!r}")
        if grad_clip < 0:
            raise ValueError(f"grad_clip: expected >= 0 (0 = off), got {grad_clip}")
        self.forward, self.opt, self.params = forward, opt, list(params)
        self.accum, self.grad_clip, self.world = accum, grad_clip, world
        self.device, self.autocast = torch.device(device), autocast

    def __call__(self, loaders: Sequence) -> torch.Tensor:
        if len(loaders) != self.accum:
            raise ValueError(f"loaders: expected {self.accum} (one per micro-step), got {len(loaders)}")
        total = torch.zeros((), device=self.device)
        for k in range(self.accum):
            b = loaders[k].next_batch()
            with self.autocast():
                loss = self.forward(b.x, b.y, b.cu_seqlens)
            (loss / self.accum).backward()
            total += loss.detach()
        clip_grad_norm(self.params, self.grad_clip)
        sync_replicated_grads(self.opt.replicated, self.world)
        self.opt.step()
        self.opt.zero_grad()
        total /= self.accum
        if self.world > 1:
            distributed.all_reduce(total, op="sum")
            total /= self.world
        return total


class WeightEma:
    """fp32 exponential moving average of ``params`` (``decay`` in (0, 1))."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected in (0, 1), got {decay}")
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - self.decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Load the averaged weights into the parameters (cast to their dtype)."""
        for p, e in zip(self.params, self.shadow):
            p.copy_(e.to(p.dtype))
