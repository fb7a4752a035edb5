"""The fused softcapped CE and fused MLP benchmark cases: registration, analytic counts, CPU runs."""

from __future__ import annotations

import torch

from golf_fast.bench.cases import fused_mlp, softcapped_ce
from golf_fast.bench.registry import benchmarks


def test_registered_and_counts():
    assert benchmarks()["softcapped_ce"] is softcapped_ce.BENCHMARK
    assert benchmarks()["fused_mlp"] is fused_mlp.BENCHMARK
    # the record's per-rank step: 98,304 × 8,192 bf16 logits, 6 bytes each through forward + backward
    assert round(softcapped_ce.ce_bytes(98_304, 8192) / 1e9, 2) == 4.83
    assert softcapped_ce.ce_bytes(10, 7, backward=False) == 10 * 7 * 2 + 10 * 8
    # the record's MLP: 206 GFLOP per GEMM, six with the backward
    assert round(fused_mlp.mlp_flops(98_304, 512, 2048) / 6 / 1e9, 1) == 206.2
    assert fused_mlp.mlp_flops(4, 8, 16, backward=False) == 4 * 4 * 8 * 16


def test_cpu_cases_run_and_agree():
    """On CPU both sides run eager code; ours (the references) agrees with the baselines."""
    for bench in (softcapped_ce.BENCHMARK, fused_mlp.BENCHMARK):
        cases = bench.cases(torch.device("cpu"))
        assert {c.baseline for c in cases} == {"eager PyTorch", "torch.compile"}
        case = next(c for c in cases if c.baseline == "eager PyTorch" and c.shape.endswith("fwd+bwd"))
        torch.manual_seed(1850)
        inputs = case.make_inputs(torch.device("cpu"))
        ours, base = case.ours(inputs), case.eager(inputs)
        for o, b in zip(ours, base):
            scale = float(b.float().abs().max())
            assert float((o.float() - b.float()).abs().max()) <= 0.05 * scale + 1e-6
