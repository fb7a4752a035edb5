"""``golf-fast data build`` / ``info`` and the corpus builder's split and document framing."""

import json

import numpy as np
import pytest

from golf_fast.cli import main
from golf_fast.data.build import read_documents
from golf_fast.data.corpus import stdlib_documents
from golf_fast.data.shards import list_shards, read_shard


def test_build_from_text_and_jsonl(tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("\n\n".join(f"document number {i} says hello to the world" for i in range(40)))
    jl = tmp_path / "b.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"json doc {i} with café"}) for i in range(10)))
    out = tmp_path / "ds"
    assert main(["data", "build", "--input", str(txt), str(jl), "--vocab-size", "300", "--out", str(out),
                 "--val-docs", "5", "--shard-tokens", "100"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 50 and info["val_docs"] == 5 and info["train_shards"] > 1
    val = np.concatenate([read_shard(f) for f in list_shards(out, "val")])
    assert int((val == 1).sum()) == 5 and val[0] == 1          # one BOS per document, docs start with BOS
    train = np.concatenate([read_shard(f) for f in list_shards(out, "train")])
    assert int((train == 1).sum()) == 45 and info["train_tokens"] == train.size
    assert all(read_shard(f).size <= 100 for f in list_shards(out, "train"))
    assert (out / "tokenizer.model").is_file() and (out / "COMPLETE").is_file()
    assert main(["data", "info", str(out)]) == 0
    assert f"val: {info['val_shards']} shards, {info['val_tokens']:,} tokens" in capsys.readouterr().out


def test_read_documents_errors(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"text": "ok"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        read_documents([bad])
    with pytest.raises(FileNotFoundError, match="input"):
        read_documents([tmp_path / "missing.txt"])


def test_stdlib_documents_are_parsed_not_imported(tmp_path):
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "pkg" / "mod.py").write_text('"""Module doc."""\nraise SystemExit("imported!")\n'
                                        'def f():\n    """Function doc."""\n')
    (lib / "test").mkdir()
    (lib / "test" / "t.py").write_text('"""Test doc (left out)."""\n')
    (lib / "py2.py").write_text('print "python 2"\n')
    docs = stdlib_documents(lib)
    assert "Module doc." in docs and "Function doc." in docs and "Test doc (left out)." not in docs
