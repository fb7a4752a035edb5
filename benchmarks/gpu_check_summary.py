"""Print a short summary of a gpu-check output folder: the step table, the kernel cases that
failed (and the counts), and bench.csv as a table (kernel, shape, baseline, eager ms, ours ms,
speedup, % roofline).

    python benchmarks/gpu_check_summary.py OUT_DIR
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def main(out: str) -> int:
    out_dir = Path(out)
    report = out_dir / "gpu_check_report.md"
    if report.exists():
        lines = report.read_text().splitlines()
        print("\n".join(ln for ln in lines[:40] if ln.startswith("|") or ln.startswith("- ")))
    jl = out_dir / "kernel_check.jsonl"
    if jl.exists():
        rows = [json.loads(ln) for ln in jl.read_text().splitlines() if ln.strip()]
        n = {k: sum(r["ok"] is v for r in rows) for k, v in (("pass", True), ("fail", False), ("info", None))}
        print(f"\nkernel cases: {n}")
        for r in rows:
            if r["ok"] is not True:
                info = {k: v for k, v in r.items() if k not in ("group", "case", "ok", "trace")}
                print(f"{'FAIL' if r['ok'] is False else 'INFO'} {r['group']}: {r['case']} {json.dumps(info)[:400]}")
    bc = out_dir / "bench.csv"
    if bc.exists():
        print("\nkernel | shape | baseline | eager ms | ours ms | speedup | % roofline")
        with open(bc, newline="") as f:
            for r in csv.DictReader(f):
                print(f"{r['kernel']} | {r['shape']} | {r['baseline']} | {float(r['eager_ms']):.4f} | "
                      f"{float(r['ours_ms']):.4f} | {float(r['speedup']):.2f}x | {float(r['pct_roofline']):.1f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python benchmarks/gpu_check_summary.py OUT_DIR")
    sys.exit(main(sys.argv[1]))
