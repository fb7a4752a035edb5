"""pytest-benchmark: fused LeakyReLU² MLP (run with `pytest benchmarks/bench_fused_mlp.py`).

The same cases as ``python -m golf_fast.bench --kernel fused_mlp``: ours vs eager PyTorch and vs
torch.compile at the record's per-rank shapes (forward + backward, and forward only). On a CPU
'ours' is the eager reference (see the case module's docstring).
"""

from __future__ import annotations

import pytest
import torch

from golf_fast.bench.cases.fused_mlp import BENCHMARK

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.shape} vs {c.baseline}" for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "baseline"])
def test_fused_mlp(benchmark, case, impl):
    inputs = case.make_inputs(DEVICE)
    fn = case.ours if impl == "ours" else case.eager
    fn(inputs)  # compile / first-use self-check outside the timing
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    benchmark.extra_info.update(shape=case.shape, baseline=case.baseline, flops=case.flops, device=str(DEVICE))
    benchmark(lambda: (fn(inputs), sync()))
