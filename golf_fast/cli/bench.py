"""Command line of the benchmark harness (also ``golf-fast bench``)."""

from __future__ import annotations

import argparse

import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the benchmarks and their shapes")
    what.add_argument("--kernel", action="append", metavar="NAME", help="run one benchmark (repeatable)")
    what.add_argument("--all", action="store_true", help="run every benchmark")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--shape", action="append", help="only these shape labels (repeatable)")
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per case (default 20)")
    p.add_argument("--max-seconds", type=float, default=2.0, help="time cap per timed function (default 2)")
    p.add_argument("--csv", default="bench_results/results.csv", help="CSV file the rows are appended to")
    p.add_argument("--no-csv", action="store_true", help="do not write the CSV")
    p.add_argument("--no-compile", action="store_true",
                   help="leave out the torch.compile baselines (their compilation is slow on a time-boxed run)")
    p.add_argument("--keep-going", action="store_true",
                   help="a case that fails is reported and the next runs (exit status 1 at the end); the CSV "
                        "is appended after each benchmark, so a run killed later keeps the rows before")


def run(args: argparse.Namespace) -> int:
    from golf_fast.bench.harness import append_csv, format_table, measure_peaks, run_benchmark
    from golf_fast.bench.registry import benchmarks

    registry = benchmarks()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.list:
        for name, bench in registry.items():
            shapes = ", ".join(c.shape for c in bench.cases(device))
            print(f"{name}: {bench.description}\n    {device.type} shapes: {shapes}")
        return 0
    names = list(registry) if args.all else args.kernel
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise SystemExit(f"--kernel: unknown benchmark(s) {unknown}; known: {sorted(registry)}")
    peaks = measure_peaks(device)
    rows: list = []
    errors: list[str] = []
    for name in names:
        new = run_benchmark(registry[name], device, peaks, reps=args.reps, max_seconds=args.max_seconds,
                            shapes=args.shape, skip_compiled=args.no_compile,
                            errors=errors if args.keep_going else None)
        rows += new
        for note in registry[name].notes:
            print(f"note ({name}): {note}")
        if args.keep_going:
            print(format_table(new, peaks), flush=True)
            if not args.no_csv and new:
                append_csv(new, peaks, args.csv)
    print(format_table(rows, peaks))
    if not args.no_csv:
        if not args.keep_going:
            append_csv(rows, peaks, args.csv)
        print(f"appended {len(rows)} rows to {args.csv}")
    for e in errors:
        print(f"FAILED {e}")
    return 1 if errors else 0
