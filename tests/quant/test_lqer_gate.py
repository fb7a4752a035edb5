"""LQER factors (asym INT2/INT4-group and sym fallback) and the int8 per-row gate quantizer, against
float64 re-derivations of the record's formulas (parameter_golf.md §5.2–5.3)."""

import pytest
import torch

from golf_fast.quant.gate import is_gate, quantize_gate_int8_rows
from golf_fast.quant.lqer import (LowRankFactors, low_rank_factors, pack_asym, pack_sym, pop_state_entries,
                                  select_top_k, to_state_entries)


def _lowrank_residual(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    # a residual with a dominant rank-4 part plus noise, like a GPTQ error with structure
    return (torch.randn(n, 4, generator=g) @ torch.randn(4, k, generator=g) * 0.05
            + 0.002 * torch.randn(n, k, generator=g))


def test_asym_pack_matches_the_formulas_in_float64():
    g = torch.Generator().manual_seed(1501)
    a, b = torch.randn(37, 4, generator=g), torch.randn(4, 96, generator=g)
    f = pack_asym(a, b, group=64)
    sA = float((a.double().abs().max() / 1.5).to(torch.float16))
    assert float(f.sA) == sA
    assert torch.equal(f.qA, torch.clamp(torch.round(a.double() / sA), -2, 1).to(torch.int8))
    bf = b.double().reshape(-1, 64)
    sB = (bf.abs().amax(1) / 7.5).to(torch.float16)
    assert torch.equal(f.sB, sB)
    assert torch.equal(f.qB, torch.clamp(torch.round(bf / sB.double()[:, None]), -8, 7).to(torch.int8).reshape(4, 96))
    assert int(f.qA.min()) >= -2 and int(f.qA.max()) <= 1 and int(f.qB.min()) >= -8 and int(f.qB.max()) <= 7
    a_d, b_d = f.factors()
    assert torch.allclose(f.dense(), a_d @ b_d)


def test_low_rank_factors_reduce_the_residual_and_fall_back_to_sym():
    e = _lowrank_residual(64, 96, 1502)
    f = low_rank_factors(e, rank=4, group=64)
    assert f.scheme == "asym" and f.rank == 4
    assert (e - f.dense()).norm() < 0.6 * e.norm()  # most of the structured part is removed
    # a dropped factor (A only, B from another residual) must not pass
    other = low_rank_factors(_lowrank_residual(64, 96, 9), rank=4, group=64)
    assert (e - f.factors()[0] @ other.factors()[1]).norm() > 0.9 * e.norm()
    g = low_rank_factors(_lowrank_residual(33, 50, 1503), rank=4, group=64)  # 4·50 % 64 != 0
    assert g.scheme == "sym" and g.sA.shape == (33,) and g.sB.shape == (4,)
    m = 7
    assert int(g.qA.abs().max()) <= m and int(g.qB.abs().max()) <= m
    s = pack_sym(torch.ones(3, 2), torch.ones(2, 5), bits=4)
    assert torch.allclose(s.dense(), torch.full((3, 5), 2.0), atol=1e-2)


def test_top_k_and_state_entries_round_trip():
    assert select_top_k({"a": 1.0, "b": 3.0, "c": 2.0, "d": 3.0}, 3) == ["b", "d", "c"]
    f = low_rank_factors(_lowrank_residual(16, 32, 1504), rank=2, group=64)
    state = {"w": torch.zeros(16, 32), **to_state_entries("w", f)}
    got = pop_state_entries(state)
    assert list(state) == ["w"] and torch.equal(got["w"].dense(), f.dense()) and got["w"].scheme == f.scheme
    with pytest.raises(ValueError, match="incomplete"):
        bad = to_state_entries("w", f)
        del bad["w.lqer.qB"]
        pop_state_entries(bad)


def test_bad_lqer_arguments():
    with pytest.raises(TypeError, match="residual"):
        low_rank_factors(torch.zeros(3), rank=2)
    with pytest.raises(ValueError, match="rank"):
        low_rank_factors(torch.zeros(3, 4), rank=0)
    with pytest.raises(ValueError, match="b:"):
        pack_asym(torch.zeros(3, 2), torch.zeros(2, 5), group=64)
    with pytest.raises(TypeError, match="qA"):
        LowRankFactors(torch.zeros(2, 2), torch.ones(1, dtype=torch.float16), torch.zeros(2, 64, dtype=torch.int8),
                       torch.ones(2, dtype=torch.float16))


def test_gate_int8_rows_in_float64():
    g = torch.Generator().manual_seed(1505)
    w = torch.randn(8, 12, generator=g) * 0.1
    w[3] = 0.0  # a zero row keeps a finite scale
    qt = quantize_gate_int8_rows(w)
    s = (w.double().abs().amax(1).clamp_min(1e-10) / 127).to(torch.float16)
    assert qt.bits == 8 and torch.equal(qt.scales, s)
    assert torch.equal(qt.codes, torch.clamp(torch.round(w.double() / s.double()[:, None]), -127, 127).to(torch.int8))
    err = (qt.dequantize() - w).abs().max(dim=1).values
    assert torch.all(err <= s.float() * 0.5 + 1e-7)
    assert int(qt.codes.abs().max()) == 127  # the row max is on the grid (no clipping)
    assert is_gate("blocks.0.attn.attn_gate_w", w) and not is_gate("blocks.0.attn.attn_gate_w", w[:2, :12])
    assert not is_gate("blocks.0.attn.c_q.weight", w)
    with pytest.raises(TypeError, match="w"):
        quantize_gate_int8_rows(torch.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        quantize_gate_int8_rows(torch.full((2, 20), float("nan")))


def test_add_lqer_picks_the_worst_matrices_and_folds_back():
    from golf_fast.quant.formats import quantize_rtn
    from golf_fast.quant.formats import QuantizedTensor
    from golf_fast.quant.lqer import add_lqer, fold_lqer

    g = torch.Generator().manual_seed(1506)
    originals = {f"m{i}": torch.randn(32, 64, generator=g) * (1 + i) for i in range(4)}
    originals["gate"] = torch.randn(8, 12, generator=g)
    tensors = {k: quantize_rtn(v, 4, 3.0) for k, v in originals.items() if k != "gate"}
    tensors["gate"] = quantize_gate_int8_rows(originals["gate"])
    tensors["scalar"] = torch.ones(3, dtype=torch.float16)
    chosen, errors = add_lqer(tensors, originals, top_k=2, rank=4, exclude={"gate"})
    assert chosen == ["m3", "m2"] and set(errors) == {"m0", "m1", "m2", "m3"}
    state = dict(tensors)
    factors = pop_state_entries(state)
    assert sorted(factors) == ["m2", "m3"] and not any(".lqer." in k for k in state)
    dense = {k: (v.dequantize() if isinstance(v, QuantizedTensor) else v.clone()) for k, v in state.items()}
    before = {k: (originals[k] - dense[k]).norm() for k in chosen}
    fold_lqer(dense, factors)
    for k in chosen:  # the correction reduces the residual of the chosen matrices
        assert (originals[k] - dense[k]).norm() < before[k]
    assert torch.equal(dense["m0"], tensors["m0"].dequantize())  # others untouched



def test_int6_linear_low_rank_term_applies_the_lqer_factors():
    """The kernels' path for an int6 matrix with LQER: ``int6_linear(x, packed, s, lowrank=(A, B))``
    equals ``F.linear(x, q·s + A·B)`` computed in fp32 up to the bf16 output rounding."""
    import golf_fast
    from golf_fast.quant.formats import quantize_rtn

    g = torch.Generator().manual_seed(1507)
    w = torch.randn(40, 64, generator=g) * 0.05
    qt = quantize_rtn(w, 6, 11.5)
    f = low_rank_factors(w - qt.dequantize(), 4, group=64)
    x = torch.randn(3, 64, generator=g).bfloat16()
    got = golf_fast.int6_linear(x, qt.packed(), qt.scales, lowrank=f.factors(), backend="reference")
    want = torch.nn.functional.linear(x.float(), qt.dequantize() + f.dense())
    assert got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), want, rtol=2 ** -7, atol=1e-6)
    without = golf_fast.int6_linear(x, qt.packed(), qt.scales, backend="reference")
    assert not torch.allclose(without.float(), want, rtol=2 ** -7, atol=1e-6)  # the term matters
