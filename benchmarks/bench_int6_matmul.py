"""pytest-benchmark file for the int6 matmul family (not part of the test suite).

Run: ``PYTHONPATH=. pytest benchmarks/bench_int6_matmul.py`` (on a GPU: the fused kernel vs bf16
``F.linear`` and eager dequantize+matmul over the issue's shapes; on CPU: the reference at small
shapes, which times PyTorch, not the kernel). ``golf-fast bench --kernel int6_matmul``
prints the same comparison with roofline floors.
"""

from __future__ import annotations

import pytest
import torch

from golf_fast.bench.cases.int6_matmul import BENCHMARK
from golf_fast.ops.dispatch import selfcheck_disabled

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = BENCHMARK.cases(DEVICE)


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("case", [c for c in CASES if c.shape.endswith(" vs bf16")],
                         ids=lambda c: c.shape.replace(" vs bf16", "").replace(" M=", "-M"))
@pytest.mark.parametrize("impl", ["int6_linear", "bf16_linear", "dequant_then_linear"])
def test_int6_matmul(benchmark, case, impl):
    inputs = case.make_inputs(DEVICE)
    other = next(c for c in CASES if c.shape == case.shape.replace("vs bf16", "vs dequant+mm"))
    fn = {"int6_linear": case.ours, "bf16_linear": case.eager, "dequant_then_linear": other.eager}[impl]
    fn(inputs)  # first call: backend resolution and self-check
    _sync()

    def run():
        fn(inputs)
        _sync()

    with selfcheck_disabled():
        benchmark(run)
