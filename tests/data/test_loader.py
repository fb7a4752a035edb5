"""Document-packing loader: per-rank slices, cu_seqlens from BOS, shard changes, determinism."""

import numpy as np
import pytest

from golf_fast.data.loader import DocumentPackingLoader, cu_seqlens_from_bos
from golf_fast.data.shards import write_shard


def test_cu_seqlens_from_bos():
    x = np.array([7, 1, 5, 5, 5, 5, 5, 1, 4, 4])
    cu = cu_seqlens_from_bos(x, bos_id=1, max_doc_len=3, bucket=1)
    assert cu.dtype == np.int32
    assert cu.tolist() == [0, 1, 4, 7, 10]           # [7] [1 5 5] [5 5 5]->cut at 3 ... [1 4 4]
    cu = cu_seqlens_from_bos(x, bos_id=1, max_doc_len=100, bucket=8)
    assert cu.tolist() == [0, 1, 7, 10, 10, 10, 10, 10]
    cu = cu_seqlens_from_bos(np.array([1, 2, 3, 4]), 1, 100, bucket=1, starts=np.array([2]))
    assert cu.tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="x"):
        cu_seqlens_from_bos(np.zeros(0), 1, 4)


def _docs_shard(path, rng, n_docs):
    parts = [np.concatenate([[1], rng.integers(4, 100, size=rng.integers(1, 30))]) for _ in range(n_docs)]
    toks = np.concatenate([[50, 51]] + parts)  # a partial doc before the first BOS is skipped
    write_shard(path, toks)
    return toks


@pytest.mark.parametrize("prefetch", [0, 2])
def test_rank_slices_and_shard_change(tmp_path, prefetch):
    rng = np.random.default_rng()
    t0 = _docs_shard(tmp_path / "d_train_000000.bin", rng, 40)
    t1 = _docs_shard(tmp_path / "d_train_000001.bin", rng, 40)
    files = sorted(tmp_path.glob("*.bin"))
    L, world = 16, 2
    loaders = [DocumentPackingLoader(files, tokens_per_rank=L, rank=r, world_size=world, max_doc_len=8,
                                     bucket=4, prefetch=prefetch) for r in range(world)]
    need = world * (L + 1)
    expected = []
    for toks in (t0, t1, t0):  # wraps around after the last shard
        cur = 2  # first BOS
        while cur + need <= toks.size:
            expected.append(toks[cur:cur + need])
            cur += need
    for step, exp in enumerate(expected):
        for r, ld in enumerate(loaders):
            b = ld.next_batch()
            s = exp[r * (L + 1):(r + 1) * (L + 1)]
            assert b.x.shape == (1, L) and b.x.dtype.is_floating_point is False
            assert b.x[0].tolist() == s[:-1].tolist() and b.y[0].tolist() == s[1:].tolist(), step
            cu = b.cu_seqlens.numpy()
            assert cu.size % 4 == 0 and cu[0] == 0 and cu[-1] == L and np.all(np.diff(cu) >= 0)
            assert np.diff(cu).max() <= 8
            # every BOS of x starts a segment
            assert set(np.flatnonzero(s[:-1] == 1)) <= set(cu.tolist())
    for ld in loaders:
        ld.close()


def test_deterministic_and_errors(tmp_path):
    rng = np.random.default_rng()
    for i in range(3):
        _docs_shard(tmp_path / f"d_train_{i:06d}.bin", rng, 30)
    files = sorted(tmp_path.glob("*.bin"))

    def run():
        with DocumentPackingLoader(files, tokens_per_rank=32, seed=3, shuffle_shards=True, prefetch=1) as ld:
            return [ld.next_batch().x.clone() for _ in range(25)]

    a, b = run(), run()
    assert all((x == y).all() for x, y in zip(a, b))
    with pytest.raises(ValueError, match="no shard"):
        DocumentPackingLoader(files, tokens_per_rank=100000).next_batch()
    with pytest.raises(ValueError, match="rank"):
        DocumentPackingLoader(files, tokens_per_rank=8, rank=2, world_size=2)
    with pytest.raises(ValueError, match="files"):
        DocumentPackingLoader([], tokens_per_rank=8)
