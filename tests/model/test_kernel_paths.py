"""The model's fused kernel paths (golf_fast.model.kernel_paths): the CPU default is the eager
record code, the fused CE and MLP paths (reference and interpreted Triton) give the same model."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from golf_fast.model.config import ModelConfig
from golf_fast.model.kernel_paths import FusedKernels
from model_factories import randomized_gpt

TINY = ModelConfig(vocab_size=200, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, loop_start=1,
                   loop_end=2, parallel_start_layer=3, max_seqlen=64, rope_dims=8)


def _batch(seed: int, t: int = 48):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, TINY.vocab_size, (1, t), generator=g), torch.randint(0, TINY.vocab_size, (1, t), generator=g)


def _step(model, ids, tgt, ce: str, mlp: str, amp: bool = True):
    model.fused_kernels.cross_entropy, model.fused_kernels.mlp = ce, mlp
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = model(ids, tgt)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _global_rel(grads, truth):
    """‖g − g_truth‖ / ‖g_truth‖ over all parameters at once (the per-parameter maximum is set by
    the noisiest small gradient, q_gain, and moves by ±50% with any change of rounding)."""
    num = sum(float((a.double() - b.double()).norm() ** 2) for a, b in zip(grads, truth))
    return (num / sum(float(b.double().norm() ** 2) for b in truth)) ** 0.5


def test_cpu_default_is_the_eager_record_code():
    """Default switches ("cuda") leave a CPU model on its eager code, bit for bit: the loss is
    F.cross_entropy of the softcapped logits (in the compute dtype, then fp32)."""
    m = randomized_gpt(TINY, 1841)
    ids, tgt = _batch(1841)
    assert m.fused_kernels == FusedKernels() and all(b.fused is m.fused_kernels for b in m.blocks)
    for amp in (False, True):
        loss, grads = _step(m, ids, tgt, "cuda", "cuda", amp)
        never, never_grads = _step(m, ids, tgt, "never", "never", amp)
        assert torch.equal(loss, never) and all(torch.equal(a, b) for a, b in zip(grads, never_grads))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = m.logits(ids).float()
        assert torch.equal(loss, F.cross_entropy(logits.view(-1, TINY.vocab_size), tgt.view(-1)))


def test_fused_paths_on_the_reference_backend():
    """"always" on CPU runs the ops' references: the MLP forward is the same eager chain (same
    loss bits); the fused CE is the fp32-softcap loss of the pre-softcap head."""
    m = randomized_gpt(TINY, 1842)
    ids, tgt = _batch(1842)
    eager, _ = _step(m, ids, tgt, "never", "never")
    mlp, _ = _step(m, ids, tgt, "never", "always")
    assert torch.equal(mlp, eager)
    ce, _ = _step(m, ids, tgt, "always", "never")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        z = m.head(m.hidden(ids), ids)
    want = F.cross_entropy(30.0 * torch.tanh(z.float().view(-1, TINY.vocab_size) / 30.0), tgt.view(-1))
    torch.testing.assert_close(ce, want, rtol=1e-6, atol=0)
    assert float((ce - eager).abs()) < 1e-2  # the same loss up to the bf16 rounding of the softcap
    with torch.no_grad():  # evaluation keeps the eager softcap, like the records
        m.fused_kernels.cross_entropy = "always"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(m(ids, tgt), eager)


def test_hook_keeps_the_eager_mlp():
    m = randomized_gpt(TINY, 1843)
    m.fused_kernels.mlp = "always"
    seen = []
    m.activation_hook = lambda name, x: seen.append(name)
    ids, _ = _batch(1843)
    with torch.no_grad():
        m.hidden(ids)  # fp32: the fused op would reject fp32 inputs, the hook path does not use it
    assert any(n.endswith("mlp.proj.weight") for n in seen)


def test_bad_switch_names_the_field():
    with pytest.raises(ValueError, match="mlp: expected one of"):
        FusedKernels(mlp="gpu")
    with pytest.raises(ValueError, match="cross_entropy: expected one of"):
        FusedKernels(cross_entropy="on")


@pytest.mark.interpreter
def test_interpreted_kernels_in_the_model_are_as_accurate_as_eager(triton_interpret):
    """TRITON_INTERPRET=1: the model's step runs the fused Triton kernels (CE forward/backward, MLP
    up-projection and dpre epilogues). Against the fp32 model as the truth, the bf16 step on the
    kernels is at most 1.2× as far off as the bf16 eager step (loss, and all gradients together)."""
    assert os.environ["TRITON_INTERPRET"] == "1"
    m = randomized_gpt(TINY, 1844)
    ids, tgt = _batch(1844, t=40)
    truth, truth_grads = _step(m, ids, tgt, "never", "never", amp=False)
    eager, eager_grads = _step(m, ids, tgt, "never", "never")
    fused, fused_grads = _step(m, ids, tgt, "always", "always")
    from golf_fast.ops.dispatch import resolved_backends
    backends = resolved_backends()
    for op in ("softcapped_ce", "softcapped_ce_backward", "leaky_relu_square_mlp", "leaky_relu_square_mlp_dpre"):
        assert backends[f"{op}@cpu"] == "triton"
    eager_err = _global_rel(eager_grads, truth_grads)
    assert _global_rel(fused_grads, truth_grads) <= 1.2 * eager_err
    assert abs(float(fused - truth)) <= 1.5 * abs(float(eager - truth)) + 1e-4
    scrambled = [g.roll(1) for g in fused_grads]  # the check rejects gradients that are not the model's
    assert _global_rel(scrambled, truth_grads) > 1.2 * eager_err


@pytest.mark.slow
def test_fused_paths_trace_fullgraph():
    """torch.compile(fullgraph=True) of the model with both fused ops (custom ops in the graph)."""
    torch._dynamo.reset()
    m = randomized_gpt(TINY, 1845)
    m.resolve_attention(torch.device("cpu"))
    m.fused_kernels.cross_entropy = m.fused_kernels.mlp = "always"
    ids, tgt = _batch(1845)
    compiled = torch.compile(m, fullgraph=True, dynamic=False, backend="eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = compiled(ids, tgt)
        want = m(ids, tgt)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    for p in (m.mlp_up_bank, m.mlp_down_bank, m.tok_emb.weight):  # through both custom ops' backward
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    torch._dynamo.reset()
