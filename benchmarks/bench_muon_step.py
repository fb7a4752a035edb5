"""pytest-benchmark: one Muon step, CUDA-graph replay vs eager vs torch.compile'd NS
(run with `pytest benchmarks/bench_muon_step.py`; the cases of ``golf_fast.bench.cases.muon_step``)."""

from __future__ import annotations

import pytest

from _common import DEVICE, run_case
from golf_fast.bench.cases.muon_step import BENCHMARK

CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[c.shape for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "baseline"])
def test_muon_step(benchmark, case, impl):
    run_case(benchmark, case, impl)
