"""The record GPT: parameter count, banks, document isolation on every SDPA path, switches."""

import dataclasses

import pytest
import torch

import golf_fast.model.attention as attention
from golf_fast.data.loader import cu_seqlens_from_bos
from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import GPT
from model_factories import randomized_gpt

SMALL = ModelConfig(vocab_size=300, num_layers=6, model_dim=64, num_heads=4, num_kv_heads=2, loop_start=2,
                    loop_end=3, parallel_start_layer=4, max_seqlen=64, rope_dims=8)


def test_record_parameter_count():
    with torch.device("meta"):
        m = GPT(ModelConfig())
    assert sum(p.numel() for p in m.parameters()) == 35_945_671
    shapes = {n: tuple(p.shape) for n, p in m.named_parameters()}
    assert shapes["qo_bank"] == (22, 512, 512) and shapes["kv_bank"] == (22, 256, 512)
    assert shapes["mlp_up_bank"] == (11, 2048, 512) and shapes["mlp_down_bank"] == (11, 512, 2048)
    assert shapes["skip_weights"] == (8, 512) and shapes["blocks.0.attn.attn_gate_w"] == (8, 12)
    assert m.encoder_indices == [0, 1, 2, 3, 4, 5, 3, 4] and m.decoder_indices == [5, 3, 4, 5, 6, 7, 8, 9, 10]


def test_switches_change_the_count():
    base = ModelConfig()
    with torch.device("meta"):
        n = {k: sum(p.numel() for p in GPT(dataclasses.replace(base, **{k: v})).parameters())
             for k, v in [("smear_gate", False), ("sparse_attn_gate", False), ("parallel_start_layer", 0),
                          ("num_loops", 0), ("skip_gates", False)]}
    full = 35_945_671
    assert n["smear_gate"] == full - 13
    assert n["sparse_attn_gate"] == full - 11 * 8 * 12
    assert n["parallel_start_layer"] == full - 66
    assert n["num_loops"] == full - 2 * 3 * 512   # 5 skips instead of 8
    assert n["skip_gates"] == full - 8 * 512


@pytest.mark.parametrize("looping", [False, True])
@pytest.mark.parametrize("full_max", [16384, 0])  # full-mask path and banded path of SDPA
def test_documents_are_isolated(monkeypatch, looping, full_max):
    monkeypatch.setattr(attention, "SDPA_FULL_MAX", full_max)
    m = randomized_gpt(SMALL, 60)
    m.looping_active = looping
    g = torch.Generator().manual_seed(1)
    docs = [torch.cat([torch.tensor([1]), torch.randint(4, 300, (n,), generator=g)]) for n in (17, 40, 9)]
    buf = torch.cat(docs)[None]
    cu = torch.from_numpy(cu_seqlens_from_bos(buf[0].numpy(), 1, 64, bucket=8))
    with torch.no_grad():
        packed = m.logits(buf, cu)
        start = 0
        for d in docs:
            alone = m.logits(d[None])
            torch.testing.assert_close(packed[:, start:start + d.numel()], alone, rtol=1e-4, atol=1e-4)
            start += d.numel()


