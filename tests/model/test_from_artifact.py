"""A model rebuilt from an artifact: the file's config, the dequantized weights, the same logits."""

import dataclasses

import pytest
import torch

from golf_fast.artifact import ArtifactError, load_artifact, save_artifact
from golf_fast.model import GPT, ModelConfig, load_model_from_artifact, model_from_artifact
from golf_fast.quant import QuantizedTensor, quantize_rtn

CFG = ModelConfig(vocab_size=96, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=1,
                  loop_end=1, parallel_start_layer=2, max_seqlen=32, rope_dims=8, xsa_last_n=2)


def _quantized_state(seed):
    torch.manual_seed(seed)
    model = GPT(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = model.unbanked_state_dict()
    return {k: quantize_rtn(v, 6, 12.0) if k in model.matrix_names() else v.half() for k, v in state.items()}


def test_weights_and_logits_follow_the_file(tmp_path):
    tensors = _quantized_state(41)
    path = tmp_path / "m.gfa"
    save_artifact(path, tensors, CFG)
    fresh = load_model_from_artifact(path, "cpu")
    assert fresh.cfg == CFG
    got = fresh.unbanked_state_dict()
    for k, v in tensors.items():
        want = v.dequantize(torch.float32) if isinstance(v, QuantizedTensor) else v.float()
        assert torch.equal(got[k], want), k
    # an independently built model with the same dequantized weights gives the same logits
    ref = GPT(CFG)
    ref.load_unbanked_state_dict({k: v.dequantize(torch.float32) if isinstance(v, QuantizedTensor) else v.float()
                                  for k, v in tensors.items()})
    for (n, a), b in zip(ref.named_buffers(), fresh.buffers()):
        assert torch.equal(a, b), n  # the RoPE inv_freq buffers are rebuilt, not left empty
    g = torch.Generator().manual_seed(42)
    ids = torch.randint(2, 96, (1, 30), generator=g)
    cu = torch.tensor([0, 30], dtype=torch.int32)
    for looping in (False, True):
        fresh.looping_active = ref.looping_active = looping
        with torch.no_grad():
            torch.testing.assert_close(fresh.logits(ids, cu), ref.logits(ids, cu), rtol=0, atol=0)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(TypeError, match="art"):
        model_from_artifact({"state": {}}, "cpu")
    with pytest.raises(TypeError, match="path"):
        load_model_from_artifact(3, "cpu")
    with pytest.raises((OSError, ValueError)):
        load_model_from_artifact(tmp_path / "missing.gfa", "cpu")
    path = tmp_path / "noconf.gfa"
    save_artifact(path, _quantized_state(43), None)
    with pytest.raises(ValueError, match="config"):
        model_from_artifact(load_artifact(path))
    path = tmp_path / "other.gfa"
    save_artifact(path, _quantized_state(44), dataclasses.replace(CFG, num_layers=2))
    with pytest.raises(ArtifactError, match="unexpected"):  # checked on the meta model, before allocation
        load_model_from_artifact(path)
