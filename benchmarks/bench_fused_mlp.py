"""pytest-benchmark: fused LeakyReLU² MLP (run with `pytest benchmarks/bench_fused_mlp.py`).

The same cases as ``golf-fast bench --kernel fused_mlp``: ours vs eager PyTorch and vs
torch.compile at the record's per-rank shapes (forward + backward, and forward only). On a CPU
'ours' is the eager reference (see the case module's docstring).
"""

from __future__ import annotations

import pytest

from _common import DEVICE, run_case
from golf_fast.bench.cases.fused_mlp import BENCHMARK

CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.shape} vs {c.baseline}" for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "baseline"])
def test_fused_mlp(benchmark, case, impl):
    run_case(benchmark, case, impl)