@pytest.mark.parametrize("T,C", [(100, 16), (64, 16), (257, 32), (7, 4)])
def test_banded_sdpa_equals_full_mask(T, C):
    g = torch.Generator().manual_seed(T)
    q = torch.randn(T, 4, 8, generator=g)
    k = torch.randn(T, 2, 8, generator=g)
    v = torch.randn(T, 2, 8, generator=g)
    x = torch.randint(2, 9, (T,), generator=g).numpy()
    x[torch.randint(0, T, (T // 6,), generator=g).numpy()] = 1
    cu = torch.from_numpy(cu_seqlens_from_bos(x, 1, C, bucket=8))
    full = attention._sdpa_full(q, k, v, cu)
    banded = attention._sdpa_banded(q, k, v, cu, C)
    torch.testing.assert_close(banded, full, rtol=1e-5, atol=1e-5)
    # and against a per-segment loop of plain causal attention
    for s, e in zip(cu[:-1].tolist(), cu[1:].tolist()):
        if e > s:
            ref = torch.nn.functional.scaled_dot_product_attention(
                q[s:e].transpose(0, 1), k[s:e].repeat_interleave(2, 1).transpose(0, 1),
                v[s:e].repeat_interleave(2, 1).transpose(0, 1), is_causal=True).transpose(0, 1)
            torch.testing.assert_close(full[s:e], ref, rtol=1e-5, atol=1e-5)


def test_rows_match_single_sequences_and_grad_flows():
    m = randomized_gpt(SMALL, 61)
    ids = torch.randint(4, 300, (3, 20), generator=torch.Generator().manual_seed(70))
    with torch.no_grad():
        rows = m.logits(ids)
        for b in range(3):
            torch.testing.assert_close(rows[b:b + 1], m.logits(ids[b:b + 1]), rtol=1e-4, atol=1e-4)
    loss = m(ids, ids.roll(-1, 1))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    per_tok = m(ids, ids.roll(-1, 1), reduction="none")
    assert per_tok.shape == (3, 20) and torch.allclose(per_tok.mean(), loss)


def test_unbank_round_trip_and_hook():
    m = randomized_gpt(SMALL, 62)
    sd = {k: v.clone() for k, v in m.unbanked_state_dict().items()}
    assert len(m.matrix_names()) == 1 + 6 * SMALL.num_layers and set(m.matrix_names()) <= set(sd)
    m2 = GPT(SMALL)
    m2.load_unbanked_state_dict(sd)
    ids = torch.randint(4, 300, (1, 30), generator=torch.Generator().manual_seed(71))
    with torch.no_grad():
        torch.testing.assert_close(m2.logits(ids), m.logits(ids))
    seen = {}
    m.activation_hook = lambda name, x: seen.setdefault(name, x.shape[-1])
    m.looping_active = True
    with torch.no_grad():
        m.logits(ids)
    assert set(seen) == set(m.matrix_names())
    assert seen["blocks.0.mlp.proj.weight"] == SMALL.hidden_dim and seen["tok_emb.weight"] == SMALL.model_dim
    with pytest.raises(KeyError, match="missing"):
        m2.load_unbanked_state_dict({k: v for k, v in sd.items() if k != "skip_weights"})


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="model.num_kv_heads"):
        ModelConfig(num_kv_heads=3)
    with pytest.raises(ValueError, match="model.loop_start"):
        ModelConfig(loop_start=6, loop_end=4)
    m = GPT(SMALL)
    with pytest.raises(ValueError, match="input_ids"):
        m.logits(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="requested"):
        attention.resolve_attention_backend(torch.device("cpu"), "fa4")
    with pytest.raises(ValueError, match="CUDA"):
        attention.resolve_attention_backend(torch.device("cpu"), "fa3")


@pytest.mark.slow
def test_traces_fullgraph_in_both_loop_states():
    """torch.compile(fullgraph=True) sees no graph break (dynamo only, so the test stays fast)."""
    torch._dynamo.reset()
    m = randomized_gpt(SMALL, 63)
    m.resolve_attention(torch.device("cpu"))
    compiled = torch.compile(m, fullgraph=True, dynamic=False, backend="eager")
    x = torch.randint(4, 300, (1, 200), generator=torch.Generator().manual_seed(72))
    x[0, ::37] = 1
    cu = torch.from_numpy(cu_seqlens_from_bos(x[0].numpy(), 1, 64))
    for looping in (False, True):
        m.looping_active = looping
        torch.testing.assert_close(compiled(x, x.roll(-1, 1), cu), m(x, x.roll(-1, 1), cu))
    torch._dynamo.reset()


def test_bank_slots_name_the_unbanked_matrices():
    """``LAYER_MATRICES`` is the one slot → name map: every bank slot is the un-banked matrix it names."""
    from golf_fast.model.gpt import BANK_NAMES, EMBED_NAME, LAYER_MATRICES, MATRICES_PER_LAYER, bank_matrix_names

    m = randomized_gpt(SMALL, 63)
    L = SMALL.num_layers
    names = bank_matrix_names(L)
    assert list(names) == list(BANK_NAMES) and MATRICES_PER_LAYER == {"qo_bank": 2, "kv_bank": 2, "mlp_up_bank": 1,
                                                                     "mlp_down_bank": 1}
    sd = m.unbanked_state_dict()
    for bank, ns in names.items():
        assert len(ns) == getattr(m, bank).shape[0]
        for slot, n in enumerate(ns):
            assert torch.equal(sd[n], getattr(m, bank)[slot]), (bank, slot, n)
    assert sorted(n for ns in names.values() for n in ns) == sorted(set(m.matrix_names()) - {EMBED_NAME})
    assert names["qo_bank"][L] == "blocks.0.attn.proj.weight" and names["kv_bank"][L + 1] == "blocks.1.attn.c_v.weight"
    assert [m for m, _, _ in LAYER_MATRICES] == ["attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj"]
    with pytest.raises(ValueError, match="num_layers"):
        bank_matrix_names(-1)
