"""What a benchmark declares: shapes, inputs, our op, the eager-PyTorch baseline, FLOPs and bytes.

A kernel family adds one module under ``golf_fast/bench/cases/`` that defines
``BENCHMARK = Benchmark(name=..., cases=...)`` and lists it in ``golf_fast/bench/registry.py``.
``cases(device)`` returns the ``BenchCase`` list for that device (GPU shapes may differ from the
smaller CPU shapes; say so in ``Benchmark.notes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class BenchCase:
    """One shape of one benchmark.

    ``make_inputs(device)`` builds the inputs once; ``ours(inputs)`` and ``eager(inputs)`` are
    timed on them. ``flops`` and ``bytes_moved`` are the analytic counts of the operation (what
    the roofline floor is computed from), not of any particular implementation.
    """

    shape: str
    make_inputs: Callable[[torch.device], Any]
    ours: Callable[[Any], Any]
    eager: Callable[[Any], Any]
    flops: float = 0.0
    bytes_moved: float = 0.0
    baseline: str = "eager PyTorch"


@dataclass
class Benchmark:
    name: str
    cases: Callable[[torch.device], list[BenchCase]]
    description: str = ""
    notes: list[str] = field(default_factory=list)
