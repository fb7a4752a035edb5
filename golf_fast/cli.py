"""``golf-fast``: the package's command line. Each subcommand lives in its own module that
provides ``add_arguments(parser)`` and ``run(args) -> exit status``; this file only wires them."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# name -> (module, one-line help). Add one line per subcommand.
SUBCOMMANDS = {
    "demo": ("golf_fast.demo", "a short tour of the kernels on this machine"),
    "inspect": ("golf_fast.tools.inspect", "compile every kernel for sm_90 (no GPU needed) and report resources"),
    "bench": ("golf_fast.bench.cli", "benchmark kernels against eager PyTorch"),
    "quantize": ("golf_fast.artifact.cli", "quantize a state_dict and fit code + artifact under 16,000,000 bytes"),
    "train": ("golf_fast.export.train_cli", "train, quantize, write and evaluate an artifact (presets: smoke, h100x1, "
              "record); --seeds for several"),
    "export": ("golf_fast.export.cli", "a records folder (self-contained train_gpt.py, README, submission.json)"),
    "eval": ("golf_fast.eval.cli", "evaluate an artifact file: val_bpb, plain and sliding-window"),
    "data": ("golf_fast.data.cli", "build tokenizer + token shards from text; check shards"),
    "gpu-check": ("golf_fast.tools.gpu_check", "one time-boxed check of a fresh H100/H200 into one report (--dry-run: CPU)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="golf-fast", description="golf_fast: kernels and trainer for parameter golf")
    p.add_argument("-v", "--verbose", action="store_true", help="log resolved backends and progress")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(sp)
        sp.set_defaults(_module=module)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
