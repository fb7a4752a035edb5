"""pytest-benchmark: one Muon step, CUDA-graph replay vs eager vs torch.compile'd NS
(run with `pytest benchmarks/bench_muon_step.py`; the cases of ``golf_fast.bench.cases.muon_step``)."""

from __future__ import annotations

import pytest
import torch

from golf_fast.bench.cases.muon_step import BENCHMARK

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[c.shape for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "baseline"])
def test_muon_step(benchmark, case, impl):
    inputs = case.make_inputs(DEVICE)
    fn = case.ours if impl == "ours" else case.eager
    fn(inputs)  # compile / first-use self-check outside the timing
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    benchmark.extra_info.update(shape=case.shape, baseline=case.baseline, flops=case.flops, device=str(DEVICE))
    benchmark(lambda: (fn(inputs), sync()))
