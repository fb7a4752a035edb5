"""A model rebuilt from an artifact with ``weights="int6"``: its block matrices stay packed int6
codes and the forward multiplies straight from them; val_bpb equals the dequantized model's."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golf_fast.artifact import save_artifact
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.eval import evaluate
from golf_fast.model import GPT, ModelConfig, apply_precision, int6_banks_from_state, load_model_from_artifact
from golf_fast.model import gpt as gpt_module
from golf_fast.nn import Int6Bank, Int6Matrix
from golf_fast.ops.int6_matmul import within_output_rounding
from golf_fast.quant import QuantizedTensor, quantize_rtn
from golf_fast.quant.lqer import pack_asym, to_state_entries

CFG = ModelConfig(vocab_size=96, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, loop_start=1,
                  loop_end=1, parallel_start_layer=2, max_seqlen=32, rope_dims=8, xsa_last_n=2)


def _three_bit_scales(s: torch.Tensor) -> torch.Tensor:
    """Scales rounded to 3 significant bits: then code·s (code ≤ 31, 5 bits) has at most 8
    significant bits and is exact in bf16, so a bf16 dequantized matrix loses nothing."""
    m, e = torch.frexp(s.float())
    return torch.ldexp(torch.round(m * 8) / 8, e).to(torch.float16)


def _artifact(tmp_path, seed, bf16_exact=False, spread=0.08):
    torch.manual_seed(seed)
    model = GPT(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(spread * torch.randn_like(p))
    state = model.unbanked_state_dict()
    out = {}
    for k, v in state.items():
        if k in model.matrix_names():
            q = quantize_rtn(v, 6, 12.0)
            out[k] = QuantizedTensor(q.codes, _three_bit_scales(q.scales), 6) if bf16_exact else q
        else:
            out[k] = v.half()
    path = tmp_path / f"m{seed}.gfa"
    save_artifact(path, out, CFG)
    return path, out


def _val_and_table(seed, n=700):
    g = np.random.default_rng(seed)
    val = g.integers(2, CFG.vocab_size, size=n).astype(np.uint16)
    val[::37] = CFG.bos_id
    base = torch.from_numpy(g.integers(1, 5, size=CFG.vocab_size).astype(np.int16))
    space = torch.from_numpy(g.random(CFG.vocab_size) < 0.3)
    boundary = torch.zeros(CFG.vocab_size, dtype=torch.bool)
    boundary[CFG.bos_id] = True
    return val, TokenByteTable(base, space, boundary)


def test_int6_model_holds_packed_codes_only(tmp_path):
    path, tensors = _artifact(tmp_path, 61)
    m = load_model_from_artifact(path, "cpu", weights="int6")
    for name in ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank"):
        assert getattr(m, name).numel() == 0  # no dense block matrix anywhere
        bank = m.int6_banks[name]
        assert isinstance(bank, Int6Bank) and bank.packed.dtype == torch.uint8
    w = m.bank_weights(1)
    assert all(isinstance(t, Int6Matrix) for t in w)
    # layer 1's matrices are the artifact's codes, in bank order (q, k, v, o, up, down)
    for t, name in zip(w, ("attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj")):
        assert torch.equal(t.dequantize(), tensors[f"blocks.1.{name}.weight"].dequantize()), name
    # the un-banked state gives the matrices the forward multiplies by, dequantized from the codes
    state = m.unbanked_state_dict()
    assert torch.equal(state["blocks.1.mlp.fc.weight"], tensors["blocks.1.mlp.fc.weight"].dequantize())
    assert not any(k.startswith("int6_banks.") for k in state)


def test_fp32_logits_equal_the_dequantized_model(tmp_path):
    """Without autocast the int6 path is the fp32 reference x·(code·s)ᵀ: the same numbers as the
    dequantized model's F.linear up to fp32 summation order."""
    path, _ = _artifact(tmp_path, 62)
    deq = load_model_from_artifact(path, "cpu")
    q6 = load_model_from_artifact(path, "cpu", weights="int6")
    ids = torch.randint(2, 96, (2, 30), generator=torch.Generator().manual_seed(3))
    for looping in (False, True):
        deq.looping_active = q6.looping_active = looping
        with torch.no_grad():
            torch.testing.assert_close(q6.logits(ids), deq.logits(ids), rtol=1e-5, atol=1e-5)


