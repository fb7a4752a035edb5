"""Benchmark of int6 pack/unpack at the record's weight shapes (one-shot format conversions).

Bytes: pack reads N·K int8 and writes 0.75·N·K; unpack the reverse. No FLOPs. Baseline: the
eager reference (``pack_int6_ref`` / ``unpack_int6_ref``, a handful of PyTorch ops).
"""

from __future__ import annotations

import torch

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.ops.int6_pack import pack_int6, pack_int6_ref, packed_row_bytes, unpack_int6, unpack_int6_ref

GPU_SHAPES = ((512, 512), (2048, 512), (512, 2048), (8192, 512), (11 * 2048, 512))
CPU_SHAPES = ((512, 512), (2048, 512), (8192, 512))


def _cases(device: torch.device) -> list[BenchCase]:
    cases = []
    for n, k in GPU_SHAPES if device.type == "cuda" else CPU_SHAPES:
        def make(dev, n=n, k=k):
            codes = torch.randint(-31, 32, (n, k), dtype=torch.int8, device=dev)
            return codes, pack_int6_ref(codes), k

        moved = n * k + n * packed_row_bytes(k)
        cases.append(BenchCase(f"pack {n}x{k}", make, lambda a: pack_int6(a[0]), lambda a: pack_int6_ref(a[0]),
                               bytes_moved=moved, baseline="eager reference"))
        cases.append(BenchCase(f"unpack {n}x{k}", make, lambda a: unpack_int6(a[1], a[2]),
                               lambda a: unpack_int6_ref(a[1], a[2]), bytes_moved=moved,
                               baseline="eager reference"))
    return cases


BENCHMARK = Benchmark(
    name="int6_pack",
    cases=_cases,
    description="int6 codes <-> packed 2+4 bit planes (memory-bound format conversion)",
    notes=["on CPU 'ours' is the C++ kernel (golf_fast._C) when built, else the reference"],
)
