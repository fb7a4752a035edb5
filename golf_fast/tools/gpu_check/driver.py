"""``golf-fast gpu-check``: one prepared, time-boxed check of a fresh H100/H200 that cannot be wasted.

``golf-fast gpu-check [--out DIR] [--budget 470] [--wheels DIR] [--dry-run]``
(or ``bash benchmarks/gpu_check.sh``, which first makes the package importable on a bare machine).

Steps, in order of value, each a subprocess under its own time limit (its process group is killed
at the limit) that never stops the next: environment (GPU, driver, Python, torch, Triton, nvcc);
missing Python packages (brotli, python-minifier) from an offline wheelhouse; ``pip install -e .``
(the CUDA extension, or the C++ part with the reason: setup.py decides); ``golf_fast.status()``;
the kernel check (``golf_fast.tools.gpu_check.kernels``: every kernel against float64 at real and
odd shapes, all tiles, splits and dtypes, offsets past 2^31, self-checks under TF32, CUDA-graph
capture); the record-shape benchmarks against eager PyTorch into ``DIR/bench.csv``
(:data:`BENCH_ORDER`, :data:`BENCH_SHAPES`); the ``gpu``-marked tests; the record model's training
step (ms/step, our kernels against the same model without them: ``benchmarks/bench_train_step.py``);
Hessians + GPTQ + artifact at the record's shapes (``golf_fast.tools.gpu_check.pipeline``). A step
gets ``min(its limit, time left − what later steps reserve)``; a step with less than ``MIN_STEP_S``
left is skipped and says so. The whole run stays inside ``--budget`` seconds (470 by default: 8
minutes with margin for the launch).

Everything goes into one report, ``DIR/gpu_check_report.md`` (rewritten atomically after every
step, so a killed run still leaves one; each step's whole output also in ``DIR/logs/``): the
summary table, then each step's command, status, time and output (long outputs keep their head
and tail).

``--dry-run`` (CPU, tested in CI): the same steps in a small form: the kernel check with
``--smoke`` (tiny shapes under ``TRITON_INTERPRET=1``), the training step and pipeline on the smoke
model, the benchmarks' listing; the install step only prints its command.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

MIN_STEP_S = 10.0
DEFAULT_BUDGET_S = 470.0
"""8 minutes with margin for the launch; the steps' reserves are sized for it (scaled for a smaller budget)."""
REPORT_NAME = "gpu_check_report.md"
OFFLINE_PACKAGES = {"brotli": "brotli", "python_minifier": "python-minifier"}
"""import name → distribution name of packages a GPU image may lack (carried as wheels)."""
LOG_HEAD_LINES, LOG_TAIL_LINES = 60, 240


@dataclass(frozen=True)
class Step:
    """One time-boxed subprocess. ``reserve_s``: seconds kept for the steps after it."""

    name: str
    argv: tuple[str, ...]
    limit_s: float
    reserve_s: float = 0.0
    what: str = ""
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class StepResult:
    name: str
    status: str
    """``ok``, ``failed (rc N)``, ``timed out``, ``skipped (...)``."""
    seconds: float
    limit_s: float
    command: str
    output: str = ""
    log: str = ""
    """The whole output (``output`` keeps its head and tail); written to ``DIR/logs/``."""


