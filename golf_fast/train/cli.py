"""``golf-fast train`` (and ``torchrun --nproc_per_node=N -m golf_fast.train``, the same program).

    golf-fast train --preset smoke
    golf-fast train --preset record --data.data_dir ./data/datasets/fineweb10B_sp8192_caseops \\
        --data.tokenizer ./data/tokenizers/fineweb_8192_bpe_caseops_v1.model      # the record trains on CaseOps
    golf-fast train --preset record --data.caseops false --data.data_dir ./data/datasets/fineweb10B_sp8192 \\
        --data.tokenizer ./data/tokenizers/fineweb_8192_bpe.model                  # plain sp8192 data
    golf-fast train --preset smoke --model.num_layers 4 --schedule.max_wallclock_s 30
    golf-fast train --preset smoke --data.caseops          # CaseOps data, val_bpb from the byte sidecars

Every config field is an option ``--section.field VALUE`` (a boolean alone means true); unknown ones
are rejected.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from golf_fast.artifact import ArtifactError, resolve_codec
from golf_fast.data.errors import DataError
from golf_fast.train.config import PRESETS, TrainConfig, apply_overrides, config_fields, metavar, preset
from golf_fast.train.loop import train
from golf_fast.train.result import RunResult, TrainingDiverged


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.allow_abbrev = False  # "--model.num_layer" must be an error, not a prefix of --model.num_layers
    p.add_argument("--preset", default="smoke", choices=sorted(PRESETS), help="starting configuration")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    g = p.add_argument_group("config overrides (--section.field VALUE)")
    for key, typ in config_fields(TrainConfig()).items():
        extra = dict(nargs="?", const="true") if typ is bool else {}  # a bare boolean flag means true
        g.add_argument(f"--{key}", dest=f"ov::{key}", default=argparse.SUPPRESS, metavar=metavar(typ), **extra)


def resolve(args: argparse.Namespace) -> TrainConfig:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("ov::")}
    return apply_overrides(preset(args.preset), overrides)


def resolve_checked(args: argparse.Namespace) -> TrainConfig:
    """:func:`resolve`, with the artifact's codec resolved now rather than after the whole run.
    Raises ValueError on any bad override."""
    cfg = resolve(args)
    if cfg.quant.enabled:
        resolve_codec(cfg.quant.codec)
    return cfg


def train_reporting_errors(cfg: TrainConfig, code_bytes: Optional[int] = None,
                           what: str = "") -> tuple[Optional[RunResult], int]:
    """``train(cfg, code_bytes)`` for a command line: ``(result, 0)``, or ``(None, exit code)`` after
    one line on stderr for what a user can fix (3: the loss diverged; 2: bad data, a path that is not
    a file, a full disk, a bad artifact). ``what`` prefixes the line (e.g. ``"seed 42: "``)."""
    try:
        return train(cfg, code_bytes=code_bytes), 0
    except TrainingDiverged as e:
        print(f"golf-fast train: {what}{e}", file=sys.stderr)
        return None, 3
    except (DataError, ArtifactError, OSError) as e:
        text = str(e).strip().splitlines()
        print(f"golf-fast train: {what}{text[0] if text else type(e).__name__}", file=sys.stderr)
        return None, 2


def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve_checked(args)
    except ValueError as e:
        print(f"golf-fast train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    return train_reporting_errors(cfg)[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golf_fast.train", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
