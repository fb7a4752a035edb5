"""Plain and sliding-window evaluation of val_bpb (parameter_golf.md §2.2–2.3), document-isolated.

Both use the validation tokens truncated like the records: ``usable = ((N−1)//seq_len)·seq_len``,
``tokens = val[:usable+1]``, so there are ``T = usable`` scored predictions (input ``tokens[p]``,
target ``tokens[p+1]``).

* Plain: ``T/seq_len`` non-overlapping rows, split contiguously across ranks; every prediction once.
* Sliding (stride S, length W, context C = W − S): windows start at 0 and at every multiple of S
  with ``ws + C < T``; window ``[ws, min(ws+W, T))`` scores its positions from ``s = 0`` (first
  window) or ``s = C`` (later windows) on, so the scored ranges tile ``[0, T)`` exactly and every
  prediction after the first window has at least C tokens of context (within its document).

Bytes: with ``val_bytes`` (the CaseOps sidecar, parallel to ``val_tokens``) the target at global
position ``p+1`` is charged ``val_bytes[p+1]``; without it, the tokenizer's lookup tables.

Rows are evaluated ``batch_seqs`` at a time; ``cu_seqlens`` put a boundary at each row start and at
each BOS inside a row (documents never see each other); documents longer than the model's
``max_seqlen`` are cut like in training.
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, Union

import numpy as np
import torch

from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.loader import cu_seqlens_from_bos
from golf_fast.eval.bpb import BpbAccumulator, EvalResult
from golf_fast.eval.scoring import autocast_ctx


def truncate_val(tokens: Union[np.ndarray, torch.Tensor], seq_len: int) -> np.ndarray:
    """``tokens[:usable+1]`` with ``usable = ((N−1)//seq_len)·seq_len`` (the records' val set)."""
    t = np.asarray(tokens)
    if t.ndim != 1:
        raise ValueError(f"tokens: expected a 1-D token array, got shape {t.shape}")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
    usable = ((t.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"tokens: {t.size} validation tokens are fewer than seq_len + 1 = {seq_len + 1}")
    return t[:usable + 1]


def sliding_window_plan(T: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """``[(ws, wlen, s), ...]``: window start, length and first scored offset for ``T`` predictions."""
    if not (isinstance(stride, int) and 0 < stride <= seq_len):
        raise ValueError(f"stride: expected an int in [1, seq_len={seq_len}], got {stride!r}")
    if T < 1:
        raise ValueError(f"T: expected at least one prediction, got {T}")
    ctx = seq_len - stride
    starts = [0] + [ws for ws in range(stride, T, stride) if ws + ctx < T]
    return [(ws, min(ws + seq_len, T) - ws, 0 if ws == 0 else ctx) for ws in starts]


def _rank_range(n: int, rank: int, world: int) -> range:
    return range(n * rank // world, n * (rank + 1) // world)


@torch.no_grad()
def _score_rows(model, acc: BpbAccumulator, tokens: torch.Tensor, rows: Sequence[tuple[int, int, int]],
                seq_len: int, bos_id: int, max_doc_len: int, device: torch.device, dtype,
                nbytes: Optional[torch.Tensor] = None) -> None:
    """Score rows (start, length, first scored offset) of the flat ``tokens`` (CPU int64).

    ``nbytes`` (CPU int64, parallel to ``tokens``): sidecar byte counts of the targets.
    """
    B = len(rows)
    x = torch.zeros(B, seq_len, dtype=torch.long)
    y = torch.zeros(B, seq_len, dtype=torch.long)
    yb = torch.zeros(B, seq_len, dtype=torch.long) if nbytes is not None else None
    mask = torch.zeros(B, seq_len, dtype=torch.bool)
    for r, (ws, wlen, s) in enumerate(rows):
        x[r, :wlen] = tokens[ws:ws + wlen]
        y[r, :wlen] = tokens[ws + 1:ws + wlen + 1]
        if yb is not None:
            yb[r, :wlen] = nbytes[ws + 1:ws + wlen + 1]
        mask[r, s:wlen] = True
    flat = x.view(-1).numpy()
    cu = cu_seqlens_from_bos(flat, bos_id, max_doc_len, bucket=64, starts=np.arange(0, B * seq_len, seq_len))
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    with autocast_ctx(device, dtype):
        nats = model(x, y, torch.from_numpy(cu).to(device), reduction="none")
    acc.add(nats, x, y, mask, target_bytes=yb)


def evaluate(model, val_tokens: Union[np.ndarray, torch.Tensor], table: Optional[TokenByteTable], *, seq_len: int,
             stride: Optional[int] = None, batch_seqs: int = 32, rank: int = 0, world_size: int = 1,
             device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None,
             val_bytes: Union[np.ndarray, torch.Tensor, None] = None) -> EvalResult:
    """val_bpb of ``model`` (a GPT: ``model(x, y, cu_seqlens, reduction="none")``) on ``val_tokens``.

    ``stride=None`` (or ``seq_len``): plain evaluation; else sliding windows. ``dtype``: autocast
    dtype (bf16 on GPU), None for fp32. Each rank scores its contiguous share; the sums are all-reduced.
    ``val_bytes``: per-token original byte counts parallel to ``val_tokens`` (the CaseOps sidecar);
    when given they replace ``table`` (which may then be None).
    """
    if not (isinstance(batch_seqs, int) and batch_seqs > 0):
        raise ValueError(f"batch_seqs: expected a positive int, got {batch_seqs!r}")
    if not (0 <= rank < world_size):
        raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
    t0 = time.perf_counter()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    toks = truncate_val(val_tokens, seq_len)
    T = toks.size - 1
    nbytes = None
    if val_bytes is not None:
        vb = np.asarray(val_bytes)
        if vb.ndim != 1 or vb.size != np.asarray(val_tokens).size or not np.issubdtype(vb.dtype, np.integer):
            raise ValueError(f"val_bytes: expected integer byte counts parallel to val_tokens "
                             f"({np.asarray(val_tokens).size},), got {vb.dtype} {vb.shape}")
        nbytes = torch.from_numpy(vb[:toks.size].astype(np.int64))
    elif table is None:
        raise ValueError("table: a TokenByteTable is required when val_bytes is not given")
    if stride is None or stride == seq_len:
        plan = [(i * seq_len, seq_len, 0) for i in range(T // seq_len)]
    else:
        plan = sliding_window_plan(T, seq_len, stride)
    mine = [plan[i] for i in _rank_range(len(plan), rank, world_size)]
    tokens = torch.from_numpy(toks.astype(np.int64))
    acc = BpbAccumulator(table if nbytes is None else None, device)
    cfg = getattr(model, "cfg", None)
    bos, max_doc = (cfg.bos_id, cfg.max_seqlen) if cfg is not None else (1, seq_len)
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(mine), batch_seqs):
            _score_rows(model, acc, tokens, mine[i:i + batch_seqs], seq_len, bos, max_doc, device, dtype, nbytes)
    finally:
        model.train(was_training)
    return acc.result(seconds=time.perf_counter() - t0)
