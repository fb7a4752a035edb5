"""The record's document-packing training loader (parameter_golf.md §1.4, R0611/RVAR).

All ranks walk the same shard list in order. A global cursor starts at the first BOS of a shard;
each step consumes ``world_size * (L + 1)`` tokens and rank ``r`` takes
``tokens[cursor + r(L+1) : cursor + (r+1)(L+1)]``, giving ``x = s[:-1]``, ``y = s[1:]`` of shape
(1, L). If the rest of a shard is too short for a step, it is dropped and the next shard starts at
its first BOS; after the last shard the list starts over (with ``shuffle_shards`` the order of each
pass is a permutation drawn from ``seed`` and the pass number). Everything is deterministic.

Document isolation: :func:`cu_seqlens_from_bos` turns the BOS positions of ``x`` into int32
``cu_seqlens`` (0 first, segments longer than ``max_doc_len`` cut, padded with ``L`` up to a
multiple of ``bucket`` so compiled graphs see few shapes). Batches are built ahead in a background
thread (``prefetch`` deep, pinned memory when the target is CUDA).
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from golf_fast.data.shards import check_token_ids, read_shard


@dataclass
class Batch:
    """One rank's step: inputs/targets (1, L) int64, cu_seqlens (n,) int32, max_seqlen."""

    x: torch.Tensor
    y: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int

    def to(self, device: torch.device, non_blocking: bool = True) -> "Batch":
        return Batch(self.x.to(device, non_blocking=non_blocking), self.y.to(device, non_blocking=non_blocking),
                     self.cu_seqlens.to(device, non_blocking=non_blocking), self.max_seqlen)


def cu_seqlens_from_bos(x: np.ndarray, bos_id: int, max_doc_len: int, bucket: int = 64,
                        starts: Optional[np.ndarray] = None) -> np.ndarray:
    """int32 cumulative segment starts for a flat token buffer ``x`` (length L).

    A segment starts at 0, at every BOS, and at every extra ``starts`` position (e.g. window
    boundaries); segments longer than ``max_doc_len`` are cut into ``max_doc_len`` pieces. The
    result ``[0, ..., L]`` is padded with ``L`` to a multiple of ``bucket`` (``bucket=1``: no padding).
    """
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"x: expected a non-empty 1-D token buffer, got shape {x.shape}")
    if max_doc_len < 1 or bucket < 1:
        raise ValueError(f"max_doc_len/bucket: expected positive ints, got {max_doc_len}, {bucket}")
    n = x.size
    b = np.flatnonzero(x == bos_id)
    if starts is not None:
        b = np.union1d(b, np.asarray(starts, dtype=np.int64))
    bounds = np.union1d(np.array([0, n], dtype=np.int64), b.astype(np.int64))
    lens = np.diff(bounds)
    if lens.size and lens.max() > max_doc_len:
        pieces = [bounds[:1]]
        for s, ln in zip(bounds[:-1], lens):
            pieces.append(s + np.arange(max_doc_len, ln, max_doc_len, dtype=np.int64))
            pieces.append(np.array([s + ln], dtype=np.int64))
        bounds = np.concatenate(pieces)
    pad = (-bounds.size) % bucket
    if pad:
        bounds = np.concatenate([bounds, np.full(pad, n, dtype=np.int64)])
    return bounds.astype(np.int32)


class DocumentPackingLoader:
    """Per-rank (1, L) slices of the packed token stream with document ``cu_seqlens``.

    ``vocab_size``: when given, each shard's largest id is checked against it the first time the
    shard is read (a ``DataError`` naming the shard, raised from ``next_batch``)."""

    def __init__(self, files: Sequence[os.PathLike], *, tokens_per_rank: int, rank: int = 0, world_size: int = 1,
                 max_doc_len: int = 2048, bos_id: int = 1, bucket: int = 64, prefetch: int = 2,
                 device: Optional[torch.device] = None, seed: int = 0, shuffle_shards: bool = False,
                 vocab_size: Optional[int] = None) -> None:
        if not files:
            raise ValueError("files: expected at least one train shard")
        if not isinstance(tokens_per_rank, int) or tokens_per_rank < 2:
            raise ValueError(f"tokens_per_rank: expected an int >= 2, got {tokens_per_rank!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch: expected >= 0, got {prefetch}")
        self.files = [str(f) for f in files]
        self.L, self.rank, self.world = tokens_per_rank, rank, world_size
        self.max_doc_len, self.bos_id, self.bucket = max_doc_len, bos_id, bucket
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seed, self.shuffle_shards = seed, shuffle_shards
        if vocab_size is not None and (not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1):
            raise ValueError(f"vocab_size: expected an int >= 1 or None, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self._checked: set[int] = set()
        self._gen = self._batches()
        self._prefetch = prefetch
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    # ---- the token walk (runs in the prefetch thread)

    def _order(self, epoch: int) -> list[int]:
        idx = list(range(len(self.files)))
        if self.shuffle_shards:
            np.random.default_rng([self.seed, epoch]).shuffle(idx)
        return idx

    def _batches(self):
        need = self.world * (self.L + 1)
        epoch = 0
        while True:
            used = 0
            for fi in self._order(epoch):
                tokens = read_shard(self.files[fi])
                if self.vocab_size is not None and fi not in self._checked:  # one max() per shard, once
                    check_token_ids(tokens, self.vocab_size, f"train shard {self.files[fi]}")
                    self._checked.add(fi)
                bos = np.flatnonzero(tokens[: min(tokens.size, 1 << 20)] == self.bos_id)
                cursor = int(bos[0]) if bos.size else 0
                while cursor + need <= tokens.size:
                    lo = cursor + self.rank * (self.L + 1)
                    s = np.array(tokens[lo: lo + self.L + 1], dtype=np.int64)
                    cu = cu_seqlens_from_bos(s[:-1], self.bos_id, self.max_doc_len, self.bucket)
                    yield self._pack(s, cu)
                    cursor += need
                    used += 1
            if used == 0:
                raise ValueError(f"files: no shard holds one step of {need} tokens "
                                 f"(world_size {self.world} × (tokens_per_rank {self.L} + 1))")
            epoch += 1

    def _pack(self, s: np.ndarray, cu: np.ndarray) -> Batch:
        pin = self.device.type == "cuda"
        x = torch.from_numpy(s[:-1]).view(1, -1)
        y = torch.from_numpy(s[1:]).view(1, -1)
        c = torch.from_numpy(cu)
        if pin:
            x, y, c = x.pin_memory(), y.pin_memory(), c.pin_memory()
        return Batch(x, y, c, self.max_doc_len)

    def _worker(self) -> None:
        try:
            for b in self._gen:
                while not self._stop.is_set():
                    try:
                        self._queue.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # surfaced in next_batch
            self._queue.put(e)

    # ---- public

    def next_batch(self) -> Batch:
        """The next batch of this rank, on ``device``."""
        if self._prefetch == 0:
            return next(self._gen).to(self.device)
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self._prefetch)
            self._thread = threading.Thread(target=self._worker, name="golf_fast-loader", daemon=True)
            self._thread.start()
        b = self._queue.get()
        if isinstance(b, BaseException):
            raise b
        return b.to(self.device)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "DocumentPackingLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
