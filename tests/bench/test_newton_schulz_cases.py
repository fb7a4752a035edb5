"""The Newton-Schulz benchmark cases: shapes, analytic counts, launch counts."""

from __future__ import annotations

import torch

from golf_fast.bench.cases.newton_schulz import BENCHMARK, PER_RANK, eager_launches, ns_bytes, ns_flops
from golf_fast.bench.registry import benchmarks
from golf_fast.ops.newton_schulz import launches_per_call


def test_registered_and_counts():
    assert benchmarks()["newton_schulz"] is BENCHMARK
    # anchor arithmetic: qo 12 GFLOP, kv 2.5, each MLP bank 24 per rank per step (5 steps)
    assert round(ns_flops(PER_RANK["qo"]) / 1e9, 1) == 12.1
    assert round(ns_flops(PER_RANK["kv"]) / 1e9, 1) == 2.5
    assert ns_flops(PER_RANK["mlp_up"]) == ns_flops(PER_RANK["mlp_down"])
    assert ns_bytes((2, 3, 4)) == 2 * 3 * 4 * 6
    assert launches_per_call(5) == 17 < eager_launches(PER_RANK["qo"])


def test_cpu_cases_run():
    cases = BENCHMARK.cases(torch.device("cpu"))
    assert {c.baseline for c in cases} == {"eager PyTorch", "torch.compile"}
    case = next(c for c in cases if c.shape.startswith("kv") and c.baseline == "eager PyTorch")
    inputs = case.make_inputs(torch.device("cpu"))
    out, base = case.ours(inputs), case.eager(inputs)
    assert all(torch.equal(o, b) for o, b in zip(out, base))  # on CPU both are the reference
