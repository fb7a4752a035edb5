"""``golf-fast train``: the trainer with measured code bytes, several seeds and the significance test.

    golf-fast train --preset smoke
    golf-fast train --preset record --seeds 42,0,1234 --baseline 2.3194,2.3224,2.3242
    torchrun --standalone --nproc_per_node=8 -m golf_fast.export.train_cli --preset record --seeds 42

Before training, the run's ``train_gpt.py`` is exported in memory (``golf_fast.export.stub``);
its counted size is the code bytes the trainer budgets with (code + artifact ≤ 16,000,000, the
quantization fitted if needed). ``--seeds`` runs the seeds one after the other, each in
``<out_dir>/<name>/seed<N>``, then prints per-seed val_loss/val_bpb, mean, std and, with
``--baseline``, the one-sided Welch t-test against the challenge's 0.005-nat requirement.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime

from golf_fast.export.baseline import bytes_per_token, parse_baseline
from golf_fast.export.stats import CHALLENGE_DELTA_NATS, format_table, welch_one_sided
from golf_fast.export.stub import ExportError, build_script
from golf_fast.train import cli as train_cli


def add_arguments(p: argparse.ArgumentParser) -> None:
    train_cli.add_arguments(p)
    p.add_argument("--seeds", default="", help="comma-separated seeds, run one after the other")
    p.add_argument("--baseline", default="", help="baseline scores: comma-separated numbers or a folder of logs")
    p.add_argument("--baseline-metric", default="val_loss", choices=("val_loss", "val_bpb"))
    p.add_argument("--delta", type=float, default=CHALLENGE_DELTA_NATS, help="required improvement in nats")
    p.add_argument("--no-code-bytes", action="store_true",
                   help="do not export/count the script (the run is then not a submission)")


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: repeated seeds in {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    try:
        cfg = train_cli.resolve_checked(args)
        seeds = parse_seeds(args.seeds) if args.seeds else []
    except ValueError as e:
        print(f"golf-fast train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    code = None
    if not args.no_code_bytes:
        try:
            script = build_script(cfg)
            code = script.counted
            print(f"code bytes: {code:,} (exported train_gpt.py: {len(script.modules)} modules, "
                  f"{script.raw_bytes:,} B raw → {script.counted:,} B {script.wrapper})")
        except ExportError as e:
            print(f"golf-fast train: cannot export the script, so code bytes are unknown: {e}", file=sys.stderr)
    if not seeds:
        res, rc = train_cli.train_reporting_errors(cfg, code_bytes=code)
        if res is None:
            return rc
        return 0 if res.submission_ok is not False else 4
    base = cfg.run.name or f"{cfg.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    rows, scores = [], []
    for seed in seeds:
        c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed, name=f"seed{seed}",
                                                             out_dir=os.path.join(cfg.run.out_dir, base)))
        res, rc = train_cli.train_reporting_errors(c, code_bytes=code, what=f"seed {seed}: ")
        if res is None:
            return rc
        s = res.adaptive or res.round_trip_sliding or res.round_trip or res.pre_quant_sliding or res.pre_quant
        rows.append((seed, s["val_loss"], s["val_bpb"]))
        scores.append(s)
    test = None
    if args.baseline:
        try:
            base_vals = parse_baseline(args.baseline, args.baseline_metric, bytes_per_token(scores))
            test = welch_one_sided([r[1] for r in rows], base_vals, args.delta) if len(rows) >= 2 else None
        except (ValueError, FileNotFoundError) as e:
            print(f"golf-fast train: {e}", file=sys.stderr)
            return 2
    print(f"runs in {cfg.run.out_dir}/{base}")
    print(format_table(rows, test))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="golf-fast train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
