"""The benchmark harness: timing, roofline arithmetic, table, CSV, command line."""

from __future__ import annotations

import csv

import pytest
import torch

import golf_fast.cli as golf_fast_cli
from golf_fast.bench.harness import BenchRow, append_csv, floor_ms, format_table, run_benchmark
from golf_fast.bench.registry import benchmarks
from golf_fast.bench.timing import DevicePeaks, measure_peaks, time_fn

PEAKS = DevicePeaks("CPU test x2 threads", copy_bytes_per_s=10e9, matmul_flops_per_s=1e11,
                    matmul_dtype="float32", matmul_size=512)


def test_time_fn_measures_cpu_work():
    t = time_fn(lambda: sum(range(20000)), torch.device("cpu"), reps=5)
    assert t.method == "cpu-perf_counter" and t.reps >= 3
    assert 0 < t.p20_ms <= t.median_ms <= t.p80_ms
    with pytest.raises(ValueError, match="reps"):
        time_fn(lambda: None, torch.device("cpu"), reps=1)


def test_floor_is_the_slower_of_compute_and_memory():
    assert floor_ms(flops=1e11, bytes_moved=0, peaks=PEAKS) == pytest.approx(1000.0)
    assert floor_ms(flops=0, bytes_moved=1e9, peaks=PEAKS) == pytest.approx(100.0)
    row = BenchRow("k", "s", "eager", eager_ms=4.0, ours_ms=2.0, floor_ms=1.0, flops=0, bytes_moved=0, timing="x")
    assert row.speedup == 2.0 and row.pct_roofline == 50.0


def test_run_benchmark_and_csv(tmp_path):
    bench = benchmarks()["int6_pack"]
    rows = run_benchmark(bench, torch.device("cpu"), PEAKS, reps=3, max_seconds=0.2,
                         shapes=["pack 512x512", "unpack 512x512"])
    assert [r.shape for r in rows] == ["pack 512x512", "unpack 512x512"]
    assert all(r.ours_ms > 0 and r.eager_ms > 0 and r.floor_ms > 0 for r in rows)
    table = format_table(rows, PEAKS)
    assert "CPU timings, not GPU" in table and "pack 512x512" in table
    path = tmp_path / "out" / "results.csv"
    append_csv(rows, PEAKS, path)
    append_csv(rows[:1], PEAKS, path)
    with open(path) as f:
        got = list(csv.DictReader(f))
    assert len(got) == 3 and got[0]["device"] == PEAKS.device_name and got[0]["torch"] == torch.__version__
    assert float(got[0]["speedup"]) == pytest.approx(rows[0].speedup, rel=1e-3)


def test_measure_peaks_quick_on_cpu():
    p = measure_peaks(torch.device("cpu"), quick=True)
    assert p.copy_bytes_per_s > 1e8 and p.matmul_flops_per_s > 1e8 and "CPU" in p.device_name


def test_cli_list_and_unknown(capsys):
    assert golf_fast_cli.main(["bench", "--list", "--device", "cpu"]) == 0
    assert "int6_pack" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown benchmark"):
        golf_fast_cli.main(["bench", "--kernel", "nope", "--device", "cpu", "--no-csv"])


def test_run_benchmark_keeps_going_past_a_failing_case_and_skips_compiled_baselines():
    from golf_fast.bench.case import BenchCase, Benchmark

    def boom(_):
        raise RuntimeError("kernel broke")

    ok = lambda _: torch.ones(4).sum()  # noqa: E731
    cases = [BenchCase("fails", lambda d: None, boom, ok),
             BenchCase("compiled", lambda d: None, ok, ok, baseline="torch.compile"),
             BenchCase("fine", lambda d: None, ok, ok)]
    bench = Benchmark("toy", lambda d: cases)
    errors: list[str] = []
    rows = run_benchmark(bench, torch.device("cpu"), PEAKS, reps=3, max_seconds=0.05, skip_compiled=True,
                         errors=errors)
    assert [r.shape for r in rows] == ["fine"]
    assert len(errors) == 1 and "toy fails" in errors[0] and "kernel broke" in errors[0]
    assert [r.shape for r in run_benchmark(bench, torch.device("cpu"), PEAKS, reps=3, max_seconds=0.05,
                                           shapes=["compiled"])] == ["compiled"]
    with pytest.raises(RuntimeError, match="kernel broke"):  # without an errors list a failure propagates
        run_benchmark(bench, torch.device("cpu"), PEAKS, reps=3, max_seconds=0.05)


def test_cli_keep_going_appends_each_benchmark_and_fails_at_the_end(tmp_path, monkeypatch, capsys):
    from golf_fast.bench import harness

    calls = []

    def fake_run(bench, device, peaks, *, errors=None, **kw):
        calls.append(bench.name)
        if bench.name == "int6_pack":
            errors.append("int6_pack x: RuntimeError: broke")
            return []
        return [BenchRow(bench.name, "s", "eager", 2.0, 1.0, 0.5, 0, 0, "cpu-perf_counter")]

    monkeypatch.setattr(harness, "run_benchmark", fake_run)
    monkeypatch.setattr(harness, "measure_peaks", lambda device: PEAKS)
    path = tmp_path / "b.csv"
    rc = golf_fast_cli.main(["bench", "--keep-going", "--kernel", "int6_pack", "--kernel", "hessian",
                             "--device", "cpu", "--csv", str(path)])
    assert rc == 1 and calls == ["int6_pack", "hessian"]
    with open(path) as f:
        assert [r["kernel"] for r in csv.DictReader(f)] == ["hessian"]
    assert "FAILED int6_pack x" in capsys.readouterr().out
