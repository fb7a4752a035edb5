"""Run log: a header (config, versions, git hash, backends), step lines, JSONL metrics, a final table.

Only rank 0 writes. Lines go to stdout and ``<run_dir>/train.log``; metrics (one JSON object per
line, with an ``event`` field) go to ``<run_dir>/metrics.jsonl``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy
import torch

import golf_fast


def git_hash() -> str:
    """The package checkout's commit (``+dirty`` when modified), or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        h = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True,
                           timeout=5)
        if h.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return h.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "golf_fast": golf_fast.__version__, "cuda": str(torch.version.cuda)}
    for mod in ("triton", "sentencepiece"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = "not installed"
    return out


class RunLog:
    def __init__(self, run_dir: Optional[Path], enabled: bool = True, stream=None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.t0 = time.perf_counter()
        self._log = self._jsonl = None
        if enabled and run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(run_dir / "train.log", "a", encoding="utf-8")
            self._jsonl = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        print(text, file=self.stream, flush=True)
        if self._log:
            self._log.write(text + "\n")
            self._log.flush()

    def metric(self, event: str, **fields: Any) -> None:
        if not self.enabled or self._jsonl is None:
            return
        rec = {"event": event, "t": round(time.perf_counter() - self.t0, 3), **fields}
        self._jsonl.write(json.dumps(rec, default=str) + "\n")
        self._jsonl.flush()

    def header(self, config_json: str, info: dict[str, Any]) -> None:
        self.line("=" * 78)
        self.line("golf_fast train")
        for k, v in info.items():
            self.line(f"{k:>12}: {v}")
        self.line("config:")
        for ln in config_json.splitlines():
            self.line("  " + ln)
        self.line("=" * 78)
        self.metric("header", config=json.loads(config_json), **info)

    def table(self, title: str, rows: list[tuple[str, Any]]) -> None:
        w = max(len(k) for k, _ in rows)
        self.line(f"---- {title} " + "-" * max(0, 72 - len(title)))
        for k, v in rows:
            self.line(f"  {k:<{w}}  {v}")
        self.line("-" * 78)

    def close(self) -> None:
        for f in (self._log, self._jsonl):
            if f:
                f.close()


def fmt_secs(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def environment() -> dict[str, str]:
    """torchrun's contract (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) as seen by this process."""
    return {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ}
