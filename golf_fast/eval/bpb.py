"""Exact val_bpb (parameter_golf.md §2): summed nats over summed bytes, all-reduced.

    val_loss = Σ nats / Σ tokens
    val_bpb  = Σ nats / (ln 2 · Σ bytes)

Nats, token and byte counts are summed in float64 (exact below 2^53); with a process group, the
three sums are all-reduced (SUM, through ``golf_fast.distributed``) before the division, so the
result does not depend on how the scored positions were split across ranks.

Bytes of a scored target come from one of two sources: the tokenizer's lookup tables
(:class:`TokenByteTable`, plain data) or, for CaseOps data, the validation byte sidecar — the
caller passes ``target_bytes`` (the sidecar value at each target's global position) and the tables
are not consulted (parameter_golf.md §2.1, caseops.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from golf_fast import distributed
from golf_fast.data.byte_table import TokenByteTable


@dataclass
class EvalResult:
    val_loss: float
    val_bpb: float
    tokens: int
    bytes: int
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(val_loss=self.val_loss, val_bpb=self.val_bpb, tokens=self.tokens, bytes=self.bytes,
                    seconds=round(self.seconds, 3))


class BpbAccumulator:
    """Running Σ nats (float64), Σ tokens, Σ bytes on ``device``.

    ``table`` may be None when every :meth:`add` passes ``target_bytes`` (CaseOps sidecar bytes).
    """

    def __init__(self, table: TokenByteTable | None, device: torch.device) -> None:
        if table is not None and not isinstance(table, TokenByteTable):
            raise TypeError(f"table: expected a TokenByteTable or None, got {type(table).__name__}")
        self.table = table.to(device) if table is not None else None
        self.device = torch.device(device)
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes (exact below 2^53)

    def add(self, nats: torch.Tensor, prev_ids: torch.Tensor, target_ids: torch.Tensor,
            mask: torch.Tensor | None = None, target_bytes: torch.Tensor | None = None) -> None:
        """Add per-token losses ``nats`` for targets ``target_ids`` after ``prev_ids`` (same shapes).

        ``mask`` (bool, same shape) selects the scored positions; None scores all.
        ``target_bytes`` (integer, same shape): each target's byte count from a sidecar; None =
        the lookup tables.
        """
        if nats.shape != target_ids.shape or prev_ids.shape != target_ids.shape:
            raise ValueError(f"nats: shapes {tuple(nats.shape)}, {tuple(prev_ids.shape)}, "
                             f"{tuple(target_ids.shape)} must agree")
        if target_bytes is not None:
            if target_bytes.shape != target_ids.shape or target_bytes.is_floating_point():
                raise ValueError(f"target_bytes: expected an integer tensor of shape {tuple(target_ids.shape)}, "
                                 f"got {target_bytes.dtype} {tuple(target_bytes.shape)}")
            b = target_bytes.to(nats.device).long()
        elif self.table is None:
            raise ValueError("target_bytes: required when the accumulator has no byte table")
        else:
            b = self.table.count_bytes(prev_ids, target_ids)
        n = nats.double()
        if mask is not None:
            n, b = n[mask], b[mask]
        self.sums += torch.stack([n.sum(), torch.tensor(float(n.numel()), dtype=torch.float64, device=n.device),
                                  b.sum().double()])

    def result(self, seconds: float = 0.0) -> EvalResult:
        s = self.sums.clone()
        distributed.all_reduce(s, op="sum")  # on the process group's device; identity in one process
        nats, toks, nbytes = (float(v) for v in s.cpu())
        if toks == 0 or nbytes == 0:
            raise ValueError("no positions were scored (empty validation set?)")
        return EvalResult(val_loss=nats / toks, val_bpb=nats / (math.log(2) * nbytes), tokens=int(toks),
                          bytes=int(nbytes), seconds=seconds)
