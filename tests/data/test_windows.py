"""The records' random-window calibration reader: windows are real slices, rank shares, every
window of a pass used once, deterministic per (seed, rank)."""

import numpy as np
import pytest
import torch

from golf_fast.data.shards import write_shard
from golf_fast.data.windows import RandomWindowLoader


@pytest.fixture
def shards(tmp_path):
    rng = np.random.default_rng(1520)
    files = []
    for i, n in enumerate((1000, 700, 333)):
        f = tmp_path / f"data_train_{i:06d}.bin"
        write_shard(f, rng.integers(0, 60000, size=n))
        files.append(f)
    return files


def _index(files):
    from golf_fast.data.shards import read_shard
    return [np.asarray(read_shard(f)).astype(np.int64) for f in files]


def test_windows_are_slices_and_cover_a_pass_without_repeats(shards):
    seq = 32
    ld = RandomWindowLoader(shards, seq_len=seq, windows=5)
    toks = _index(shards)
    n_windows = sum(len(s) for s in ld.starts)
    seen = []
    while len(seen) < n_windows:
        b = ld.next_batch()
        assert b.x.shape == (5, seq) and torch.equal(b.x[:, 1:], b.y[:, :-1])
        assert torch.equal(b.cu_seqlens, torch.arange(0, 6 * seq, seq, dtype=torch.int32))
        for row in b.x.numpy():
            hits = [(i, int(p)) for i, t in enumerate(toks)
                    for p in np.flatnonzero(t[:t.size - seq] == row[0]) if np.array_equal(t[p:p + seq], row)]
            assert hits, "every window is a slice of a shard"
            seen.append(hits[0])
    first_pass = seen[:n_windows]
    assert len(set(first_pass)) == n_windows  # no window twice within a pass
    phases = {(i, p % seq) for i, p in first_pass}
    assert len({i for i, _ in phases}) == 3 and len(phases) == 3  # one phase per shard


def test_rank_shares_and_determinism(shards):
    a = RandomWindowLoader(shards, seq_len=16, windows=4, rank=1, world_size=2, seed=7)
    assert a.files == [str(shards[1])]
    b = RandomWindowLoader(shards, seq_len=16, windows=4, rank=1, world_size=2, seed=7)
    assert torch.equal(a.next_batch().x, b.next_batch().x)
    c = RandomWindowLoader(shards, seq_len=16, windows=4, rank=1, world_size=2, seed=8)
    assert not torch.equal(a.next_batch().x, c.next_batch().x)
    lone = RandomWindowLoader(shards[:1], seq_len=16, windows=2, rank=1, world_size=2)
    assert lone.files == [str(shards[0])]  # an empty share falls back to every file


def test_bad_arguments(shards):
    with pytest.raises(ValueError, match="files"):
        RandomWindowLoader([], seq_len=8, windows=1)
    with pytest.raises(ValueError, match="seq_len"):
        RandomWindowLoader(shards, seq_len=0, windows=1)
    with pytest.raises(ValueError, match="windows"):
        RandomWindowLoader(shards, seq_len=8, windows=0)
    with pytest.raises(ValueError, match="rank"):
        RandomWindowLoader(shards, seq_len=8, windows=1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="no shard holds"):
        RandomWindowLoader(shards, seq_len=5000, windows=1)