def _bpb(model, val, table, dtype):
    model.looping_active = True
    return evaluate(model, val, table, seq_len=32, stride=16, batch_seqs=8, device=torch.device("cpu"),
                    dtype=dtype).val_bpb


# Tolerance of the bf16 comparison. The scales are bf16-exact (3 significant bits), so both models
# compute every matrix product as the fp32 sum of exact products rounded once to bf16: they can
# differ only where a summation-order difference crosses a bf16 rounding boundary (one ulp, 2^-8
# relative, in a few outputs). Measured: |Δ val_bpb| = 0 here; evaluating in fp32 instead of bf16
# moves val_bpb by ~5e-4 and a plausible wiring error (two layers' matrices swapped, checked
# below) by ~8e-2, so 1e-5 is tight enough to see either.
BF16_BPB_TOL = 1e-5


def test_bf16_val_bpb_equals_the_dequantized_model_within_output_rounding(tmp_path):
    path, _ = _artifact(tmp_path, 63, bf16_exact=True, spread=0.3)
    val, table = _val_and_table(63)
    deq = load_model_from_artifact(path, "cpu")
    q6 = load_model_from_artifact(path, "cpu", weights="int6")
    a, b = _bpb(deq, val, table, torch.bfloat16), _bpb(q6, val, table, torch.bfloat16)
    assert abs(a - b) <= BF16_BPB_TOL, (a, b)
    # the tolerance rejects a plausible wrong answer: layers 0 and 2 of the MLP-up bank swapped
    bank = q6.int6_banks["mlp_up_bank"]
    with torch.no_grad():
        bank.packed[[0, 2]] = bank.packed[[2, 0]].clone()
        bank.scales[[0, 2]] = bank.scales[[2, 0]].clone()
    assert abs(_bpb(q6, val, table, torch.bfloat16) - a) > 1000 * BF16_BPB_TOL


