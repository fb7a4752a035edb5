"""What the pytest-benchmark files of the kernel families share: the device and one timed case.

Imported as ``_common`` (pytest puts this folder on ``sys.path`` for the ``bench_*.py`` files).
"""

from __future__ import annotations

import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_case(benchmark, case, impl: str) -> None:
    """Time ``case.ours`` (``impl == "ours"``) or ``case.eager`` on the case's inputs on ``DEVICE``.

    One untimed call first (compile / first-use self-check); each timed call ends with a CUDA
    synchronize on a GPU. The case's shape, baseline and flops go into ``benchmark.extra_info``.
    """
    inputs = case.make_inputs(DEVICE)
    fn = case.ours if impl == "ours" else case.eager
    fn(inputs)  # compile / first-use self-check outside the timing
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    benchmark.extra_info.update(shape=case.shape, baseline=case.baseline, flops=case.flops, device=str(DEVICE))
    benchmark(lambda: (fn(inputs), sync()))
