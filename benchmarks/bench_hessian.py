"""pytest-benchmark: Hessian accumulation (run with `pytest benchmarks/bench_hessian.py`).

The same cases as ``golf-fast bench --kernel hessian``: ``hessian_accumulate_`` against
``H.addmm_(X.float().T, X.float())`` at K ∈ {512, 2048} (T = 65,536 on CPU, 1,572,864 on CUDA),
both at the current thread count (``torch.set_num_threads`` / ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import pytest
import torch

from golf_fast.bench.cases.hessian import BENCHMARK

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = BENCHMARK.cases(DEVICE)


@pytest.mark.parametrize("case", CASES, ids=[c.shape for c in CASES])
@pytest.mark.parametrize("impl", ["ours", "eager"])
def test_hessian(benchmark, case, impl):
    inputs = case.make_inputs(DEVICE)
    fn = case.ours if impl == "ours" else case.eager
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    benchmark.extra_info.update(shape=case.shape, flops=case.flops, bytes=case.bytes_moved, device=str(DEVICE),
                                threads=torch.get_num_threads(), baseline=case.baseline)
    fn(inputs)  # warm-up; on CUDA this also runs the kernel's first-use self-check, outside the timing
    sync()
    benchmark.pedantic(lambda: (fn(inputs), sync()), rounds=3, iterations=1)