def test_every_int6_product_is_the_fp32_product_rounded_once(tmp_path, monkeypatch):
    """With ordinary (not bf16-exact) scales, under bf16 autocast: each matrix product the int6 model
    computes equals F.linear(x, code·s) in fp32 rounded once to bf16, within output rounding."""
    path, _ = _artifact(tmp_path, 64)
    q6 = load_model_from_artifact(path, "cpu", weights="int6")
    q6.looping_active = True
    real, seen = gpt_module.bank_linear, []

    def recording(x, w, lowrank=None):
        y = real(x, w, lowrank)
        xb = x.to(torch.bfloat16) if x.dtype == torch.float32 else x
        want = F.linear(xb.float(), w.dequantize(torch.float32)).to(y.dtype)
        seen.append(within_output_rounding(y, want))
        return y

    monkeypatch.setattr(gpt_module, "bank_linear", recording)
    ids = torch.randint(2, 96, (2, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q6.logits(ids)
    assert len(seen) == 6 * (CFG.num_layers + 2)  # the loop revisits layer 1 twice
    assert all(p is None for p in seen), [p for p in seen if p is not None][:2]


def test_int6_banks_need_six_bit_matrices(tmp_path):
    _, tensors = _artifact(tmp_path, 65)
    name = "blocks.2.mlp.proj.weight"
    q = tensors[name]
    tensors[name] = QuantizedTensor(q.codes, q.scales, 7)
    with pytest.raises(ValueError, match=r"blocks\.2\.mlp\.proj\.weight.*6 bits"):
        int6_banks_from_state(tensors, CFG)
    del tensors[name]
    with pytest.raises(ValueError, match="missing"):
        int6_banks_from_state(tensors, CFG)
    with pytest.raises(ValueError, match="weights"):
        load_model_from_artifact(_artifact(tmp_path, 66)[0], "cpu", weights="bf16")
    m = GPT(CFG)
    with pytest.raises(ValueError, match="banks"):
        m.use_int6_banks({"qo_bank": None})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_int6_eval_equals_the_dequantized_model(tmp_path):
    """On the device (fused int6 kernels vs cuBLAS bf16 on bf16-exact weights): every product is the
    fp32 sum rounded once in both, in different summation orders for every output (not only a few,
    as on CPU), hence 10× the CPU tolerance; a swapped layer is still far outside it."""
    path, _ = _artifact(tmp_path, 67, bf16_exact=True, spread=0.3)
    val, table = _val_and_table(67)
    dev = torch.device("cuda")
    deq = load_model_from_artifact(path, dev)
    q6 = load_model_from_artifact(path, dev, weights="int6")
    assert q6.int6_banks["qo_bank"].packed.is_cuda and q6.qo_bank.numel() == 0

    def bpb(model):
        model.looping_active = True
        return evaluate(model, val, table, seq_len=32, stride=16, batch_seqs=8, device=dev,
                        dtype=torch.bfloat16).val_bpb

    a, b = bpb(deq), bpb(q6)
    assert abs(a - b) <= 10 * BF16_BPB_TOL, (a, b)


def test_lqer_factors_and_precision_recipes(tmp_path):
    """LQER entries of block matrices become the int6 banks' low-rank terms (a bank where only some
    matrices have factors pads the others with zeros), LQER of the embedding is folded as before:
    fp32 logits equal the dequantized model's. A precision recipe leaves codes and fp16 scales alone."""
    _, tensors = _artifact(tmp_path, 68)
    g = torch.Generator().manual_seed(68)
    for name in ("blocks.1.mlp.fc.weight", "blocks.0.attn.c_q.weight", "tok_emb.weight"):
        n, k = tensors[name].shape if isinstance(tensors[name], QuantizedTensor) else tuple(tensors[name].shape)
        f = pack_asym(torch.randn(n, 4, generator=g) * 0.05, torch.randn(4, k, generator=g) * 0.05)
        tensors.update(to_state_entries(name, f))
    if not isinstance(tensors["tok_emb.weight"], QuantizedTensor):
        tensors["tok_emb.weight"] = quantize_rtn(tensors["tok_emb.weight"].float(), 8, 12.0)
    path = tmp_path / "lqer.gfa"
    save_artifact(path, tensors, CFG)
    deq = load_model_from_artifact(path, "cpu")
    q6 = load_model_from_artifact(path, "cpu", weights="int6")
    assert q6.int6_banks["mlp_up_bank"].lowrank_rank == 4 and q6.int6_banks["kv_bank"].lowrank_rank == 0
    assert torch.count_nonzero(q6.int6_banks["mlp_up_bank"].lowrank_a[0]) == 0  # layer 0: zero factors
    ids = torch.randint(2, 96, (2, 30), generator=g)
    with torch.no_grad():
        torch.testing.assert_close(q6.logits(ids), deq.logits(ids), rtol=1e-5, atol=1e-5)
        no_lqer = load_model_from_artifact(tmp_path / "m68.gfa", "cpu", weights="int6")
        assert (no_lqer.logits(ids) - deq.logits(ids)).abs().max() > 1e-3  # the factors matter
    apply_precision(q6, "record")
    bank = q6.int6_banks["qo_bank"]
    assert bank.packed.dtype == torch.uint8 and bank.scales.dtype == torch.float16
    assert q6.tok_emb.weight.dtype == torch.bfloat16  # the recipe itself did apply


def test_int6_model_traces_under_torch_compile_fullgraph(tmp_path):
    """The int6 forward (Int6Matrix slices, bank_linear, golf_fast::int6_linear with its fake) is
    one graph for torch.compile(fullgraph=True) (aot_eager: the trace, not Inductor's codegen)."""
    path, _ = _artifact(tmp_path, 69)
    q6 = load_model_from_artifact(path, "cpu", weights="int6")
    ids = torch.randint(2, 96, (2, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref = q6.logits(ids)
        out = torch.compile(q6.logits, fullgraph=True, backend="aot_eager", dynamic=False)(ids)
    # the same bf16 products; aot_eager may round elementwise steps differently: ≤ 2 bf16 ulps at |z| ≤ 30
    assert float((out.float() - ref.float()).abs().max()) <= 2 * 0.125
