"""Exact UTF-8 byte accounting of SentencePiece tokens for val_bpb (parameter_golf.md §2.1).

For every id of the tokenizer (table size ``max(sp.vocab_size(), vocab_size)``):

* control, unknown and unused pieces are *boundary* tokens with 0 bytes;
* byte-fallback pieces ``<0xNN>`` are 1 byte;
* any other piece counts ``len(piece.encode("utf-8"))`` after stripping exactly one leading ``▁``,
  which is remembered in ``has_space``.

The bytes of a scored target ``t`` after the previous (input) token ``p`` are
``base_bytes[t] + (has_space[t] and not is_boundary[p])``: a leading space is not charged right
after BOS or another control token. ``val_bpb = Σ nats / (ln 2 · Σ bytes)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from golf_fast.data.errors import DataError, check_regular_file

SPACE = "\u2581"  # ▁, SentencePiece's whitespace marker


def load_sentencepiece(model: Union[str, os.PathLike, Any]):
    """A ``SentencePieceProcessor`` from a path to a ``.model`` file (or one passed through)."""
    import sentencepiece as spm

    if isinstance(model, spm.SentencePieceProcessor):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model: expected a path to a SentencePiece .model file, got {type(model).__name__}")
    check_regular_file(model, "model: SentencePiece model")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(model))
    except (OSError, RuntimeError) as e:
        raise DataError(f"model: {str(model)!r} is not a SentencePiece model ({str(e).splitlines()[0] if str(e) else e})") from e
    return sp


@dataclass
class TokenByteTable:
    """Per-token byte lookup tables: base_bytes (V,) int16, has_space (V,) bool, is_boundary (V,) bool."""

    base_bytes: torch.Tensor
    has_space: torch.Tensor
    is_boundary: torch.Tensor

    def __post_init__(self) -> None:
        v = self.base_bytes.shape[0] if self.base_bytes.dim() == 1 else -1
        if self.base_bytes.dtype != torch.int16 or v < 1:
            raise TypeError(f"base_bytes: expected a 1-D int16 tensor, got {self.base_bytes.dtype} "
                            f"shape {tuple(self.base_bytes.shape)}")
        for name in ("has_space", "is_boundary"):
            t = getattr(self, name)
            if t.dtype != torch.bool or tuple(t.shape) != (v,):
                raise TypeError(f"{name}: expected a bool tensor of shape ({v},), got {t.dtype} {tuple(t.shape)}")

    @property
    def size(self) -> int:
        return int(self.base_bytes.shape[0])

    @classmethod
    def from_sentencepiece(cls, model: Union[str, os.PathLike, Any], vocab_size: Optional[int] = None) -> "TokenByteTable":
        """Build the tables from a SentencePiece model (a path or a loaded processor).

        ``vocab_size`` (the model's embedding rows) pads the table to ``max(sp.vocab_size(), vocab_size)``;
        ids past the tokenizer's own vocabulary are boundary tokens with 0 bytes.
        """
        sp = load_sentencepiece(model)
        n = int(sp.vocab_size())
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 1):
            raise ValueError(f"vocab_size: expected a positive int, got {vocab_size!r}")
        size = max(n, vocab_size or 0)
        if sp.piece_to_id(SPACE) == sp.unk_id():
            raise ValueError(f"model: the tokenizer has no '{SPACE}' piece; byte accounting expects one")
        base = np.zeros(size, dtype=np.int16)
        space = np.zeros(size, dtype=np.bool_)
        boundary = np.ones(size, dtype=np.bool_)
        for i in range(n):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                continue
            boundary[i] = False
            if sp.is_byte(i):
                base[i] = 1
                continue
            piece = sp.id_to_piece(i)
            if piece.startswith(SPACE):
                space[i] = True
                piece = piece[1:]
            base[i] = len(piece.encode("utf-8"))
        return cls(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))

    def to(self, device: Union[str, torch.device]) -> "TokenByteTable":
        return TokenByteTable(self.base_bytes.to(device), self.has_space.to(device), self.is_boundary.to(device))

    def count_bytes(self, prev_ids: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
        """Bytes of each target, int64, same shape: ``base[t] + (has_space[t] & ~is_boundary[p])``."""
        for name, t in (("prev_ids", prev_ids), ("target_ids", target_ids)):
            if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64, torch.uint16, torch.int16):
                raise TypeError(f"{name}: expected an integer tensor of token ids, got "
                                f"{getattr(t, 'dtype', type(t).__name__)}")
        if prev_ids.shape != target_ids.shape:
            raise ValueError(f"prev_ids: shape {tuple(prev_ids.shape)} must equal target_ids {tuple(target_ids.shape)}")
        p, t = prev_ids.long(), target_ids.long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.size or int(p.min()) < 0 or int(p.max()) >= self.size):
            raise ValueError(f"target_ids: token ids must be in [0, {self.size}) for this byte table")
        table = self if self.base_bytes.device == t.device else self.to(t.device)
        extra = table.has_space[t] & ~table.is_boundary[p]
        return table.base_bytes[t].long() + extra.long()
