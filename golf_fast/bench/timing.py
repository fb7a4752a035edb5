"""Timing and device peaks for the benchmark harness.

GPU: CUDA events around each call, after warm-up, median of the repetitions; the L2 cache is
flushed between repetitions (a 256 MB write) so small kernels are not timed out of a warm cache.
CPU: ``time.perf_counter`` medians, labelled as CPU timings everywhere they are printed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    reps: int
    method: str  # "cuda-events" or "cpu-perf_counter"


def _quantiles(samples: list[float]) -> tuple[float, float, float]:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]  # noqa: E731
    return statistics.median(s), pick(0.2), pick(0.8)


def time_fn(fn: Callable[[], Any], device: torch.device, *, warmup: int = 3, reps: int = 20,
            max_seconds: float = 2.0) -> Timing:
    """Median time of ``fn()`` on ``device`` (at least 3 repetitions, at most ``max_seconds`` spent)."""
    if reps < 3:
        raise ValueError(f"reps: expected >= 3, got {reps}")
    if device.type == "cuda":
        flush = torch.empty(256 * 1024 * 1024 // 4, dtype=torch.float32, device=device)
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize(device)
        samples: list[float] = []
        spent = time.perf_counter()
        for _ in range(reps):
            flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
            if time.perf_counter() - spent > max_seconds and len(samples) >= 3:
                break
        med, p20, p80 = _quantiles(samples)
        return Timing(med, p20, p80, len(samples), "cuda-events")
    for _ in range(warmup):
        fn()
    samples = []
    spent = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - spent > max_seconds and len(samples) >= 3:
            break
    med, p20, p80 = _quantiles(samples)
    return Timing(med, p20, p80, len(samples), "cpu-perf_counter")


@dataclass(frozen=True)
class DevicePeaks:
    """Measured once per run: copy bandwidth (read + write bytes / s) and dense matmul rate."""

    device_name: str
    copy_bytes_per_s: float
    matmul_flops_per_s: float
    matmul_dtype: str
    matmul_size: int


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def measure_peaks(device: torch.device, quick: bool = False) -> DevicePeaks:
    """Copy bandwidth and matmul rate of ``device``: bf16 8192³ on GPU, fp32 on CPU (smaller)."""
    if device.type == "cuda":
        n_bytes, size, dtype = 1 << 30, 8192, torch.bfloat16
    else:
        n_bytes, size, dtype = (1 << 24, 512, torch.float32) if quick else (1 << 27, 1024, torch.float32)
    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    copy = time_fn(lambda: dst.copy_(src), device, reps=10)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    mm = time_fn(lambda: a @ b, device, reps=10)
    return DevicePeaks(device_name(device), 2 * n_bytes / (copy.median_ms * 1e-3),
                       2 * size**3 / (mm.median_ms * 1e-3), str(dtype).replace("torch.", ""), size)
