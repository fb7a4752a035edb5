"""Full-parameter adaptation of the base model: the trainable set and one distributed step.

* :func:`last_blocks_parameters` — the TTT-AdamW submission's set: the blocks after the first
  ``freeze_blocks`` (their bank rows and their own scalars). Banks hold every layer, so frozen
  rows are masked: their gradients are zeroed before the step, and with weight decay 0 Adam
  leaves them bit-unchanged (m = v = 0 ⇒ update 0).
* :func:`train_on_pieces` — one optimizer step on ``Σ CE / N`` over the scored targets of a list
  of pieces, where N counts the targets of every rank's pieces: each rank backpropagates its own
  pieces, gradients are summed over ranks, so the step equals the one-process step.
* :func:`cosine_lr` — ``lr_min + (lr − lr_min)·½(1 + cos(π·i/(n−1)))``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from golf_fast.eval.collectives import all_reduce_grads
from golf_fast.eval.scoring import autocast_ctx, masked_loss_sum
from golf_fast.eval.compliance.guarded import GuardedStream
from golf_fast.model.gpt import BANK_NAMES, MATRICES_PER_LAYER


def last_blocks_parameters(model, freeze_blocks: int) -> tuple[list, Callable[[], None]]:
    """(parameters to train, ``mask_grads()`` zeroing the frozen layers' bank rows)."""
    L = model.cfg.num_layers
    if not (0 <= freeze_blocks < L):
        raise ValueError(f"freeze_blocks: expected an int in [0, {L}) for a {L}-layer model, got {freeze_blocks}")
    banks = [getattr(model, n) for n in BANK_NAMES]
    own = [p for i in range(freeze_blocks, L) for p in model.blocks[i].parameters()]
    frozen = [[i + k * L for k in range(MATRICES_PER_LAYER[n]) for i in range(freeze_blocks)] for n in BANK_NAMES]

    def mask_grads() -> None:
        for p, rows in zip(banks, frozen):
            if p.grad is not None and rows:
                p.grad[rows] = 0

    return banks + own, mask_grads


def cosine_lr(lr: float, i: int, n: int, lr_min: float = 0.0) -> float:
    if n <= 1:
        return lr
    return lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * i / (n - 1)))


def train_on_pieces(model, stream: GuardedStream, my_pieces: list, total_targets: int, params: list,
                    opt: torch.optim.Optimizer, *, batch_seqs: int, world_size: int, device, dtype, tag: str,
                    grad_clip: float = 0.0, mask_grads: Optional[Callable[[], None]] = None) -> float:
    """One step on this rank's ``my_pieces`` (Σ CE / ``total_targets``), read from ``stream`` as update
    batches tagged ``tag`` (the reads are the update events); returns this rank's loss sum."""
    if total_targets < 1:
        raise ValueError(f"total_targets: expected >= 1, got {total_targets}")
    if not isinstance(stream, GuardedStream):
        raise TypeError(f"stream: expected a GuardedStream, got {type(stream).__name__}")
    opt.zero_grad(set_to_none=False)
    loss_sum = torch.zeros((), device=device)
    for i in range(0, len(my_pieces), batch_seqs):
        wb = stream.windows(my_pieces[i:i + batch_seqs], "update", tag).to(device)
        with autocast_ctx(device, dtype):
            logits = model.logits(wb.x)
        loss = masked_loss_sum(logits, wb)
        (loss / total_targets).backward()
        loss_sum += loss.detach()
    if mask_grads is not None:
        mask_grads()
    all_reduce_grads(params, world_size)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    return float(loss_sum)
