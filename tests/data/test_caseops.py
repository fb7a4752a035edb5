"""CaseOps: the transform round-trips real text, decode rejects malformed input, the byte sidecar
sums to each document's UTF-8 length, and ``data build --caseops`` writes aligned sidecars."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from golf_fast.cli import main
from golf_fast.data import caseops as co
from golf_fast.data.build import build_dataset, train_tokenizer
from golf_fast.data.byte_table import load_sentencepiece
from golf_fast.data.shards import list_shards, load_tokens, load_val_bytes, read_shard, sidecar_path, write_shard

SHARED_MODEL = Path("/work/shared/data/fineweb_8192_bpe_caseops_v1.model")

# every case of the rules, on purpose: lower, Title, one-letter A, ALLCAPS, mixed with and without a
# capital first letter, each literal control character, non-ASCII letters next to ASCII ones
HAND = [
    "The NASA launch of the iPhone at McDonald's: A I x.",
    "aBC DeF ABc OK o'CLOCK x1Y2 HTTPServer getURL",
    f"literal controls {co.TITLE}{co.ALLCAPS} and {co.CAPNEXT}X {co.ESC}{co.ESC} inside{co.TITLE}Word",
    "Café ÉCOLE naïve Ünïcode 😀 Zürich — 12345 tabs\tand\nnewlines",
]


def _real_docs(n=60):
    """Real English text that ships with Python: the pydoc help topics (capitals, code, symbols)."""
    from pydoc_data.topics import topics

    return [topics[k].strip() for k in sorted(topics)[:n] if topics[k].strip()]


@pytest.fixture(scope="module")
def docs():
    return HAND + _real_docs()


@pytest.fixture(scope="module")
def sp(tmp_path_factory, docs):
    path = train_tokenizer([co.encode(d) for d in docs], tmp_path_factory.mktemp("spm") / "tok",
                           vocab_size=400, num_threads=1, user_defined_symbols=co.CONTROLS)
    return load_sentencepiece(path)


def test_round_trip_covers_every_marker_and_escape(docs):
    enc = [co.encode(d) for d in docs]
    assert all(co.decode(e) == d for e, d in zip(enc, docs))
    joined = "".join(enc)
    for ch in co.CONTROLS:
        assert ch in joined
    for ch in co.CONTROLS:  # each literal control character is escaped
        assert co.ESC + ch in co.encode(f"a{ch}b")
    assert co.encode("The NASA iPhone A McDonald aBC") == (
        f"{co.TITLE}the {co.ALLCAPS}nasa i{co.CAPNEXT}phone {co.TITLE}a {co.TITLE}mc{co.CAPNEXT}donald "
        f"a{co.CAPNEXT}b{co.CAPNEXT}c")
    assert co.encode("naïve Ünïcode") == "naïve Ün\u00efcode"  # non-ASCII untouched, 'n' starts a new word
    assert sum(co.encode(d) != d for d in _real_docs()) > 10


@pytest.mark.parametrize("bad, why", [
    (f"{co.TITLE} x", "not followed by an ASCII letter"),
    (f"a{co.TITLE}b", "inside a word"),
    (f"a{co.ALLCAPS}b", "inside a word"),
    (f"a{co.CAPNEXT}{co.CAPNEXT}b", "duplicate CAPNEXT"),
    (f"{co.CAPNEXT}ab", "CAPNEXT outside a word"),
    (f"ab{co.ESC}", "dangling ESC"),
    (f"ab {co.TITLE}", "dangling capitalization"),
    (f"a{co.CAPNEXT}", "dangling capitalization"),
    (f"{co.ESC}a", "ESC must be followed by a control character"),
    (f"{co.TITLE}{co.ESC}{co.TITLE}", "cannot start a capitalized word"),
])
def test_decode_rejects_malformed(bad, why):
    with pytest.raises(co.CaseOpsError, match=why):
        co.decode(bad)


def test_bad_arguments():
    with pytest.raises(TypeError, match="text"):
        co.encode(b"bytes")
    with pytest.raises(TypeError, match="text"):
        co.decode(3)
    with pytest.raises(ValueError, match="val_shard"):
        sidecar_path("data_train_000000.bin")


def test_tokenizer_has_the_controls_at_ids_4_to_7(sp):
    assert [sp.id_to_piece(i) for i in range(4, 8)] == list(co.CONTROLS)
    co.check_tokenizer(sp)


def _ws(text):
    return " ".join(text.split())


def _check_sidecar(sp, docs):
    for d in docs:
        tok, nb = co.encode_document(sp, d)
        assert tok[0] == 1 and nb[0] == 0 and tok.shape == nb.shape
        assert list(tok[1:]) == sp.encode(co.encode(d))
        assert int(nb.sum()) == len(d.encode("utf-8")), d[:60]
        # marker pieces are 0 bytes; an escaped literal control character is its 3 UTF-8 bytes
        on_controls = nb[1:][np.isin(tok[1:], [sp.piece_to_id(c) for c in co.CONTROLS])]
        assert int(on_controls.sum()) == 3 * sum(d.count(c) for c in co.CONTROLS)
        # the pieces' surfaces tile the transformed document, which decodes to the original
        ids, surfaces = co.piece_surfaces(sp, co.encode(d))
        assert co.decode("".join(surfaces)) == d and ids == list(tok[1:])
    # SentencePiece's NFKC folds whitespace; the tokens decode to the same words
    assert _ws(co.decode(sp.decode(tok[1:].tolist()))) == _ws(d) or "…" in d


def test_sidecar_bytes_sum_to_original_utf8_length(sp, docs):
    _check_sidecar(sp, docs)
    # the lookup tables would charge each control piece 3 bytes: the sidecar total is smaller
    d = HAND[0]
    tok, nb = co.encode_document(sp, d)
    assert sum(len(sp.id_to_piece(int(t)).replace("\u2581", " ").encode()) for t in tok[1:]) > int(nb.sum())


@pytest.mark.skipif(not SHARED_MODEL.is_file(), reason="the record's CaseOps tokenizer is not on this machine")
def test_sidecar_with_the_records_tokenizer(docs):
    sp = load_sentencepiece(str(SHARED_MODEL))
    assert [sp.id_to_piece(i) for i in range(4, 8)] == list(co.CONTROLS)
    assert sp.encode(f"{co.TITLE}the {co.ALLCAPS}nasa launch", out_type=str) == \
        [co.TITLE, "the", "\u2581", co.ALLCAPS, "nas", "a", "\u2581launch"]
    _check_sidecar(sp, docs)


def test_original_byte_counts_carry_state_across_pieces():
    surfaces = [co.TITLE, "th", f"e {co.ALLCAPS}", "na", f"sa{co.ESC}", co.TITLE, " é"]
    assert co.original_byte_counts(surfaces) == [0, 2, 2, 2, 2, 3, 3]
    with pytest.raises(co.CaseOpsError, match="dangling"):
        co.original_byte_counts(["a ", co.TITLE])


def test_build_caseops_writes_aligned_sidecars(tmp_path, docs, capsys):
    src = tmp_path / "docs.jsonl"
    src.write_text("\n".join(json.dumps({"text": d}) for d in docs))
    out = tmp_path / "ds"
    assert main(["data", "build", "--input", str(src), "--vocab-size", "400", "--out", str(out),
                 "--val-docs", "12", "--shard-tokens", "3000", "--caseops"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["text_transform"] == co.TRANSFORM_NAME and info["val_shards"] >= 2
    val_files = list_shards(out, "val")
    assert [f.name for f in val_files][:2] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    for f in val_files:
        assert sidecar_path(f).name == f.name.replace("_val_", "_val_bytes_")
        assert read_shard(sidecar_path(f)).size == read_shard(f).size
    toks, nb = load_tokens(val_files), load_val_bytes(val_files)
    starts = list(np.flatnonzero(toks == 1)) + [toks.size]
    assert len(starts) - 1 == 12
    for i in range(12):  # per document: bytes sum to the UTF-8 length, tokens decode to the original
        lo, hi = starts[i], starts[i + 1]
        assert int(nb[lo:hi].sum()) == len(docs[i].encode("utf-8"))
    sp = load_sentencepiece(str(out / "tokenizer.model"))
    assert _ws(co.decode(sp.decode(toks[starts[3] + 1:starts[4]].tolist()))) == _ws(docs[3])
    train = load_tokens(list_shards(out, "train"))
    assert int((train == 1).sum()) == len(docs) - 12
    assert not list(out.glob("*_train_bytes_*"))  # sidecars only for validation
    assert main(["data", "info", str(out)]) == 0
    assert "val byte sidecars" in capsys.readouterr().out


def test_partial_or_misaligned_sidecars_are_errors(tmp_path):
    a, b = tmp_path / "x_val_000000.bin", tmp_path / "x_val_000001.bin"
    write_shard(a, np.arange(5))
    write_shard(b, np.arange(4))
    assert load_val_bytes([a, b]) is None
    write_shard(sidecar_path(a), np.ones(5, np.uint16))
    with pytest.raises(FileNotFoundError, match="missing"):
        load_val_bytes([a, b])
    write_shard(sidecar_path(b), np.ones(3, np.uint16))
    with pytest.raises(ValueError, match="3 byte counts for the 4 tokens"):
        load_val_bytes([a, b])
    os.remove(sidecar_path(b))
    write_shard(sidecar_path(b), np.ones(4, np.uint16))
    assert load_val_bytes([a, b]).sum() == 9
