"""Benchmark of the fused int6-dequant matmul (``golf_fast.int6_linear``) against bf16 cuBLAS.

Shapes (N, K): the record's matrices (512, 512), (256, 512), (2048, 512), (512, 2048), (8192, 512)
and two bandwidth-bound ones, (8192, 4096) and (4096, 8192); M ∈ {1, 8, 16, 64, 256, 2048, 16384}.
Two cases per (N, K, M), each with its own baseline:

* ``vs bf16``: ``F.linear(x, W)`` with ``W`` the dequantized bf16 weight (cuBLAS; the record's eval);
* ``vs dequant+mm``: eager ``dequantize_int6_ref`` then ``F.linear`` (what a model stored as int6
  does without a fused kernel);
* ``vs compiled dequant+mm`` (GPU, M ≤ 16, the record's shapes): the same under
  ``torch.compile(dynamic=False, fullgraph=True)``, which fuses the unpacking into one kernel.

At M ≤ 16 (predicted, not measured; H100: DRAM latency L ≈ 0.8 µs, 3.0 TB/s, ~2 µs eager launch):
a program keeps ``num_stages`` K blocks of loads in flight, so it streams its K range in
``ceil(blocks / stages)`` rounds of ~L. 512×2048 unsplit: 16 programs × 3 rounds ≈ 2.4 µs;
split 11 ways (176 programs, one round each) ≈ L + 0.5 µs fix-up ≈ 1.3 µs. 512×512 and
2048×512 (K = 512: one round, 16 and 64 programs) ≈ L, not split. 8192×512: 256 programs,
3.1 MB at 3.0 TB/s ≈ 1.05 µs + L. Add the launch to each; bf16 ``F.linear`` moves 2.67× the
weight bytes (8.4 MB at 8192×512: ≈ 2.8 µs + L).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from golf_fast.bench.case import Benchmark, BenchCase
from golf_fast.ops.int6_matmul import dequantize_int6_ref, int6_linear
from golf_fast.ops.int6_pack import pack_int6, packed_row_bytes

RECORD_SHAPES = ((512, 512), (256, 512), (2048, 512), (512, 2048), (8192, 512))
LARGE_SHAPES = ((8192, 4096), (4096, 8192))
GPU_MS = (1, 8, 16, 64, 256, 2048, 16384)
CPU_SHAPES = ((512, 512), (2048, 512))
CPU_MS = (1, 64, 512)


def int6_linear_bytes(m: int, n: int, k: int) -> float:
    """Bytes the fused op must move: packed codes + scales + x + y (bf16)."""
    return n * packed_row_bytes(k) + 2 * n + 2 * m * k + 2 * m * n


def _make(m: int, n: int, k: int):
    def make(dev: torch.device):
        codes = torch.randint(-31, 32, (n, k), dtype=torch.int8, device=dev)
        scales = (torch.rand(n, device=dev) * 0.01 + 1e-3).to(torch.float16)
        packed = pack_int6(codes)
        w = (codes.float() * scales.float()[:, None]).to(torch.bfloat16)
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        return x, packed, scales, w, k
    return make


def _ours(a):
    return int6_linear(a[0], a[1], a[2])


def _bf16_linear(a):
    return F.linear(a[0], a[3])


def _dequant_then_linear(a):
    return F.linear(a[0], dequantize_int6_ref(a[1], a[2], a[4], torch.bfloat16))


def _compiled_dequant_then_linear():
    fn = torch.compile(lambda x, packed, scales, k: F.linear(x, dequantize_int6_ref(packed, scales, k, torch.bfloat16)),
                       dynamic=False, fullgraph=True)
    return lambda a: fn(a[0], a[1], a[2], a[4])


def _cases(device: torch.device) -> list[BenchCase]:
    gpu = device.type == "cuda"
    shapes = RECORD_SHAPES + LARGE_SHAPES if gpu else CPU_SHAPES
    cases = []
    for n, k in shapes:
        for m in GPU_MS if gpu else CPU_MS:
            make = _make(m, n, k)
            flops = 2.0 * m * n * k
            moved = float(int6_linear_bytes(m, n, k))
            label = f"{n}x{k} M={m}"
            cases.append(BenchCase(f"{label} vs bf16", make, _ours, _bf16_linear, flops=flops, bytes_moved=moved,
                                   baseline="bf16 F.linear on dequantized W"))
            cases.append(BenchCase(f"{label} vs dequant+mm", make, _ours, _dequant_then_linear, flops=flops,
                                   bytes_moved=moved, baseline="eager dequantize then F.linear"))
            if gpu and m <= 16 and (n, k) in RECORD_SHAPES:
                cases.append(BenchCase(f"{label} vs compiled dequant+mm", make, _ours, _compiled_dequant_then_linear(),
                                       flops=flops, bytes_moved=moved,
                                       baseline="torch.compile(dequantize then F.linear)"))
    return cases


BENCHMARK = Benchmark(
    name="int6_matmul",
    cases=_cases,
    description="fused int6-dequant matmul y = x·(code·s)ᵀ vs bf16 F.linear and eager dequantize+matmul",
    notes=["GPU goals (predicted until measured on an H100): large shapes M<=16 >=2x bf16 F.linear "
           "(byte limit 2.67x) and >=4x eager dequant+mm; M>=2048 >=0.9x bf16 cuBLAS; record shapes "
           "at small M within 10% of bf16 F.linear",
           "on CPU 'ours' is the eager reference (the Triton kernels need a GPU): CPU timings say nothing "
           "about the kernel"],
)
