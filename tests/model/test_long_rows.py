"""Rows longer than max(2·max_seqlen, 1024) tokens without document boundaries keep their whole
context on the SDPA path (issue 13: the banded form used to drop everything older than a block)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from golf_fast.model import attention
from golf_fast.model.attention import varlen_attention
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT


def _causal(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(0, 1)[None].double(), k.transpose(0, 1)[None].double(),
                                          v.transpose(0, 1)[None].double(), is_causal=True)[0].transpose(0, 1)


def test_segment_longer_than_max_seqlen_is_exact():
    g = torch.Generator().manual_seed(1331)
    T, H, D, C = 1100, 2, 8, 64  # T > 1024 and > 2C: the banded path
    q, k, v = (torch.randn(T, H, D, generator=g) for _ in range(3))
    cu = torch.tensor([0, T], dtype=torch.int32)
    out = varlen_attention(q, k, v, cu, C, "sdpa")
    torch.testing.assert_close(out.double(), _causal(q, k, v), rtol=1e-5, atol=1e-5)
    # the old behaviour (a block of C) differs: the test would catch it
    old = attention._sdpa_banded(q, k, v, cu, C)
    assert (old.double() - _causal(q, k, v)).abs().max() > 1e-2
    # two segments, the second longer than C: each isolated and exact
    cu2 = torch.tensor([0, 300, T], dtype=torch.int32)
    out2 = varlen_attention(q, k, v, cu2, C, "sdpa")
    torch.testing.assert_close(out2[:300].double(), _causal(q[:300], k[:300], v[:300]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out2[300:].double(), _causal(q[300:], k[300:], v[300:]), rtol=1e-5, atol=1e-5)


def test_model_rows_longer_than_max_seqlen_see_their_whole_row():
    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=16, num_heads=2, num_kv_heads=1, loop_start=0,
                      loop_end=0, num_loops=0, parallel_start_layer=2, max_seqlen=16, rope_dims=8, xsa_last_n=0,
                      gate_window=4)
    torch.manual_seed(1332)
    model = GPT(cfg).eval()
    with torch.no_grad():  # zero-initialized projections would hide attention: random weights everywhere
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.2)
    model.resolve_attention(torch.device("cpu"))
    T = 1040  # > max(2·16, 1024)
    ids = torch.randint(2, 64, (1, T), generator=torch.Generator().manual_seed(1333))
    ids2 = ids.clone()
    ids2[0, 5] = (ids[0, 5] + 1) % 62 + 2  # change one early token
    with torch.no_grad():
        a, b = model.logits(ids), model.logits(ids2)
    # the last position sees the whole row, so the early change reaches it
    assert (a[0, -1] - b[0, -1]).abs().max() > 0
