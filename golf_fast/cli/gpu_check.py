"""``golf-fast gpu-check``: one prepared, time-boxed check of a fresh H100/H200 into one report.

    golf-fast gpu-check --out OUT [--budget 470] [--wheels DIR]
    golf-fast gpu-check --dry-run --out /tmp/gc         # the small CPU form of every step (CI)

The driver (``golf_fast.tools.gpu_check.driver``) runs each step as a time-boxed subprocess of this
same command with ``--step``: ``env`` (environment report), ``wheels`` (offline packages),
``kernels`` (every kernel against float64), ``pipeline`` (Hessians → GPTQ → artifact at record shapes).
"""

from __future__ import annotations

import argparse

STEPS = ("env", "wheels", "kernels", "pipeline")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from golf_fast.tools.gpu_check.driver import DEFAULT_BUDGET_S

    p.add_argument("--out", default="gpu_check_out", help="folder for the report, bench.csv, kernel_check.jsonl")
    p.add_argument("--budget", type=float, default=None,
                   help=f"seconds for the whole check (default {DEFAULT_BUDGET_S:.0f}; the kernels step: 170)")
    p.add_argument("--wheels", default=None, help="offline wheelhouse for brotli and python-minifier")
    p.add_argument("--dry-run", action="store_true", help="the small CPU form of every step (CI)")
    p.add_argument("--step", choices=STEPS, default=None, help="run one step of the check alone")
    p.add_argument("--batches", type=int, default=16, help="pipeline step: calibration batches (record: 16)")


def run(args: argparse.Namespace) -> int:
    from golf_fast.tools.gpu_check import driver

    if args.step == "env":
        return driver.env_report()
    if args.step == "wheels":
        return driver.install_wheels(args.wheels or "", args.dry_run)
    if args.step == "kernels":
        from golf_fast.tools.gpu_check.kernels import run_kernel_check

        return run_kernel_check(args.out, 170.0 if args.budget is None else args.budget, smoke=args.dry_run)
    if args.step == "pipeline":
        from golf_fast.tools.gpu_check.pipeline import run_pipeline

        return run_pipeline(args.batches, smoke=args.dry_run)
    budget = driver.DEFAULT_BUDGET_S if args.budget is None else args.budget
    try:
        return driver.run_check(args.out, budget, args.wheels, args.dry_run)
    except ValueError as e:
        print(f"golf-fast gpu-check: {e}")
        return 2
