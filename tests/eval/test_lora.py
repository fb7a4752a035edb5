"""Per-document LoRA: a fresh adapter changes nothing; the int6 branch (golf_fast.int6_linear on the
artifact's codes, the CUDA path) equals the reference branch on CPU, forward and gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from golf_fast.artifact import dequantize_state
from golf_fast.eval.adapt.lora import BatchedLoRA, Int6Base, LoRAHook, parse_targets
from golf_fast.eval.adapt.documents import run_documents
from golf_fast.quant.formats import quantize_rtn
from golf_fast.quant.lqer import add_lqer

from .adapt_helpers import byte_table, tiny_config, tiny_model, tiny_stream


def _quantized(model):
    """int6 block matrices, LQER on the two with the largest residual (one of them c_q), loaded back."""
    state = model.unbanked_state_dict()
    q = {k: (quantize_rtn(v.float(), 6, 4.0) if k in model.matrix_names() and k.startswith("blocks.") else v)
         for k, v in state.items()}
    mats = [k for k in q if k.startswith("blocks.") and k.endswith(".weight")]
    chosen, _ = add_lqer(q, {k: state[k] for k in mats}, top_k=1, rank=2,
                         exclude={k for k in mats if not k.endswith("mlp.fc.weight")})
    chosen2, _ = add_lqer(q, {k: state[k] for k in mats}, top_k=1, rank=2,
                          exclude={k for k in mats if not k.endswith("attn.c_q.weight")})
    assert len(chosen) == len(chosen2) == 1
    model.load_unbanked_state_dict(dequantize_state(q, torch.float32))
    return q


def _lora(model, batch, seed):
    lora = BatchedLoRA(model.cfg, batch, rank=4, alpha=8.0)
    lora.reset(torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in lora.targets:
            lora.B[t].normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 1))
    return lora


def test_fresh_adapter_is_the_identity_and_targets_are_checked():
    model = tiny_model(51)
    x = torch.randint(2, 48, (3, 20), generator=torch.Generator().manual_seed(51))
    want = model.logits(x)
    lora = BatchedLoRA(model.cfg, 3, rank=4, alpha=8.0)
    lora.reset(torch.Generator().manual_seed(0))
    model.set_linear_hook(LoRAHook(lora))
    assert torch.equal(model.logits(x), want)
    with torch.no_grad():
        lora.B["o"][:, 1].fill_(0.1)  # (layer, row, out, r): every layer of row 1
    got = model.logits(x)
    assert torch.equal(got[0], want[0]) and not torch.allclose(got[1], want[1])  # only row 1's adapter moved
    model.set_linear_hook(None)
    with pytest.raises(ValueError, match="targets"):
        parse_targets("q,z")
    with pytest.raises(ValueError, match="rank"):
        BatchedLoRA(model.cfg, 2, rank=0, alpha=1.0)


@pytest.mark.parametrize("batch", [1, 3])
def test_int6_branch_equals_reference_branch(batch):
    """batch 1: q/k/v LoRA fused into int6_linear's low-rank term; batch 3: int6 base + batched delta."""
    model = tiny_model(52 + batch)
    state = _quantized(model)
    x = torch.randint(2, 48, (batch, 24), generator=torch.Generator().manual_seed(batch))
    lora = _lora(model, batch, 60 + batch)

    def run(int6, autocast):
        model.set_linear_hook(LoRAHook(lora, Int6Base(state, model, torch.device("cpu")) if int6 else None))
        lora.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            z = model.logits(x).float()
        z.square().mean().backward()
        model.set_linear_hook(None)
        return z.detach(), {t: (lora.A[t].grad.clone(), lora.B[t].grad.clone()) for t in lora.targets}

    z32, g32 = run(False, False)          # fp32 reference
    zi, gi = run(True, True)              # int6 branch, bf16
    zr, gr = run(False, True)             # reference branch, bf16
    with torch.no_grad():
        saved = {t: lora.B[t].clone() for t in lora.targets}
        for t in lora.targets:
            lora.B[t].zero_()
    z0, _ = run(False, False)             # without the LoRA: the size of its effect
    with torch.no_grad():
        for t in lora.targets:
            lora.B[t].copy_(saved[t])
    effect = (z32 - z0).abs().max()
    assert effect > 0.5
    for z in (zi, zr):
        assert (z - z32).abs().max() < 0.05 * effect  # bf16 rounding, far below a dropped or mis-scaled term
    for t in lora.targets:
        for a, b in zip(gi[t], g32[t]):
            assert (a - b).norm() < 0.06 * b.norm(), t