@dataclass
class Report:
    path: Path
    header: dict
    results: list[StepResult] = field(default_factory=list)

    def render(self) -> str:
        lines = ["# golf_fast gpu-check", ""]
        lines += [f"- {k}: {v}" for k, v in self.header.items()]
        lines += ["", "| step | status | seconds | limit |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.limit_s:.0f} |" for r in self.results]
        for r in self.results:
            lines += ["", f"## {r.name}: {r.status} ({r.seconds:.1f} s of {r.limit_s:.0f} s)", "",
                      f"`{r.command}`", "", "```", r.output.rstrip(), "```"]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Atomically (temporary file, then rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        os.replace(tmp, self.path)


def _clip(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= LOG_HEAD_LINES + LOG_TAIL_LINES:
        return text
    cut = len(lines) - LOG_HEAD_LINES - LOG_TAIL_LINES
    return "\n".join(lines[:LOG_HEAD_LINES] + [f"[... {cut} lines cut ...]"] + lines[-LOG_TAIL_LINES:])


def run_step(step: Step, deadline: float, cwd: Path, env: dict, clock: Callable[[], float] = time.time,
             reserve_scale: float = 1.0) -> StepResult:
    """Run ``step`` under ``min(limit, time left − reserve × reserve_scale)``; kill its process group at the limit."""
    left = deadline - clock() - step.reserve_s * reserve_scale
    limit = min(step.limit_s, left)
    command = " ".join(step.argv)
    if limit < MIN_STEP_S:
        return StepResult(step.name, f"skipped (only {max(0.0, deadline - clock()):.0f} s left)", 0.0, max(limit, 0),
                          command)
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(step.argv), cwd=cwd, env={**env, **dict(step.env)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"failed (rc {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = "timed out"
    return StepResult(step.name, status, time.perf_counter() - t0, limit, command, _clip(out or ""), out or "")


def run_steps(steps: Sequence[Step], out_dir: Path, budget_s: float, header: dict, cwd: Path,
              env: Optional[dict] = None) -> Report:
    """Run every step in order (a failure never stops the next) and keep the report up to date."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(out_dir / REPORT_NAME, {**header, "budget": f"{budget_s:.0f} s"})
    deadline = time.time() + budget_s
    env = dict(os.environ if env is None else env)
    scale = min(1.0, budget_s / DEFAULT_BUDGET_S)
    (out_dir / "logs").mkdir(exist_ok=True)
    for i, step in enumerate(steps):
        result = run_step(step, deadline, cwd, env, reserve_scale=scale)
        report.results.append(result)
        report.write()
        log_name = f"{i:02d}_{''.join(ch if ch.isalnum() else '_' for ch in step.name)}.log"
        tmp = out_dir / "logs" / (log_name + ".tmp")
        tmp.write_text(f"$ {result.command}\n{result.log}", encoding="utf-8")
        os.replace(tmp, out_dir / "logs" / log_name)
        print(f"gpu-check: {result.name}: {result.status} ({result.seconds:.1f} s)", flush=True)
    report.header["total"] = f"{budget_s - max(0.0, deadline - time.time()):.0f} s"
    report.write()
    return report


def missing_offline_packages() -> list[str]:
    """Distribution names of :data:`OFFLINE_PACKAGES` that cannot be imported here."""
    return [dist for mod, dist in OFFLINE_PACKAGES.items() if importlib.util.find_spec(mod) is None]


BENCH_ORDER = ("int6_matmul", "newton_schulz", "fused_mlp", "softcapped_ce", "hessian", "int6_pack", "gptq",
               "muon_step", "int6_eval")
"""The benchmarks of a GPU check, most wanted first (a budget cut falls on the last)."""
BENCH_SHAPES = (
    "pack 22528x512", "unpack 22528x512", "pack 512x2048", "unpack 512x2048",
    *(f"{nk} M={m} vs {b}" for nk in ("512x512", "2048x512", "512x2048", "256x512")
      for m, b in ((1, "bf16"), (1, "dequant+mm"), (16, "bf16"), (2048, "bf16"), (16384, "bf16"))),
    "8192x4096 M=1 vs bf16", "8192x4096 M=16384 vs bf16",
    "qo (3, 512, 512)", "kv (3, 256, 512)", "mlp_up (2, 2048, 512)", "mlp_down (2, 512, 2048)",
    "per-rank step (4 banks)", "qo full (22, 512, 512)", "mlp_up full (11, 2048, 512)",
    "K=512 T=1572864 bfloat16", "K=2048 T=1572864 bfloat16",
    "512x512 int6", "2048x512 int6", "512x2048 int6",
    "per-rank Muon step (4 banks) vs eager", "8x2048 tokens vs eager",
    "N=98304 V=8192 fwd+bwd", "N=98304 V=8192 fwd", "N=16384 V=8192 fwd+bwd", "N=2048 V=8192 fwd+bwd",
    "M=98304 512->2048->512 fwd+bwd", "M=98304 512->2048->512 fwd", "M=16384 512->2048->512 fwd+bwd",
    "M=2048 512->2048->512 fwd+bwd",
)
"""The record's shapes (and a few more) of each benchmark: every case of ``bench --all`` does not fit."""


def plan(out_dir: Path, repo: Path, wheels: Optional[Path], dry_run: bool) -> list[Step]:
    """The steps of a check (see the module docstring); ``dry_run``: their small CPU form.

    Order: what the check is for first (the CUDA build, every kernel against float64, the
    benchmarks), then the gpu-marked tests, the training step and the post-training pipeline,
    which get what is left. ``reserve_s``: what is kept for the steps after, for a 470 s budget.
    Sized from the first H200 run (2026-12-04): install 29 s (CUDA part built), the kernel check
    about 210 s on a cold Triton cache (135 s cut off its int6 tile sweep), benchmarks 25 s, gpu
    tests 17 s, pipeline 17 s; the training step needed more than 120 s (three torch.compile'd
    models; on 2 shared CPU cores the dry run's smoke step takes 110-130 s): it may take 180 s."""
    py = sys.executable
    me = ("golf_fast.cli", "gpu-check")
    bench = (py, "-m", "golf_fast.cli", "bench", "--keep-going", "--no-compile", "--reps", "10",
             "--max-seconds", "0.4", "--csv", str(out_dir / "bench.csv"))
    for name in BENCH_ORDER:
        bench += ("--kernel", name)
    for shape in BENCH_SHAPES:
        bench += ("--shape", shape)
    steps = [
        Step("environment", (py, "-m", *me, "--step", "env"), 60, 410, "GPU, driver, Python, torch, Triton, nvcc"),
        Step("offline packages", (py, "-m", *me, "--step", "wheels", "--wheels", str(wheels or ""))
             + (("--dry-run",) if dry_run else ()), 60, 400, "brotli, python-minifier from the wheelhouse"),
        Step("install", (py, "-c", "print('dry run: would run: pip install --no-build-isolation --no-deps -e .')")
             if dry_run else (py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-e", str(repo)),
             200, 300, "the package and golf_fast._C (CUDA part, or C++ with the reason)",
             env=(("MAX_JOBS", str(os.cpu_count() or 4)),)),
        Step("status", (py, "-c", "import golf_fast; print(golf_fast.status())"), 40, 290),
        Step("kernels", (py, "-m", *me, "--step", "kernels", "--out", str(out_dir), "--budget",
                         "60" if dry_run else "200") + (("--dry-run",) if dry_run else ()), 120 if dry_run else 230, 60,
             "every kernel vs float64: tiles, splits, dtypes, > 2^31 offsets, TF32, capture"),
        Step("benchmarks", (py, "-m", "golf_fast.cli", "bench", "--list") if dry_run else bench, 150, 20,
             "the record-shape kernels vs eager PyTorch into bench.csv"),
        Step("gpu tests", (py, "-m", "pytest", "-m", "gpu", "-q", "-rfEs", "-p", "no:cacheprovider",
                           "tests/test_distributed.py" if dry_run else "tests"), 120, 10, "the gpu-marked tests"),
        Step("train step", (py, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "benchmarks/bench_train_step.py",
                            "--benchmark-json", str(out_dir / "train_step.json")),
             180, 0, "record model ms/step: our kernels vs without"),
        Step("pipeline", (py, "-m", *me, "--step", "pipeline") + (("--dry-run",) if dry_run else ()),
             90, 0, "Hessians + GPTQ + artifact at record shapes"),
    ]
    return steps


# --------------------------------------------------------------------------- the helpers steps call


def env_report() -> int:
    import torch

    print(f"python {sys.version.split()[0]} ({platform.platform()})")
    print(f"torch {torch.__version__} cuda {torch.version.cuda} available {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"device {p.name}: {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, sm_{p.major}{p.minor}")
    try:
        import triton
        print(f"triton {triton.__version__}")
    except ImportError as e:
        print(f"triton: not importable ({e})")
    for cmd in (["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                 "--format=csv"], ["nvcc", "--version"]):
        if shutil.which(cmd[0]) is None:
            print(f"{cmd[0]}: not found")
            continue
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        print((r.stdout + r.stderr).strip())
    print(f"cpus {os.cpu_count()}")
    print(f"offline packages missing: {missing_offline_packages() or 'none'}")
    return 0


def install_wheels(wheels: str, dry_run: bool) -> int:
    """pip-install the missing :data:`OFFLINE_PACKAGES` from ``wheels`` with no network."""
    missing = missing_offline_packages()
    if not missing:
        print("all present:", ", ".join(OFFLINE_PACKAGES.values()))
        return 0
    if not wheels or not Path(wheels).is_dir():
        print(f"missing {missing} and no wheelhouse (--wheels DIR); see README 'GPU check' for building one")
        return 1
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--find-links", wheels, *missing]
    print(" ".join(cmd))
    if dry_run:
        return 0
    return subprocess.run(cmd).returncode


def run_check(out: str, budget_s: float, wheels: Optional[str], dry_run: bool) -> int:
    """Run every step of :func:`plan` into ``out``; 0 when all passed, 1 otherwise."""
    if not budget_s > 0:
        raise ValueError(f"budget_s: expected seconds > 0, got {budget_s}")
    repo = Path(__file__).resolve().parents[3]
    out_dir = Path(out).resolve()
    wheel_dir = Path(wheels).resolve() if wheels else None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    header = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "repo": str(repo),
              "mode": "dry run (CPU)" if dry_run else "GPU", "host": platform.node()}
    report = run_steps(plan(out_dir, repo, wheel_dir, dry_run), out_dir, budget_s, header, repo, env)
    print(f"report: {report.path}")
    return 0 if all(r.status == "ok" for r in report.results) else 1
