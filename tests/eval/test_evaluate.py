"""val_bpb against an independent per-document loop; sliding windows score every token once."""

import math

import numpy as np
import pytest
import torch

from golf_fast.data.build import train_tokenizer
from golf_fast.data.byte_table import TokenByteTable, load_sentencepiece
from golf_fast.eval import evaluate, sliding_window_plan, truncate_val
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT

TEXT = ["the cat sat on the mat. the dog sat on the log.", "héllo wörld, the café serves crème brûlée.",
        "a quick brown fox jumps over the lazy dog 12345 times 🦜.", " leading space and   runs of spaces"] * 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    sp = load_sentencepiece(train_tokenizer(TEXT, tmp_path_factory.mktemp("spm") / "tok", vocab_size=320))
    cfg = ModelConfig(vocab_size=320, num_layers=4, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=1,
                      loop_end=2, parallel_start_layer=3, max_seqlen=64, rope_dims=8)
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.looping_active = True
    rng = np.random.default_rng(0)
    docs = [TEXT[i] for i in rng.integers(0, len(TEXT), size=8)]
    val = np.concatenate([[1] + sp.encode(d) for d in docs]).astype(np.uint16)
    return sp, model, val, TokenByteTable.from_sentencepiece(sp, vocab_size=320)


def _bytes_by_hand(sp, prev, tgt):
    """Independent byte count straight from the SentencePiece pieces (reference §2.1)."""
    def special(i):
        return sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)
    if special(tgt):
        return 0
    if sp.is_byte(tgt):
        return 1
    piece = sp.id_to_piece(tgt)
    if piece.startswith("▁"):
        return len(piece[1:].encode("utf-8")) + (0 if special(prev) else 1)
    return len(piece.encode("utf-8"))


def _nats_alone(model, ctx):
    """−log p(last target) from running ``ctx`` (inputs then final target) alone, in float64."""
    with torch.no_grad():
        logits = model.logits(torch.tensor(ctx[:-1], dtype=torch.long)[None])[0].double()
    return -torch.log_softmax(logits, -1)[torch.arange(len(ctx) - 1), torch.tensor(ctx[1:])]


def _doc_start(toks, p):
    b = np.flatnonzero(toks[:p + 1] == 1)
    return int(b[-1]) if b.size else 0


def test_plain_matches_independent_loop(setup):
    sp, model, val, table = setup
    seq = 32
    toks = truncate_val(val, seq).astype(np.int64)
    nats = 0.0
    nbytes = 0
    for c in range(0, toks.size - 1, seq):  # each chunk, each document inside it run alone
        cuts = sorted({c, *[c + i for i in np.flatnonzero(toks[c:c + seq] == 1)], c + seq})
        for s, e in zip(cuts[:-1], cuts[1:]):
            nats += float(_nats_alone(model, toks[s:e + 1].tolist()).sum())
            nbytes += sum(_bytes_by_hand(sp, int(toks[p]), int(toks[p + 1])) for p in range(s, e))
    got = evaluate(model, val, table, seq_len=seq, batch_seqs=3)
    assert got.tokens == toks.size - 1
    assert got.bytes == nbytes
    assert got.val_bpb == pytest.approx(nats / (math.log(2) * nbytes), rel=2e-6)
    assert got.val_loss == pytest.approx(nats / got.tokens, rel=2e-6)
    # the same sums split over 3 ranks
    parts = [evaluate(model, val, table, seq_len=seq, batch_seqs=2, rank=r, world_size=3) for r in range(3)]
    assert sum(p.tokens for p in parts) == got.tokens and sum(p.bytes for p in parts) == got.bytes
    assert sum(p.val_loss * p.tokens for p in parts) == pytest.approx(nats, rel=2e-6)
    # stride == seq_len is the plain evaluation
    assert evaluate(model, val, table, seq_len=seq, stride=seq).val_bpb == pytest.approx(got.val_bpb, rel=1e-9)


def test_sliding_matches_independent_loop(setup):
    sp, model, val, table = setup
    seq, stride = 24, 8
    val = val[:100]  # one forward per scored position below: keep it short
    toks = truncate_val(val, seq).astype(np.int64)
    T = toks.size - 1
    nats = 0.0
    for ws, wlen, s in sliding_window_plan(T, seq, stride):
        for p in range(ws + s, ws + wlen):  # context: the window, cut at the document start
            start = max(ws, _doc_start(toks, p))
            nats += float(_nats_alone(model, toks[start:p + 2].tolist())[-1])
    got = evaluate(model, val, table, seq_len=seq, stride=stride, batch_seqs=5)
    assert got.tokens == T
    assert got.val_loss * T == pytest.approx(nats, rel=2e-6)


@pytest.mark.parametrize("T,seq,stride", [(1, 8, 8), (7, 8, 2), (100, 16, 4), (1000, 64, 64), (1000, 64, 5),
                                          (2048, 2048, 64), (5000, 2048, 64)])
def test_sliding_plan_scores_every_token_once(T, seq, stride):
    count = np.zeros(T, dtype=np.int64)
    for ws, wlen, s in sliding_window_plan(T, seq, stride):
        assert 0 < wlen <= seq and ws + wlen <= T
        count[ws + s:ws + wlen] += 1
        if ws:
            assert s == seq - stride  # later windows score with the full context
    assert (count == 1).all()


def test_bad_inputs(setup):
    _, model, val, table = setup
    with pytest.raises(ValueError, match="stride"):
        sliding_window_plan(100, 16, 17)
    with pytest.raises(ValueError, match="tokens"):
        truncate_val(val[:5], 16)
    with pytest.raises(ValueError, match="rank"):
        evaluate(model, val, table, seq_len=16, rank=2, world_size=2)
