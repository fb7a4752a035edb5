"""pytest-benchmark: Newton-Schulz (run with `pytest benchmarks/bench_newton_schulz.py`).

The same cases as ``golf-fast bench --kernel newton_schulz``: ours vs eager PyTorch
and vs torch.compile at the record's per-rank bank shapes (and the full banks on a GPU). On a
CPU 'ours' is the eager reference (see the case module's docstring).
"""

from __future__ import annotations

import pytest

from _common import DEVICE, run_case
from golf_fast.bench.cases.newton_schulz import BENCHMARK

CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.shape} vs {c.baseline}" for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "baseline"])
def test_newton_schulz(benchmark, case, impl):
    run_case(benchmark, case, impl)
