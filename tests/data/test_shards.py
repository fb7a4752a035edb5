"""Shard format: round trip, header fields, corrupted and truncated files name the file."""

import numpy as np
import pytest

from golf_fast.data.shards import (HEADER_BYTES, MAGIC, ShardFormatError, list_shards, load_tokens, read_header,
                                   read_shard, write_shard)


def test_round_trip_exact_bytes(tmp_path):
    rng = np.random.default_rng()
    toks = rng.integers(0, 2**16, size=1237, dtype=np.int64)
    p = tmp_path / "x_train_000000.bin"
    assert write_shard(p, toks) == 1237
    raw = p.read_bytes()
    assert len(raw) == 1024 + 2 * 1237
    header = np.frombuffer(raw[:1024], dtype="<i4")
    assert (header[0], header[1], header[2]) == (20240520, 1, 1237) and not header[3:].any()
    assert np.array_equal(np.frombuffer(raw[1024:], dtype="<u2"), toks)
    got = read_shard(p)
    assert got.dtype == np.uint16 and np.array_equal(got, toks)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary


def test_empty_shard(tmp_path):
    p = tmp_path / "e_val_000000.bin"
    write_shard(p, np.zeros(0, dtype=np.int64))
    assert read_shard(p).size == 0


@pytest.mark.parametrize("field,value,msg", [(0, 1234, "magic"), (1, 2, "version")])
def test_bad_header_names_file(tmp_path, field, value, msg):
    p = tmp_path / "bad_train_000000.bin"
    write_shard(p, np.arange(10))
    raw = bytearray(p.read_bytes())
    raw[4 * field:4 * field + 4] = np.array([value], dtype="<i4").tobytes()
    p.write_bytes(bytes(raw))
    with pytest.raises(ShardFormatError, match=msg) as e:
        read_shard(p)
    assert str(p) in str(e.value)


def test_truncated_and_too_long(tmp_path):
    p = tmp_path / "t_train_000000.bin"
    write_shard(p, np.arange(100))
    raw = p.read_bytes()
    p.write_bytes(raw[:-3])
    with pytest.raises(ShardFormatError, match="truncated") as e:
        read_header(p)
    assert str(p) in str(e.value)
    p.write_bytes(raw + b"\0\0")
    with pytest.raises(ShardFormatError, match="100 tokens"):
        read_shard(p)
    p.write_bytes(raw[:100])
    with pytest.raises(ShardFormatError, match="shorter"):
        read_shard(p)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="tokens"):
        write_shard(tmp_path / "a.bin", np.array([0, 70000]))
    with pytest.raises(ValueError, match="tokens"):
        write_shard(tmp_path / "a.bin", np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="tokens"):
        write_shard(tmp_path / "a.bin", np.zeros(3, dtype=np.float32))
    with pytest.raises(FileNotFoundError, match="missing"):
        read_shard(tmp_path / "missing.bin")


def test_list_and_load(tmp_path):
    write_shard(tmp_path / "d_val_000001.bin", [5, 6])
    write_shard(tmp_path / "d_val_000000.bin", [1, 2, 3])
    write_shard(tmp_path / "d_val_bytes_000000.bin", [9, 9, 9])
    write_shard(tmp_path / "d_train_000000.bin", [1])
    files = list_shards(tmp_path, "val")
    assert [f.name for f in files] == ["d_val_000000.bin", "d_val_000001.bin"]
    assert load_tokens(files).tolist() == [1, 2, 3, 5, 6]
    with pytest.raises(ValueError, match="split"):
        list_shards(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="no"):
        list_shards(tmp_path / "nothing", "train")
    assert HEADER_BYTES == 1024 and MAGIC == 20240520
