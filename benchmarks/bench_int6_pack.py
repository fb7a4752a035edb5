"""pytest-benchmark: int6 pack/unpack (run with `pytest benchmarks/bench_int6_pack.py`).

The same cases as ``golf-fast bench --kernel int6_pack``; pytest-benchmark adds its
statistics and `--benchmark-compare` across commits.
"""

from __future__ import annotations

import pytest
import torch

from golf_fast.bench.cases.int6_pack import BENCHMARK

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[c.shape for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "eager"])
def test_int6_pack(benchmark, case, impl):
    inputs = case.make_inputs(DEVICE)
    fn = case.ours if impl == "ours" else case.eager
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    benchmark.extra_info.update(shape=case.shape, bytes=case.bytes_moved, device=str(DEVICE))
    benchmark(lambda: (fn(inputs), sync()))
