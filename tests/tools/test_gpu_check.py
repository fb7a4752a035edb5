"""``golf-fast gpu-check``: time-boxed steps that continue on failure, one report, and the CPU dry run."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

import conftest
import golf_fast.cli as golf_fast_cli
from golf_fast.tools.gpu_check import driver as gpu_check
from golf_fast.tools.gpu_check.driver import REPORT_NAME, Step, run_steps

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def test_steps_are_time_boxed_continue_on_failure_and_share_one_report(tmp_path):
    steps = [
        Step("fails", (PY, "-c", "import sys; print('boom'); sys.exit(3)"), 20),
        Step("hangs", (PY, "-c", "import time; print('started', flush=True); time.sleep(600)"), 12),
        Step("fine", (PY, "-c", "print('x' * 3)"), 20),
        Step("starved", (PY, "-c", "print('never')"), 20, reserve_s=10_000),
    ]
    t0 = time.time()
    report = run_steps(steps, tmp_path, budget_s=120, header={"mode": "test"}, cwd=tmp_path)
    assert time.time() - t0 < 60  # the hanging step was killed at its 12 s limit
    status = {r.name: r.status for r in report.results}
    assert status == {"fails": "failed (rc 3)", "hangs": "timed out", "fine": "ok",
                      "starved": status["starved"]} and status["starved"].startswith("skipped")
    text = (tmp_path / REPORT_NAME).read_text()
    assert "| fails | failed (rc 3) |" in text and "boom" in text and "started" in text and "xxx" in text
    assert "mode: test" in text and "budget: 120 s" in text
    # one report file and one full log per step, no temporary left
    assert sorted(tmp_path.iterdir()) == [tmp_path / REPORT_NAME, tmp_path / "logs"]
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["00_fails.log", "01_hangs.log", "02_fine.log", "03_starved.log"]
    assert "boom" in (tmp_path / "logs" / "00_fails.log").read_text()


def test_long_output_keeps_head_and_tail():
    text = "\n".join(f"line {i}" for i in range(1000))
    clipped = gpu_check._clip(text)
    assert "line 0" in clipped and "line 999" in clipped and "lines cut" in clipped and "line 500" not in clipped


def test_the_real_plan_fits_eight_minutes_and_runs_what_the_issue_lists(tmp_path):
    steps = gpu_check.plan(tmp_path, ROOT, None, dry_run=False)
    names = [s.name for s in steps]
    assert names == ["environment", "offline packages", "install", "status", "kernels", "benchmarks", "gpu tests",
                     "train step", "pipeline"]
    # every step's reserve leaves room for the limits after it: nothing is starved by a budget of 470 s
    for i, s in enumerate(steps):
        assert s.reserve_s <= 470 - s.limit_s or s.reserve_s < 470, s
    assert any("bench.csv" in a for a in steps[5].argv)
    assert "--dry-run" not in steps[4].argv and "--dry-run" not in steps[1].argv


def test_the_benchmark_selection_names_real_cases():
    """Every benchmark is run, and every shape label of the GPU check's selection is a real GPU case."""
    from golf_fast.bench.registry import benchmarks

    registry = benchmarks()
    assert sorted(gpu_check.BENCH_ORDER) == sorted(registry)
    labels = {c.shape for b in registry.values() for c in b.cases(torch.device("cuda"))}
    assert [s for s in gpu_check.BENCH_SHAPES if s not in labels] == []


@pytest.mark.slow
def test_dry_run_on_cpu_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    rc = golf_fast_cli.main(["gpu-check", "--dry-run", "--out", str(out), "--budget", "400"])
    text = (out / REPORT_NAME).read_text()
    with capsys.disabled():
        print("\n" + "\n".join(ln for ln in text.splitlines() if ln.startswith("|")))
    for name in ("environment", "offline packages", "install", "status", "kernels", "gpu tests", "train step",
                 "pipeline", "benchmarks"):
        assert f"| {name} |" in text, name
    assert "kernel check:" in text and "0 failed" in text  # the smoke kernel check ran and passed
    assert '"model": "smoke"' in text  # the pipeline ran
    assert "mode: dry run (CPU)" in text
    assert rc == 0, text[-3000:]


@conftest.requires_triton
def test_interpreter_tests_skip_with_the_reason_on_another_triton(monkeypatch):
    import triton

    monkeypatch.setattr(triton, "__version__", "3.6.0")
    reason = conftest._interpreter_skip_reason()
    assert "pinned to Triton 3.9" in reason and "3.6.0" in reason
    monkeypatch.setattr(triton, "__version__", "3.9.0")
    assert conftest._interpreter_skip_reason() is None


def test_offline_wheels_are_installed_only_when_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "missing_offline_packages", lambda: [])
    assert gpu_check.install_wheels("", dry_run=False) == 0 and "all present" in capsys.readouterr().out
    monkeypatch.setattr(gpu_check, "missing_offline_packages", lambda: ["brotli", "python-minifier"])
    assert gpu_check.install_wheels(str(tmp_path / "nowhere"), dry_run=False) == 1
    assert "no wheelhouse" in capsys.readouterr().out
    assert gpu_check.install_wheels(str(tmp_path), dry_run=True) == 0
    cmd = capsys.readouterr().out
    assert "--no-index" in cmd and f"--find-links {tmp_path}" in cmd and cmd.strip().endswith("brotli python-minifier")
