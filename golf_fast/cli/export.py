"""``golf-fast export RUN_DIR --out DIR``: a records folder from one run or a folder of seed runs.

    golf-fast export runs/record-3seeds --out records/2026-12-01_MyRecord --name "My record" \\
        --author "Me" --github-id me --baseline 2.3194,2.3224,2.3242

    golf-fast export --preset record --code-bytes     # the counted code bytes, per module
    golf-fast export --preset record --code-bytes --explain   # + what tree shaking kept and dropped

Writes train_gpt.py (self-contained, minified, wrapped), README.md, submission.json,
requirements.txt and train_seed<N>.log. A run that is not a record (non-compliant evaluation,
over budget, over time, not 8×H100, < 3 seeds) is exported as a non-record submission with the
reasons in its README; ``--require-record`` makes that an error (exit status 5) instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from golf_fast.export.baseline import bytes_per_token, parse_baseline
from golf_fast.export.records import load_runs, review, write_folder
from golf_fast.export.stats import CHALLENGE_DELTA_NATS, welch_one_sided
from golf_fast.export.gather import gather
from golf_fast.export.stub import ENTRY, FULL, Lean, build_script, module_bytes
from golf_fast.export.entry import config_from_dict
from golf_fast.train.config import PRESETS, preset


def print_code_bytes(args: argparse.Namespace) -> int:
    """``--code-bytes``: build the script of RUN_DIR's configuration (or ``--preset``) and print
    what each module weighs and what the file counts."""
    try:
        if args.run_dir and args.preset:
            raise ValueError("--preset: give a preset or RUN_DIR, not both")
        cfg = config_from_dict(load_runs(args.run_dir)[0].config) if args.run_dir else preset(args.preset or "record")
        lean = Lean(messages=not args.strip_messages)
        script = build_script(cfg, per_module=True, lean=lean)
        before = {r.name: r for r in module_bytes(gather(ENTRY), FULL)}
    except (FileNotFoundError, ValueError) as e:
        print(f"golf-fast export: {e}", file=sys.stderr)
        return 2
    if args.explain and script.shaken is not None:
        for name, rep in script.shaken.report.items():
            if name not in script.modules:
                continue
            print(f"{name}: kept {len(rep.kept)}, dropped {len(rep.dropped)}")
            for n in rep.notes:
                print(f"  note: {n}")
            if rep.dropped:
                print("  dropped: " + ", ".join(rep.dropped))
        gone = sorted(set(before) - set(script.modules))
        print(f"modules dropped ({len(gone)}): {', '.join(gone) or '-'}")
    print(f"{'module':<48} {'raw':>8} {'minified':>9} {'alone':>7} {'before':>7}")
    for r in script.per_module:
        b = before.get(r.name)
        print(f"{r.name:<48} {r.raw:>8,} {r.minified:>9,} {r.compressed_alone:>7,} {b.compressed_alone if b else 0:>7,}")
    print(f"{len(script.modules)} modules (of {len(before)} before tree shaking), "
          f"{len(script.per_module) - len(script.modules)} data files; "
          f"raw {script.raw_bytes:,} B, minified bundle {script.minified_bytes:,} B "
          f"('alone' = brotli-11 of one module after shaking and the lean steps, 'before' = the same of the "
          f"whole module minified only; the file compresses them as one stream)")
    what = ", error messages stripped (measurement only)" if args.strip_messages else ""
    print(f"counted code bytes: {script.counted} ({script.wrapper}, preset {cfg.preset}{what})")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", default=None,
                   help="a run folder (metrics.jsonl, train.log) or a folder of seed runs")
    p.add_argument("--out", default=None, help="the records folder to write (required unless --code-bytes)")
    p.add_argument("--code-bytes", action="store_true",
                   help="print the exported script's counted code bytes (per module too) and write nothing")
    p.add_argument("--explain", action="store_true",
                   help="with --code-bytes: per module, the names tree shaking kept and dropped")
    p.add_argument("--strip-messages", action="store_true",
                   help="with --code-bytes: measure the script with builtin exceptions' and asserts' messages "
                        "stripped (golf_fast.export.lean.strip_messages; never written by export)")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="with --code-bytes and no RUN_DIR: the configuration to export (default record)")
    p.add_argument("--name", default="", help="submission name (default: the run folder's name)")
    p.add_argument("--author", default="")
    p.add_argument("--github-id", default="")
    p.add_argument("--blurb", default="")
    p.add_argument("--baseline", default="", help="baseline scores: comma-separated numbers or a folder of logs")
    p.add_argument("--baseline-metric", default="val_loss", choices=("val_loss", "val_bpb"),
                   help="unit of --baseline numbers (logs give both)")
    p.add_argument("--delta", type=float, default=CHALLENGE_DELTA_NATS, help="required improvement in nats")
    p.add_argument("--require-record", action="store_true", help="fail instead of exporting a non-record")


def run(args: argparse.Namespace) -> int:
    if args.code_bytes:
        return print_code_bytes(args)
    if not args.run_dir or not args.out or args.preset or args.explain or args.strip_messages:
        print("golf-fast export: RUN_DIR and --out are required (--preset only with --code-bytes, "
              "--explain and --strip-messages too)", file=sys.stderr)
        return 2
    try:
        runs = load_runs(args.run_dir)
        cfg = config_from_dict(runs[0].config)
        script = build_script(cfg)
        rv = review(runs, script, baseline=bool(args.baseline))
        test = None
        if args.baseline and len(runs) < 2:
            rv.reasons.append("the significance test needs at least 2 seeds; not tested")
            rv.record = False
        elif args.baseline:
            scores = [r.score() for r in runs if r.score()]
            base = parse_baseline(args.baseline, args.baseline_metric, bytes_per_token(scores))
            test = welch_one_sided([s["val_loss"] for s in scores], base, args.delta)
            if not test.passes():
                rv.reasons.append(f"the improvement over the baseline is not significant: p = {test.p:.3g} "
                                  f"(needs > {args.delta} nats at p < 0.01)")
                rv.record = False
    except (FileNotFoundError, ValueError) as e:
        print(f"golf-fast export: {e}", file=sys.stderr)
        return 2
    if args.require_record and not rv.record:
        print("golf-fast export: not a record:\n  " + "\n  ".join(rv.reasons), file=sys.stderr)
        return 5
    files = write_folder(args.out, runs, script, rv, name=args.name or Path(args.run_dir).resolve().name,
                         author=args.author, github_id=args.github_id, blurb=args.blurb, test=test)
    print(f"wrote {args.out}: {', '.join(files)}")
    print(f"train_gpt.py: raw sources {script.raw_bytes:,} B, minified bundle {script.minified_bytes:,} B, "
          f"counted {script.counted:,} B ({script.wrapper})")
    print("record" if rv.record else "NON-RECORD:\n  " + "\n  ".join(rv.reasons))
    return 0
