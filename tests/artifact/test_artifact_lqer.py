"""int8 gates and LQER factors survive the artifact bit for bit, and dequantize_state folds
``W = q·s + (qA·sA) @ (qB·sB)`` in fp32 exactly like the record's ``dequantize_mixed``."""

import pytest
import torch

from golf_fast.artifact import CODEC_NAMES, ArtifactError, dequantize_state, load_artifact, save_artifact
from golf_fast.quant.formats import QuantizedTensor, quantize_rtn
from golf_fast.quant.gate import quantize_gate_int8_rows
from golf_fast.quant.lqer import low_rank_factors, to_state_entries


def _state(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 64, generator=g)
    emb = torch.randn(40, 64, generator=g)
    state = {"blocks.0.mlp.fc.weight": quantize_rtn(w, 6, 11.5), "tok_emb.weight": quantize_rtn(emb, 7, 14.0),
             "blocks.0.attn.attn_gate_w": quantize_gate_int8_rows(torch.randn(8, 12, generator=g) * 0.1),
             "blocks.0.attn_scale": torch.randn(64, generator=g).half()}
    f_fc = low_rank_factors(w - state["blocks.0.mlp.fc.weight"].dequantize(), 4, group=64)
    f_emb = low_rank_factors(emb - state["tok_emb.weight"].dequantize(), 4, group=64)
    state.update(to_state_entries("blocks.0.mlp.fc.weight", f_fc))
    state.update(to_state_entries("tok_emb.weight", f_emb))
    return state, {"blocks.0.mlp.fc.weight": (w, f_fc), "tok_emb.weight": (emb, f_emb)}


def _record_dequant(q: QuantizedTensor, f):
    """The record's dequantize_mixed, written out: fp32 q·s, + qA·sA @ (qB per group · sB)."""
    W = q.codes.float() * q.scales.float().view(-1, 1)
    qA = f.qA.float() * float(f.sA)
    g = f.qB.numel() // f.sB.numel()
    qB = (f.qB.reshape(-1, g).float() * f.sB.float().view(-1, 1)).reshape(f.qB.shape)
    return W + qA @ qB


@pytest.mark.parametrize("codec", sorted(CODEC_NAMES))
def test_round_trip_through_every_codec(tmp_path, codec):
    state, info = _state(1530)
    save_artifact(tmp_path / "m.gfa", state, {"x": 1}, codec=codec)
    art = load_artifact(tmp_path / "m.gfa")
    gate = art.state["blocks.0.attn.attn_gate_w"]
    assert isinstance(gate, QuantizedTensor) and gate.bits == 8
    assert torch.equal(gate.codes, state["blocks.0.attn.attn_gate_w"].codes)
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(art.state[k], v), k
    dense = dequantize_state(art.state)
    assert not any(".lqer." in k for k in dense)
    for name, (w, f) in info.items():
        assert torch.equal(dense[name], _record_dequant(state[name], f))
        assert (dense[name] - w).norm() < (state[name].dequantize() - w).norm()
    assert torch.equal(dense["blocks.0.attn.attn_gate_w"], gate.dequantize())
    bf = dequantize_state(art.state, torch.bfloat16)["tok_emb.weight"]
    assert torch.equal(bf, _record_dequant(state["tok_emb.weight"], info["tok_emb.weight"][1]).bfloat16())


def test_orphan_or_incomplete_factors_are_errors():
    state, _ = _state(1531)
    orphan = dict(state)
    del orphan["tok_emb.weight"]
    with pytest.raises(ArtifactError, match="tok_emb.weight"):
        dequantize_state(orphan)
    broken = dict(state)
    del broken["tok_emb.weight.lqer.sB"]
    with pytest.raises(ValueError, match="incomplete"):
        dequantize_state(broken)
