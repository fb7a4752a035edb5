"""Byte accounting (parameter_golf.md §2.1) on a SentencePiece model trained here on tiny text."""

import pytest
import torch

from golf_fast.data.build import train_tokenizer
from golf_fast.data.byte_table import TokenByteTable, load_sentencepiece

TEXT = [
    "the cat sat on the mat. the dog sat on the log.",
    "a quick brown fox jumps over the lazy dog 12345 times.",
    "héllo wörld, the café serves crème brûlée to the cat.",
] * 20


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
    path = train_tokenizer(TEXT, tmp_path_factory.mktemp("spm") / "tok", vocab_size=320)
    return load_sentencepiece(path)


@pytest.fixture(scope="module")
def table(sp):
    return TokenByteTable.from_sentencepiece(sp)


def _count(table, ids):
    ids = torch.tensor(ids)
    return table.count_bytes(ids[:-1], ids[1:])


def test_hand_counted_pieces(sp, table):
    bos = sp.bos_id()
    assert bos == 1 and sp.pad_id() == 0 and sp.eos_id() == 2 and sp.unk_id() == 3
    for special in (0, 1, 2, 3):  # control / unknown: boundary, 0 bytes
        assert bool(table.is_boundary[special]) and int(table.base_bytes[special]) == 0
    the = sp.piece_to_id("▁the")
    assert the != sp.unk_id(), "the tokenizer learned '▁the'"
    cat = sp.piece_to_id("cat") if sp.piece_to_id("cat") != sp.unk_id() else None
    # '▁the' = one space + 't','h','e': 3 bytes after BOS (space not charged), 4 after a word.
    assert int(table.base_bytes[the]) == 3 and bool(table.has_space[the])
    assert _count(table, [bos, the]).tolist() == [3]
    assert _count(table, [the, the]).tolist() == [4]
    if cat is not None:
        assert _count(table, [bos, cat]).tolist() == [3]
    # byte-fallback piece <0xF0>: exactly one byte, never a space
    b = sp.piece_to_id("<0xF0>")
    assert sp.is_byte(b) and int(table.base_bytes[b]) == 1 and not bool(table.has_space[b])
    # 'é' is two UTF-8 bytes when it is one piece
    e = sp.piece_to_id("é")
    if e != sp.unk_id():
        assert int(table.base_bytes[e]) == 2


@pytest.mark.parametrize("text,expected", [
    ("the cat sat", 11),            # plain ASCII: every byte, spaces included
    ("héllo wörld", 13),            # é and ö are 2 bytes each
    ("the 🦜 sat", 12),             # 3 + 1 + parrot (4 bytes, 4 byte-fallback pieces) + 1 + 3
    (" the cat", 7),                # a leading space right after BOS is not charged (8 − 1)
])
def test_document_totals(sp, table, text, expected):
    ids = [sp.bos_id()] + sp.encode(text)
    assert int(_count(table, ids).sum()) == expected


def test_padding_to_model_vocab_and_errors(sp, tmp_path):
    t = TokenByteTable.from_sentencepiece(sp, vocab_size=400)
    assert t.size == 400 and bool(t.is_boundary[399]) and int(t.base_bytes[399]) == 0
    with pytest.raises(ValueError, match="target_ids"):
        t.count_bytes(torch.tensor([1]), torch.tensor([400]))
    with pytest.raises(ValueError, match="prev_ids"):
        t.count_bytes(torch.tensor([1, 2]), torch.tensor([3]))
    with pytest.raises(TypeError, match="prev_ids"):
        t.count_bytes(torch.tensor([1.0]), torch.tensor([3]))
    with pytest.raises(FileNotFoundError, match="model"):
        TokenByteTable.from_sentencepiece(tmp_path / "none.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model"):
        TokenByteTable.from_sentencepiece(bad)
