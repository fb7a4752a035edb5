"""Bad data gets one clear error (issue 13): folders and devices are not "missing", token ids
outside the vocabulary are found per shard, and the CLIs print one line and exit 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from golf_fast.cli import main as cli_main
from golf_fast.data.errors import DataError
from golf_fast.data.loader import DocumentPackingLoader
from golf_fast.data.shards import check_token_ids, max_token_id, read_header, write_shard


def test_paths_that_are_not_shard_files(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_header(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(DataError, match="not a regular file"):
            read_header("/dev/zero")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_header(tmp_path / "absent.bin")


def test_token_ids_outside_the_vocabulary(tmp_path):
    rng = np.random.default_rng(1341)
    good, bad = tmp_path / "a_train_000.bin", tmp_path / "a_train_001.bin"
    write_shard(good, np.concatenate([[1], rng.integers(2, 100, 4000)]))
    write_shard(bad, np.concatenate([[1], rng.integers(2, 100, 4000), [150]]))
    assert max_token_id(bad) == 150 and max_token_id(good) < 100
    check_token_ids(np.asarray([0, 99]), 100, "x")
    with pytest.raises(DataError, match="token id 100 is outside the model's vocabulary of 100"):
        check_token_ids(np.asarray([0, 100]), 100, "x")
    loader = DocumentPackingLoader([good, bad], tokens_per_rank=512, vocab_size=100, prefetch=0, max_doc_len=64)
    for _ in range(7):  # the first shard holds 7 steps of 513 tokens
        loader.next_batch()
    with pytest.raises(DataError, match=r"a_train_001\.bin: token id 150"):
        loader.next_batch()


def test_data_cli_prints_one_line(tmp_path, capsys):
    (tmp_path / "x_train_000.bin").mkdir()
    assert cli_main(["data", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("golf-fast data:") and "is a folder" in err and "\n" not in err
    assert cli_main(["data", "info", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a directory" in err and "\n" not in err
    assert cli_main(["data", "build", "--input", "/dev/zero", "--vocab-size", "300", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a regular file" in err and "\n" not in err


def test_quantize_cli_bad_weights_file(tmp_path, capsys):
    code = tmp_path / "train_gpt.py"
    code.write_text("print('hi')\n")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    for weights, needle in ((tmp_path, "not a regular file"), (junk, "not a loadable state_dict"),
                            (tmp_path / "absent.pt", "cannot open")):
        assert cli_main(["quantize", "--weights", str(weights), "--code", str(code), "--out",
                         str(tmp_path / "o.gfa"), "--codec", "lzma-9"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("golf-fast quantize:") and needle in err and "\n" not in err, err


def test_calibration_windows_check_the_vocabulary(tmp_path):
    from golf_fast.data.windows import RandomWindowLoader

    shard = tmp_path / "a_train_000.bin"
    write_shard(shard, np.full(2000, 120))
    loader = RandomWindowLoader([shard], seq_len=64, windows=2, vocab_size=100)
    with pytest.raises(DataError, match="token id 120 is outside"):
        loader.next_batch()
    assert RandomWindowLoader([shard], seq_len=64, windows=2, vocab_size=121).next_batch().x.max() == 120
