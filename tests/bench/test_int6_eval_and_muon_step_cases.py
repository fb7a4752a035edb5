"""The int6_eval and muon_step benchmark cases build and run on CPU (eager baselines only: the
torch.compile baselines take minutes to compile on a small CPU and are benchmark-time work)."""

import pytest
import torch

from golf_fast.bench.registry import benchmarks

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["int6_eval", "muon_step"])
def test_cases_have_eager_and_compiled_baselines_and_run(name):
    cases = benchmarks()[name].cases(CPU)
    assert [("compile" in c.baseline) for c in cases] == [False, True] * (len(cases) // 2)
    assert all(c.flops > 0 and c.bytes_moved > 0 for c in cases)
    eager = cases[0]
    inputs = eager.make_inputs(CPU)
    a, b = eager.ours(inputs), eager.eager(inputs)
    if name == "int6_eval":  # the int6 model and the dequantized one compute the same logits
        assert a.shape == b.shape
        assert float((a.float() - b.float()).abs().max()) < 0.05 * float(b.float().abs().max())
