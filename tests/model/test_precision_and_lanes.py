"""The record's precision recipe (bf16 model, banks and control tensors fp32) and parallel_final_lane."""

import dataclasses

import pytest
import torch

from golf_fast.model.config import ModelConfig
from golf_fast.model.gpt import BANK_NAMES, EMBED_NAME
from golf_fast.model.precision import apply_precision, keeps_fp32, precision_summary
from model_factories import randomized_gpt

CFG = ModelConfig(vocab_size=96, num_layers=4, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=1, loop_end=2,
                  parallel_start_layer=2, max_seqlen=64, rope_dims=8, gate_window=8)


def _model(cfg, seed):
    return randomized_gpt(cfg, seed)


def test_record_recipe_keeps_only_the_embedding_in_bf16():
    m = apply_precision(_model(CFG, 1510), "record")
    bf16 = [n for n, p in m.named_parameters() if p.dtype == torch.bfloat16]
    assert bf16 == [EMBED_NAME]
    for n in BANK_NAMES:
        assert getattr(m, n).dtype == torch.float32
    assert m.smear_gate.weight.dtype == torch.float32 and keeps_fp32("smear_gate.weight", m.smear_gate.weight)
    assert m.blocks[0].attn.inv_freq.dtype == torch.bfloat16  # the record's cast buffer
    total = sum(p.numel() for p in m.parameters())
    assert precision_summary(m) == {"bfloat16": CFG.vocab_size * CFG.model_dim,
                                    "float32": total - CFG.vocab_size * CFG.model_dim}


def test_record_recipe_runs_with_and_without_autocast_and_stays_close():
    ref = _model(CFG, 1511)
    m = apply_precision(_model(CFG, 1511), "record")
    ids = torch.randint(0, CFG.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1511))
    with torch.no_grad():
        want = ref.logits(ids).float()
        got = m.logits(ids).float()  # pure bf16 compute (no autocast)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got_ac = m.logits(ids).float()
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    err, err_ac = (got - want).abs().max(), (got_ac - want).abs().max()
    assert 0 < err < 0.05 * want.abs().max() and 0 < err_ac < 0.05 * want.abs().max()
    loss = m(ids, ids)
    loss.backward()
    assert m.tok_emb.weight.grad.dtype == torch.bfloat16 and m.qo_bank.grad.dtype == torch.float32


def test_fp32_recipe_is_the_identity_on_an_fp32_model():
    a, b = _model(CFG, 1512), apply_precision(_model(CFG, 1512), "fp32")
    ids = torch.randint(0, CFG.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1512))
    with torch.no_grad():
        assert torch.equal(a.logits(ids), b.logits(ids))
    with pytest.raises(ValueError, match="precision"):
        apply_precision(a, "fp16")


def test_parallel_final_lane():
    ids = torch.randint(0, CFG.vocab_size, (1, 20), generator=torch.Generator().manual_seed(1513))
    out = {}
    for lane in ("mean", "attn", "mlp"):
        m = _model(dataclasses.replace(CFG, parallel_final_lane=lane), 1513)
        with torch.no_grad():
            out[lane] = m.logits(ids)
    assert not torch.equal(out["attn"], out["mlp"]) and not torch.equal(out["mean"], out["attn"])
    # mean of the lanes, checked against the lanes themselves
    m = _model(CFG, 1513)
    lanes = {}

    def grab(self, i, lane0, lane1, *a):
        r = orig(i, lane0, lane1, *a)
        lanes["last"] = r
        return r

    orig = m._parallel_block
    m._parallel_block = lambda *a: grab(m, *a)
    with torch.no_grad():
        h = m.hidden(ids)
    l0, l1 = lanes["last"]
    assert torch.equal(h, torch.nn.functional.rms_norm(0.5 * (l0 + l1), (CFG.model_dim,)))
    with pytest.raises(ValueError, match="parallel_final_lane"):
        ModelConfig(parallel_final_lane="sum")
