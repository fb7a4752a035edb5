"""Documents, scored pieces and context windows for the adaptive evaluations.

Positions are token indices of the flat validation stream ``tokens`` (length N). A document is a
span ``[s, e)`` that starts at a BOS token (or at 0 when the stream does not start with one); its
*targets* are ``s+1 .. e`` — the last one is the next document's BOS at ``e`` (when ``e < N``),
predicted from this document's tokens, exactly as the plain evaluation scores it (its segment
ends at ``e``) and as the record's TTT does (its document span ends one past the next BOS). So the
documents' targets tile ``1 .. N−1``: every position but 0 is scored once, with context from its
own document only. A document's start BOS is a *given* input of its own windows (its token value
is known: it is a document start), which may be read before its score (as the previous
document's last target) is committed.

A *piece* ``(s, t0, t1)`` is a run of targets ``[t0, t1)`` of the document starting at ``s``, with
``t1 − t0 ≤ seq_len``. Its *window* is the row the model reads: inputs ``tokens[w0 : t1−1]`` and
targets ``tokens[w0+1 : t1]`` with ``w0 = max(s, t1 − 1 − seq_len)``, so every target ``j`` of the
piece sees the ``min(j − s, …)`` previous tokens of its document, at most ``seq_len``. The window
reads positions ``[w0, t1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch


def document_spans(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """(n, 2) int64 ``[start, end)`` of each document; documents start at BOS tokens (and at 0)."""
    t = np.asarray(tokens)
    if t.ndim != 1 or t.size < 2:
        raise ValueError(f"tokens: expected a 1-D token array of at least 2 tokens, got shape {t.shape}")
    starts = np.union1d(np.array([0]), np.flatnonzero(t == bos_id)).astype(np.int64)
    ends = np.append(starts[1:], t.size).astype(np.int64)
    return np.stack([starts, ends], axis=1)


def target_ends(docs: np.ndarray, n_tokens: int) -> np.ndarray:
    """(D,) int64 end (exclusive) of each document's targets: ``e + 1`` (the next BOS included) for
    every document but the last, ``N`` for the last."""
    d = np.asarray(docs, dtype=np.int64).reshape(-1, 2)
    return np.where(d[:, 1] < n_tokens, d[:, 1] + 1, d[:, 1])


def document_targets(tokens: np.ndarray, bos_id: int) -> np.ndarray:
    """(D, 3) int64 ``[start, end, target_end)`` of each document (``document_spans`` + ``target_ends``)."""
    d = document_spans(tokens, bos_id)
    return np.concatenate([d, target_ends(d, len(tokens))[:, None]], axis=1)


def split_targets(doc_start: int, t0: int, t1: int, seq_len: int) -> list[tuple[int, int, int]]:
    """Pieces ``(doc_start, a, b)`` covering targets ``[t0, t1)`` with ``b − a ≤ seq_len``."""
    return [(doc_start, a, min(a + seq_len, t1)) for a in range(t0, t1, seq_len)]


def stream_chunk_pieces(docs: np.ndarray, c0: int, c1: int, seq_len: int,
                        n_tokens: Optional[int] = None) -> list[tuple[int, int, int]]:
    """The pieces of the targets in the stream range ``[c0, c1)``: every position of the range but 0,
    each in the document whose targets hold it (a BOS at ``e`` is the last target of the document
    ending there). ``n_tokens``: the stream length (default: the last document's end)."""
    out: list = []
    n = int(docs[-1, 1]) if n_tokens is None else int(n_tokens)
    te = target_ends(docs, n)
    i = int(np.searchsorted(te, c0, side="right"))
    while i < len(docs) and docs[i, 0] < c1:
        s, e = int(docs[i, 0]), int(te[i])
        a, b = max(c0, s + 1), min(c1, e)
        if a < b:
            out += split_targets(s, a, b, seq_len)
        i += 1
    return out


@dataclass
class WindowBatch:
    """Rows of windows: x, y (B, W) int64; mask (B, W) bool (the pieces' targets); pieces, windows (B, 2)."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    pieces: np.ndarray
    """[t0, t1) scored by each row."""
    windows: np.ndarray
    """[w0, t1) read by each row."""
    tbytes: Optional[torch.Tensor] = None
    """(B, W) int64 bytes of each target from the CaseOps sidecar (None: the tokenizer's tables)."""
    read_seq: Optional[int] = None
    """The event-log seq of the guarded read that produced this batch (None: not read through the guard)."""
    purpose: str = ""
    """Why it was read: ``score`` or ``update`` (compliance/guarded.py)."""

    @property
    def first_target(self) -> np.ndarray:
        """Row offset of each row's first scored target."""
        return self.pieces[:, 0] - self.windows[:, 0] - 1

    def flat_targets(self) -> np.ndarray:
        """Flat indices into the (B, W) row-major batch of every scored target, row by row, each row's
        targets ``t0 .. t1−1`` in order (host arithmetic: selecting them needs no device sync)."""
        W = self.x.shape[1]
        first = self.first_target
        lens = self.pieces[:, 1] - self.pieces[:, 0]
        rid = np.repeat(np.arange(len(lens)), lens)
        off = np.arange(rid.size) - np.repeat(np.cumsum(lens) - lens, lens)
        return rid * W + first[rid] + off

    def to(self, device: torch.device) -> "WindowBatch":
        return WindowBatch(self.x.to(device), self.y.to(device), self.mask.to(device), self.pieces, self.windows,
                           self.tbytes.to(device) if self.tbytes is not None else None, self.read_seq, self.purpose)


def piece_windows(pieces, seq_len: int) -> np.ndarray:
    """(B, 2) int64 ``[w0, t1)`` read by the window of each piece (the ``windows`` of ``build_windows``),
    from the pieces alone; empty pieces give a (0, 2) array."""
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len: expected an int >= 1, got {seq_len!r}")
    p = np.asarray(pieces, dtype=np.int64).reshape(-1, 3)
    return np.stack([np.maximum(p[:, 0], p[:, 2] - 1 - seq_len), p[:, 2]], 1)


def build_windows(tokens: torch.Tensor, pieces, seq_len: int, val_bytes: Optional[torch.Tensor] = None) -> WindowBatch:
    """Windows of ``pieces`` (see the module docstring) from the flat int64 CPU ``tokens``.

    ``val_bytes``: the CaseOps byte sidecar parallel to ``tokens`` (target ``j`` costs ``val_bytes[j]``).
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.dim() != 1:
        raise TypeError("tokens: expected a 1-D int64 tensor")
    if not pieces:
        raise ValueError("pieces: expected at least one piece")
    p = np.asarray(pieces, dtype=np.int64).reshape(-1, 3)
    s, t0, t1 = p[:, 0], p[:, 1], p[:, 2]
    if ((t1 - t0) > seq_len).any() or (t0 <= s).any() or (t1 <= t0).any():
        raise ValueError(f"pieces: expected doc_start < t0 < t1 <= t0 + seq_len ({seq_len}) for every piece")
    w0 = np.maximum(s, t1 - 1 - seq_len)
    width = int((t1 - 1 - w0).max())
    B = len(p)
    x = torch.zeros(B, width, dtype=torch.long)
    y = torch.zeros(B, width, dtype=torch.long)
    mask = torch.zeros(B, width, dtype=torch.bool)
    tb = torch.zeros(B, width, dtype=torch.long) if val_bytes is not None else None
    for r in range(B):
        n = int(t1[r] - 1 - w0[r])
        x[r, :n] = tokens[w0[r]:t1[r] - 1]
        y[r, :n] = tokens[w0[r] + 1:t1[r]]
        mask[r, t0[r] - w0[r] - 1:n] = True
        if tb is not None:
            tb[r, :n] = val_bytes[w0[r] + 1:t1[r]]
    return WindowBatch(x, y, mask, np.stack([t0, t1], 1), np.stack([w0, t1], 1), tb)


def sidecar_bytes(val_bytes, n_tokens: int) -> Optional[torch.Tensor]:
    """The CaseOps byte sidecar as an int64 CPU tensor parallel to the tokens (None passes through)."""
    if val_bytes is None:
        return None
    vb = np.asarray(val_bytes)
    if vb.ndim != 1 or vb.shape[0] != n_tokens or vb.dtype.kind not in "iu":
        raise ValueError(f"val_bytes: expected integer byte counts parallel to the {n_tokens} tokens, got "
                         f"{vb.dtype} of shape {vb.shape}")
    return torch.from_numpy(vb.astype(np.int64))


def target_bytes(tokens: torch.Tensor, table, val_bytes: Optional[torch.Tensor] = None) -> np.ndarray:
    """(N,) int64 bytes of the target at each position ``j >= 1`` (0 at position 0): the sidecar's
    ``val_bytes[j]`` when given, else ``base[t_j] + (has_space[t_j] & ~is_boundary[t_{j−1}])`` from the
    tokenizer ``table`` — the checker's own count, computed apart from the accumulator."""
    n = int(tokens.numel())
    out = np.zeros(n, dtype=np.int64)
    if val_bytes is not None:
        out[1:] = np.asarray(val_bytes, dtype=np.int64)[1:n]
        return out
    if table is None:
        raise ValueError("table: required when val_bytes is not given")
    t, p = tokens[1:].long(), tokens[:-1].long()
    b = table.base_bytes.cpu().long()[t] + (table.has_space.cpu()[t] & ~table.is_boundary.cpu()[p]).long()
    out[1:] = b.numpy()
    return out


class ScoringInputs(NamedTuple):
    """What an adaptive evaluation reads its validation stream as (``scoring_inputs``)."""

    device: torch.device
    tokens: np.ndarray
    """(N,) the stream as given (any integer dtype)."""
    toks: torch.Tensor
    """(N,) int64 CPU copy of ``tokens``."""
    val_bytes: Optional[torch.Tensor]
    """(N,) int64 CaseOps byte sidecar, or None (``sidecar_bytes``)."""
    n: int
    vocab_size: int
    bos: int
    docs: np.ndarray
    """(D, 2) int64 ``document_spans`` of the stream."""


def scoring_inputs(model, tokens, seq_len: int, device, val_bytes) -> ScoringInputs:
    """The stream, its int64 copy, sidecar and document spans, and the model's device (when ``device``
    is None), vocabulary size and BOS id; raises when ``seq_len`` exceeds the model's ``max_seqlen``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokens = np.asarray(tokens)
    toks = torch.from_numpy(tokens.astype(np.int64))
    vb = sidecar_bytes(val_bytes, len(tokens))
    if seq_len > model.cfg.max_seqlen:
        raise ValueError(f"seq_len: {seq_len} exceeds the model's max_seqlen {model.cfg.max_seqlen}")
    return ScoringInputs(device, tokens, toks, vb, len(tokens), model.cfg.vocab_size, model.cfg.bos_id,
                         document_spans(tokens, model.cfg.bos_id))
