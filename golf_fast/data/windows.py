"""Random fixed-length windows across training shards: the records' GPTQ calibration reader
(R0810/R0611 ``ShuffledSequenceLoader``, parameter_golf.md §1.4, §5.1).

Rank ``r`` of ``world_size`` owns ``files[r::world_size]`` (all files when that share is empty).
Each shard gets a random phase in ``[0, min(seq_len − 1, n − seq_len − 1)]`` and a random
permutation of its window starts ``phase + k·seq_len`` (``k < (n − 1 − phase) // seq_len``).
Each window of a batch picks a shard with probability ∝ its remaining windows and pops the last
start of that shard's list; when every shard is used up, all are reset (new phases and
permutations). A window is ``seq_len + 1`` tokens: ``x = w[:-1]``, ``y = w[1:]``.

There is no document isolation (a window may span a BOS), like the record: ``cu_seqlens`` has one
segment per row. The RNG is ``PCG64(rank)`` as in the record when ``seed`` is None, else
``PCG64([seed, rank])``.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from golf_fast.data.loader import Batch
from golf_fast.data.shards import check_token_ids, read_header, read_shard


class RandomWindowLoader:
    """Batches of ``windows`` random (``seq_len``)-token rows from this rank's training shards
    (``vocab_size``: when given, every window's ids are checked against it, a ``DataError``)."""

    def __init__(self, files: Sequence[os.PathLike], *, seq_len: int, windows: int, rank: int = 0,
                 world_size: int = 1, seed: Optional[int] = None, device: Optional[torch.device] = None,
                 vocab_size: Optional[int] = None) -> None:
        if not files:
            raise ValueError("files: expected at least one train shard")
        if not (isinstance(seq_len, int) and seq_len >= 1):
            raise ValueError(f"seq_len: expected a positive int, got {seq_len!r}")
        if not (isinstance(windows, int) and windows >= 1):
            raise ValueError(f"windows: expected a positive int, got {windows!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank/world_size: expected 0 <= rank < world_size, got {rank}/{world_size}")
        if vocab_size is not None and (not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1):
            raise ValueError(f"vocab_size: expected an int >= 1 or None, got {vocab_size!r}")
        self.vocab_size = vocab_size
        mine = list(files)[rank::world_size] or list(files)
        self.files = [str(f) for f in mine]
        self.seq_len, self.windows = seq_len, windows
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.rng = np.random.Generator(np.random.PCG64(rank if seed is None else [seed, rank]))
        self.num_tokens = [read_header(f) for f in self.files]
        if max(self.num_tokens) < seq_len + 1:
            raise ValueError(f"files: no shard holds one window of seq_len + 1 = {seq_len + 1} tokens")
        self._maps: dict[int, np.ndarray] = {}  # shard index -> its token memmap, opened on first use
        self.starts: list[list[int]] = [[] for _ in self.files]
        for si in range(len(self.files)):
            self._reset_shard(si)

    def _reset_shard(self, si: int) -> None:
        n = self.num_tokens[si]
        max_phase = min(self.seq_len - 1, max(0, n - self.seq_len - 1))
        phase = int(self.rng.integers(max_phase + 1)) if max_phase > 0 else 0
        count = max(0, (n - 1 - phase) // self.seq_len)
        order = self.rng.permutation(count)
        self.starts[si] = (phase + order * self.seq_len).tolist()

    def next_batch(self) -> Batch:
        """x, y (windows, seq_len) int64 and one ``cu_seqlens`` segment per row, on ``device``."""
        T = self.seq_len
        x = torch.empty((self.windows, T), dtype=torch.int64)
        y = torch.empty((self.windows, T), dtype=torch.int64)
        remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
        for bi in range(self.windows):
            total = remaining.sum()
            if total <= 0:
                for si in range(len(self.files)):
                    self._reset_shard(si)
                remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
                total = remaining.sum()
            si = int(self.rng.choice(len(self.files), p=remaining / total))
            start = self.starts[si].pop()
            remaining[si] -= 1
            if si not in self._maps:
                self._maps[si] = read_shard(self.files[si])
            raw = self._maps[si][start:start + T + 1]
            if self.vocab_size is not None:  # ids past the vocabulary: a clear error, not an IndexError later
                check_token_ids(raw, self.vocab_size, f"train shard {self.files[si]}")
            w = torch.from_numpy(np.array(raw, dtype=np.int64))
            x[bi], y[bi] = w[:-1], w[1:]
        cu = torch.arange(0, (self.windows + 1) * T, T, dtype=torch.int32)
        return Batch(x, y, cu, T).to(self.device)

    def close(self) -> None:
        """Drop the open shard maps (the interface of :class:`golf_fast.data.loader.DocumentPackingLoader`)."""
        self._maps.clear()
