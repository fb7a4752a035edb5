"""val_bpb on CaseOps data: bytes from the sidecar equal an independent loop over the ORIGINAL text."""

import math

import numpy as np
import pytest
import torch

from golf_fast.data import caseops as co
from golf_fast.data.build import train_tokenizer
from golf_fast.data.byte_table import TokenByteTable, load_sentencepiece
from golf_fast.eval import evaluate
from golf_fast.eval.bpb import BpbAccumulator
from golf_fast.model.config import ModelConfig
from model_factories import randomized_gpt

DOCS = ["The NASA launch of the iPhone at McDonald's.", "A quick Brown fox; HTTPServer getURL OK.",
        f"Literal {co.TITLE} and {co.ESC} stay, Café ÉCOLE naïve 😀.", "plain lowercase text, nothing else."]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    sp = load_sentencepiece(train_tokenizer([co.encode(d) for d in DOCS * 6], tmp_path_factory.mktemp("spm") / "t",
                                            vocab_size=330, num_threads=1, user_defined_symbols=co.CONTROLS))
    cfg = ModelConfig(vocab_size=330, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=1,
                      loop_end=1, parallel_start_layer=2, max_seqlen=128, rope_dims=8)
    model = randomized_gpt(cfg, 15)
    rng = np.random.default_rng(15)
    docs = [DOCS[i] for i in rng.integers(0, len(DOCS), size=6)]
    pairs = [co.encode_document(sp, d) for d in docs]
    # the stream ends with the BOS of a next document, so every prediction of the 6 documents is scored
    toks = np.concatenate([t for t, _ in pairs] + [np.array([1], np.uint16)])
    nb = np.concatenate([b for _, b in pairs] + [np.array([0], np.uint16)])
    return sp, model, docs, toks, nb


def _independent(model, sp, docs):
    """Σ nats from running each document alone (float64 log-softmax) and Σ UTF-8 bytes of the originals."""
    nats = 0.0
    with torch.no_grad():
        for d in docs:
            ids = [1] + sp.encode(co.encode(d)) + [1]  # BOS, the document, the next document's BOS
            logits = model.logits(torch.tensor(ids[:-1])[None])[0].double()
            nats += float(-torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
    return nats, sum(len(d.encode("utf-8")) for d in docs)


def test_caseops_bpb_equals_independent_loop_over_original_text(setup):
    sp, model, docs, toks, nb = setup
    nats, nbytes = _independent(model, sp, docs)
    T = toks.size - 1
    r = evaluate(model, toks, None, seq_len=T, batch_seqs=1, val_bytes=nb)
    assert r.tokens == T and r.bytes == nbytes
    assert r.val_bpb == pytest.approx(nats / (math.log(2) * nbytes), rel=1e-6)
    # the lookup tables charge each control piece 3 bytes: a different (wrong) denominator
    table = TokenByteTable.from_sentencepiece(sp, vocab_size=330)
    wrong = evaluate(model, toks, table, seq_len=T, batch_seqs=1)
    assert wrong.bytes > nbytes and wrong.val_bpb < r.val_bpb * 0.99
    # sliding windows (context cut by the windows, so other nats) score the same bytes exactly once
    s = evaluate(model, toks, table, seq_len=64, stride=16, batch_seqs=4, val_bytes=nb)
    T64 = ((toks.size - 1) // 64) * 64
    assert s.tokens == T64 and s.bytes == int(nb[1:T64 + 1].sum())


def test_sidecar_bytes_are_split_exactly_across_ranks(setup):
    sp, model, docs, toks, nb = setup
    one = evaluate(model, toks, None, seq_len=32, batch_seqs=2, val_bytes=nb)
    parts = [evaluate(model, toks, None, seq_len=32, batch_seqs=2, val_bytes=nb, rank=r, world_size=3)
             for r in range(3)]
    assert sum(p.bytes for p in parts) == one.bytes and sum(p.tokens for p in parts) == one.tokens


def test_bad_sidecar_arguments(setup):
    sp, model, docs, toks, nb = setup
    with pytest.raises(ValueError, match="val_bytes"):
        evaluate(model, toks, None, seq_len=32, val_bytes=nb[:-1])
    with pytest.raises(ValueError, match="table"):
        evaluate(model, toks, None, seq_len=32)
    acc = BpbAccumulator(None, torch.device("cpu"))
    with pytest.raises(ValueError, match="target_bytes"):
        acc.add(torch.ones(3), torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target_bytes"):
        acc.add(torch.ones(3), torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long),
                target_bytes=torch.ones(3))
