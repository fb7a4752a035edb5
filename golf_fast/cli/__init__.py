"""``golf-fast`` (or ``python -m golf_fast.cli``, also under torchrun): the package's one command line.
Each subcommand lives in its own module of this package, named as typed, that provides
``add_arguments(parser)`` and ``run(args) -> exit status``; this file only wires them. The cli floor
is the top of the layer order: nothing in the package imports it."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

# name -> (module, one-line help). Add one line per subcommand.
SUBCOMMANDS = {
    "train": ("golf_fast.cli.train", "train, quantize, write and evaluate an artifact, code bytes counted (presets: "
              "smoke, h100x1, record); --seeds for several"),
    "eval": ("golf_fast.cli.eval", "evaluate an artifact file: val_bpb, plain, sliding-window and adaptive"),
    "quantize": ("golf_fast.cli.quantize", "quantize a state_dict and fit code + artifact under 16,000,000 bytes"),
    "export": ("golf_fast.cli.export", "a records folder (self-contained train_gpt.py, README, submission.json)"),
    "data": ("golf_fast.cli.data", "build tokenizer + token shards from text; check shards"),
    "rehearse": ("golf_fast.cli.rehearse", "the whole record pipeline at record shapes on this CPU (H100 profile), "
                 "then the exported train_gpt.py without golf_fast: one table, non-zero exit on any failure"),
    "bench": ("golf_fast.cli.bench", "benchmark kernels against eager PyTorch"),
    "inspect": ("golf_fast.cli.inspect", "compile every kernel for sm_90 (no GPU needed) and report resources"),
    "gpu-check": ("golf_fast.cli.gpu_check", "one time-boxed check of a fresh H100/H200 into one report (--dry-run: CPU)"),
    "demo": ("golf_fast.cli.demo", "a short tour of the kernels on this machine"),
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