def test_int6_branch_refuses_a_changed_base():
    model = tiny_model(55)
    state = _quantized(model)
    hook = LoRAHook(_lora(model, 1, 5), Int6Base(state, model, torch.device("cpu")))
    model.set_linear_hook(hook)
    x = torch.randint(2, 48, (1, 8), generator=torch.Generator().manual_seed(55))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.logits(x)
        with torch.no_grad():
            model.qo_bank.add_(0.01)
        with pytest.raises(RuntimeError, match="base weights changed"):
            model.logits(x)


def test_int6_backend_through_the_document_driver():
    """The whole LoRA TTT on the int6 branch (bf16 autocast, as on CUDA) matches the reference branch."""
    val = tiny_stream(56, n_docs=4, max_len=36)
    runs = {}
    for backend in ("reference", "int6"):
        model = tiny_model(56)
        state = _quantized(model)
        cfg = tiny_config(ttt="lora")
        cfg.lora = dataclasses.replace(cfg.lora, backend=backend)
        runs[backend] = run_documents(model, val, byte_table(), cfg, adapt="lora", dtype=torch.bfloat16,
                                      int6_state=state)
    assert runs["int6"].flag == "compliant"
    ref, got = runs["reference"].result.val_bpb, runs["int6"].result.val_bpb
    assert got == pytest.approx(ref, rel=2e-3)
    base = tiny_model(56)
    _quantized(base)
    no_ttt = run_documents(base, val, byte_table(), tiny_config(), adapt="none", dtype=torch.bfloat16)
    assert abs(no_ttt.result.val_bpb - ref) > 10 * abs(got - ref)  # the tolerance is far below TTT's effect
    with pytest.raises(ValueError, match="bf16"):
        cfg = tiny_config(ttt="lora")
        cfg.lora = dataclasses.replace(cfg.lora, backend="int6")
        run_documents(tiny_model(56), val, byte_table(), cfg, adapt="lora", dtype=None, int6_state=state)


def test_one_adapter_per_virtual_layer_when_looping():
    model = tiny_model(57, num_loops=2)  # layers 0, 1, 1, 1, 2: five virtual layers
    lora = BatchedLoRA(model.cfg, 1, rank=2, alpha=2.0)
    assert lora.slots_of == [[0], [1, 2, 3], [4]] and lora.A["q"].shape[0] == 5
    lora.reset(torch.Generator().manual_seed(57))
    x = torch.randint(2, 48, (1, 12), generator=torch.Generator().manual_seed(57))
    model.set_linear_hook(LoRAHook(lora))
    outs = {}
    for looping in (False, True):
        model.looping_active = looping
        outs[looping, "fresh"] = model.logits(x)
        with torch.no_grad():
            lora.B["mlp"][3].fill_(0.2)  # the third visit of layer 1 only
        outs[looping, "slot3"] = model.logits(x)
        with torch.no_grad():
            lora.B["mlp"][3].zero_()
    model.set_linear_hook(None)
    assert torch.equal(outs[False, "fresh"], outs[False, "slot3"])  # no third visit without looping
    assert not torch.allclose(outs[True, "fresh"], outs[True, "slot3"])


def test_int6_base_carries_the_lqer_correction():
    model = tiny_model(58)
    state = _quantized(model)
    base = Int6Base(state, model, torch.device("cpu"))
    assert len(base.lqer) == 2
    hook = LoRAHook(BatchedLoRA(model.cfg, 1, rank=2, alpha=2.0), base)
    folded = model.unbanked_state_dict()
    g = torch.Generator().manual_seed(58)
    for name, (a, b) in base.lqer.items():
        w = folded[name]
        x = torch.randn(5, w.shape[1], generator=g).to(torch.float16)  # fp16: finer output rounding than bf16
        got = hook.base_linear(name, x, w).float()
        want = (x.float() @ w.T).half().float()  # the artifact's dequantization folds A·B into W
        lqer = (x.float() @ (a @ b).T).abs().max()
        assert (got - want).abs().max() < 0.2 * lqer, (name, float((got - want).abs().max()), float(lqer))
