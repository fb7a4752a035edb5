"""quantize_model: per-role recipe, passthrough, errors, and the 2-process sharded run (gloo)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

from golf_fast.quant.formats import QuantizedTensor
from golf_fast.quant.gptq import gptq_quantize
from golf_fast.quant.quantize_model import assign_ranks, quantize_model
from golf_fast.quant.recipe import QuantRecipe, RoleRule

SMALL = QuantRecipe(passthrough_max_numel=256)


def _hessian(k: int, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(256, k, generator=g) @ (torch.eye(k) + torch.randn(k, k, generator=g) / k ** 0.5)
    return x.T @ x / 256


def tiny_model(layers: int = 2, seed: int = 0):
    """A miniature of the record's un-banked state (dim 32, kv 16, mlp 96, vocab 128) and Hessians."""
    g = torch.Generator().manual_seed(seed)
    state, hess = {}, {}
    for i in range(layers):
        p = f"blocks.{i}"
        for name, shape in (("attn.c_q", (32, 32)), ("attn.c_k", (16, 32)), ("attn.c_v", (16, 32)),
                            ("attn.proj", (32, 32)), ("mlp.fc", (96, 32)), ("mlp.proj", (32, 96))):
            state[f"{p}.{name}.weight"] = torch.randn(*shape, generator=g) * 0.05
        h_attn = _hessian(32, g)
        for name in ("attn.c_q", "attn.c_k", "attn.c_v"):  # one Hessian tensor shared, as in the record
            hess[f"{p}.{name}"] = h_attn
        hess[f"{p}.attn.proj"] = _hessian(32, g)
        hess[f"{p}.mlp.fc"] = _hessian(32, g)
        hess[f"{p}.mlp.proj"] = _hessian(96, g)
        state[f"{p}.attn_scale"] = torch.rand(32, generator=g)
    state["tok_emb.weight"] = torch.randn(128, 32, generator=g) * 0.05
    hess["tok_emb.weight"] = _hessian(32, g)
    state["step"] = torch.tensor([7], dtype=torch.int64)
    return state, hess


def test_roles_passthrough_and_table(caplog):
    state, hess = tiny_model()
    with caplog.at_level(logging.INFO, logger="golf_fast.quant"):
        out = quantize_model(state, hess, SMALL)
    assert list(out.tensors)[:len(state)] == list(state)  # order kept, LQER entries after
    extra = set(out.tensors) - set(state)
    assert len(out.lqer) == 3 and extra == {n + s for n in out.lqer for s in
                                             (".lqer.qA", ".lqer.sA", ".lqer.qB", ".lqer.sB", ".lqer.meta")}
    q = out.tensors["blocks.1.mlp.fc.weight"]
    assert isinstance(q, QuantizedTensor) and q.bits == 6
    assert out.tensors["blocks.0.attn.c_k.weight"].bits == 6
    assert out.tensors["tok_emb.weight"].bits == 7
    assert out.tensors["blocks.0.attn_scale"].dtype == torch.float16
    assert torch.equal(out.tensors["step"], state["step"])
    rows = {r.name: r for r in out.table}
    assert len(rows) == 13
    assert rows["blocks.0.mlp.proj.weight"].clip_sigmas == 11.5 and rows["blocks.0.attn.c_q.weight"].clip_sigmas == 13.0
    assert rows["tok_emb.weight"].role == "embedding" and rows["tok_emb.weight"].clip_sigmas == 14.0
    assert all(r.loss > 0 and r.damp_used == 0.01 and r.seconds > 0 for r in out.table)
    # each matrix is exactly what gptq_quantize gives with its role's settings
    direct = gptq_quantize(state["blocks.1.mlp.fc.weight"], hess["blocks.1.mlp.fc"], bits=6, clip_sigmas=11.5)
    assert torch.equal(q.codes, direct.codes) and torch.equal(q.scales, direct.scales)
    assert rows["blocks.1.mlp.fc.weight"].loss == pytest.approx(direct.loss)
    assert "GPTQ table" in caplog.text and "tok_emb.weight" in out.format_table()


def test_custom_rules_and_default_rule():
    state, hess = tiny_model(layers=1)
    recipe = QuantRecipe(rules=(RoleRule("mlp", r"\.mlp\.", 5, 8.0),), default_bits=8, default_clip_sigmas=20.0,
                         passthrough_max_numel=256)
    out = quantize_model(state, hess, recipe)
    assert out.tensors["blocks.0.mlp.proj.weight"].bits == 5
    assert out.tensors["blocks.0.attn.c_q.weight"].bits == 8
    rows = {r.name: r for r in out.table}
    assert (rows["blocks.0.mlp.proj.weight"].role, rows["blocks.0.mlp.proj.weight"].clip_sigmas) == ("mlp", 8.0)
    assert (rows["blocks.0.attn.c_q.weight"].role, rows["blocks.0.attn.c_q.weight"].clip_sigmas) == ("default", 20.0)
    # the rules' bits and clip sigmas are the ones used: the codes equal gptq_quantize's with them
    for name, bits, clip in (("blocks.0.mlp.proj.weight", 5, 8.0), ("blocks.0.attn.c_q.weight", 8, 20.0)):
        direct = gptq_quantize(state[name], hess[name[:-len(".weight")]], bits=bits, clip_sigmas=clip)
        assert torch.equal(out.tensors[name].codes, direct.codes) and torch.equal(out.tensors[name].scales, direct.scales)


