"""Run benchmarks: time ours vs eager per case, compare with the roofline floor, print, save CSV.

For each case: ``floor_ms = max(flops / matmul_rate, bytes / copy_bandwidth)`` with the rates
measured on this device at the start of the run; ``% of roofline = floor_ms / ours_ms``;
``speedup = eager_ms / ours_ms``. Rows are appended to a CSV with device, versions and a
timestamp.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

import golf_fast
from golf_fast.bench.case import Benchmark
from golf_fast.bench.timing import DevicePeaks, measure_peaks, time_fn
from golf_fast.ops.dispatch import selfcheck_disabled

CSV_FIELDS = ("timestamp", "device", "timing", "kernel", "shape", "baseline", "eager_ms", "ours_ms", "speedup",
              "floor_ms", "pct_roofline", "flops", "bytes", "torch", "triton", "golf_fast", "python")


@dataclass
class BenchRow:
    kernel: str
    shape: str
    baseline: str
    eager_ms: float
    ours_ms: float
    floor_ms: float
    flops: float
    bytes_moved: float
    timing: str

    @property
    def speedup(self) -> float:
        return self.eager_ms / self.ours_ms if self.ours_ms > 0 else float("nan")

    @property
    def pct_roofline(self) -> float:
        return 100.0 * self.floor_ms / self.ours_ms if self.ours_ms > 0 and self.floor_ms > 0 else float("nan")


def floor_ms(flops: float, bytes_moved: float, peaks: DevicePeaks) -> float:
    return 1e3 * max(flops / peaks.matmul_flops_per_s, bytes_moved / peaks.copy_bytes_per_s)


def run_benchmark(bench: Benchmark, device: torch.device, peaks: DevicePeaks, *, reps: int = 20,
                  max_seconds: float = 2.0, shapes: Optional[Iterable[str]] = None, skip_compiled: bool = False,
                  errors: Optional[list[str]] = None) -> list[BenchRow]:
    """Time every case of ``bench`` on ``device`` (self-checks are run once, outside the timing).

    ``shapes``: only cases with these labels; ``skip_compiled``: leave out cases whose baseline is
    ``torch.compile``'d (their compilation can take longer than a time-boxed run has);
    ``errors``: when given, a case that raises is recorded there (``"kernel shape: Error: ..."``)
    and the next case runs; otherwise the exception propagates."""
    wanted = set(shapes) if shapes else None
    rows = []
    for case in bench.cases(device):
        if wanted and case.shape not in wanted:
            continue
        if skip_compiled and "compile" in case.baseline:
            continue
        try:
            rows.append(_run_case(bench, case, device, peaks, reps, max_seconds))
        except Exception as exc:
            if errors is None:
                raise
            errors.append(f"{bench.name} {case.shape} [{case.baseline}]: {type(exc).__name__}: {str(exc)[:300]}")
            print(f"FAILED {errors[-1]}", flush=True)
    return rows


def _run_case(bench: Benchmark, case, device: torch.device, peaks: DevicePeaks, reps: int,
              max_seconds: float) -> BenchRow:
    inputs = case.make_inputs(device)
    case.ours(inputs)  # first call: backend resolution and the GPU self-check, not timed
    with selfcheck_disabled():
        ours = time_fn(lambda: case.ours(inputs), device, reps=reps, max_seconds=max_seconds)
    eager = time_fn(lambda: case.eager(inputs), device, reps=reps, max_seconds=max_seconds)
    return BenchRow(bench.name, case.shape, case.baseline, eager.median_ms, ours.median_ms,
                    floor_ms(case.flops, case.bytes_moved, peaks), case.flops, case.bytes_moved, ours.method)


def format_table(rows: list[BenchRow], peaks: DevicePeaks) -> str:
    label = "GPU" if "CPU" not in peaks.device_name else "CPU (CPU timings, not GPU)"
    head = (f"device: {peaks.device_name} [{label}]; measured peaks: copy {peaks.copy_bytes_per_s / 1e9:.1f} GB/s, "
            f"{peaks.matmul_dtype} matmul {peaks.matmul_flops_per_s / 1e12:.2f} TFLOP/s ({peaks.matmul_size}^3)")
    cols = ("kernel", "shape", "baseline", "eager ms", "ours ms", "speedup", "floor ms", "% roofline")
    table = [cols] + [(r.kernel, r.shape, r.baseline, f"{r.eager_ms:.4f}", f"{r.ours_ms:.4f}", f"{r.speedup:.2f}x",
                       f"{r.floor_ms:.4f}", f"{r.pct_roofline:.1f}") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(cols))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)) for row in table[1:]]
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return {"torch": torch.__version__, "triton": triton_version, "golf_fast": golf_fast.__version__,
            "python": platform.python_version()}


def append_csv(rows: list[BenchRow], peaks: DevicePeaks, path: str | os.PathLike) -> None:
    """Append rows to ``path`` (header written when the file is new). The append is done on a
    copy that replaces the file atomically, so an interrupted run never leaves a torn CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    old = path.read_text() if path.exists() else ""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(old)
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if not old:
                writer.writeheader()
            for r in rows:
                d = asdict(r)
                writer.writerow({"timestamp": stamp, "device": peaks.device_name, "timing": r.timing,
                                 "kernel": r.kernel, "shape": r.shape, "baseline": r.baseline,
                                 "eager_ms": f"{r.eager_ms:.6f}", "ours_ms": f"{r.ours_ms:.6f}",
                                 "speedup": f"{r.speedup:.4f}", "floor_ms": f"{r.floor_ms:.6f}",
                                 "pct_roofline": f"{r.pct_roofline:.2f}", "flops": d["flops"],
                                 "bytes": d["bytes_moved"], **_versions()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["BenchRow", "append_csv", "floor_ms", "format_table", "measure_peaks", "run_benchmark"]