def test_errors_name_the_tensor():
    state, hess = tiny_model(layers=1)
    del hess["blocks.0.mlp.fc"]
    with pytest.raises(KeyError, match="blocks.0.mlp.fc.weight"):
        quantize_model(state, hess, SMALL)
    state, hess = tiny_model(layers=1)
    state["bank"] = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(401))
    with pytest.raises(ValueError, match=r"state\['bank'\].*must be 2-D"):
        quantize_model(state, hess, SMALL)
    state, hess = tiny_model(layers=1)
    hess["blocks.0.attn.proj"] = torch.eye(31)
    with pytest.raises(ValueError, match=r"blocks.0.attn.proj.weight.*H: expected shape"):
        quantize_model(state, hess, SMALL)
    with pytest.raises(ValueError, match="bits"):
        quantize_model(*tiny_model(layers=1), QuantRecipe(default_bits=9))


def test_assign_ranks_balances_largest_first():
    assert assign_ranks([1.0, 8.0, 4.0, 4.0], 2) == [0, 0, 1, 1]  # 8→r0, 4→r1, 4→r1, 1→r0 (tie)
    assert assign_ranks([5.0, 1.0, 9.0], 2) == [1, 1, 0]
    assert assign_ranks([3.0, 3.0], 1) == [0, 0]


def _worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        state, hess = tiny_model()
        out = quantize_model(state, hess, SMALL)
        for name, t in out.tensors.items():
            if isinstance(t, QuantizedTensor):
                np.save(os.path.join(out_dir, f"{rank}.{name}.codes.npy"), t.codes.numpy())
                np.save(os.path.join(out_dir, f"{rank}.{name}.scales.npy"), t.scales.numpy())
        np.save(os.path.join(out_dir, f"{rank}.stats.npy"),
                np.array([[r.loss, r.damp_used, r.rank] for r in out.table], dtype=np.float64))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_sharding_equals_single_process(tmp_path):
    world = 2
    torch.multiprocessing.spawn(_worker, args=(world, str(tmp_path / "store"), str(tmp_path)), nprocs=world, join=True)
    state, hess = tiny_model()
    single = quantize_model(state, hess, SMALL)
    for rank in range(world):
        stats = np.load(tmp_path / f"{rank}.stats.npy", allow_pickle=False)
        assert set(stats[:, 2].astype(int)) == {0, 1}  # both ranks did work
        np.testing.assert_allclose(stats[:, 0], [r.loss for r in single.table], rtol=1e-9)
        for name, t in single.tensors.items():
            if isinstance(t, QuantizedTensor):
                codes = np.load(tmp_path / f"{rank}.{name}.codes.npy", allow_pickle=False)
                scales = np.load(tmp_path / f"{rank}.{name}.scales.npy", allow_pickle=False)
                assert np.array_equal(codes, t.codes.numpy()), name
                assert np.array_equal(scales, t.scales.numpy()), name


def test_gates_int8_and_lqer_top_k_by_residual():
    from golf_fast.artifact import dequantize_state
    from golf_fast.quant.gate import quantize_gate_int8_rows
    from golf_fast.quant.lqer import residual_norms

    state, hess = tiny_model(seed=1540)
    g = torch.Generator().manual_seed(1540)
    state["blocks.0.attn.attn_gate_w"] = torch.randn(4, 12, generator=g) * 0.1  # 48 elements: a gate
    state["blocks.1.attn.attn_gate_w"] = torch.randn(2, 12, generator=g)        # 24 < 32: fp16 like the record
    out = quantize_model(state, hess, SMALL)
    gate = out.tensors["blocks.0.attn.attn_gate_w"]
    assert out.gates == ["blocks.0.attn.attn_gate_w"] and gate.bits == 8
    assert torch.equal(gate.codes, quantize_gate_int8_rows(state["blocks.0.attn.attn_gate_w"]).codes)
    assert out.tensors["blocks.1.attn.attn_gate_w"].dtype == torch.float16
    errors = residual_norms({k: v for k, v in out.tensors.items() if k in [r.name for r in out.table]}, state)
    assert list(out.lqer) == sorted(errors, key=lambda n: -errors[n])[:3]
    dense = dequantize_state(out.tensors)
    for n in out.lqer:  # the correction lowers the residual of each chosen matrix
        assert (dense[n] - state[n]).norm() < errors[n]
    assert "LQER:" in out.format_table() and "int8 per-row gates" in out.format_table()
    # both switched off: gates fp16, no factors, GPTQ codes unchanged
    off = quantize_model(state, hess, SMALL.replace(gate_int8=False, lqer=False))
    assert list(off.tensors) == list(state) and off.tensors["blocks.0.attn.attn_gate_w"].dtype == torch.float16
    for r in out.table:
        assert torch.equal(off.tensors[r.name].codes, out.tensors[r.name].codes)
    with pytest.raises(ValueError, match="lqer_rank"):
        quantize_model(state, hess, SMALL.replace(lqer_rank=0))
