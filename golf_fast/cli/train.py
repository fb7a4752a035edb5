"""``golf-fast train`` — one program, also under torchrun (``torchrun ... -m golf_fast.cli train``).

    golf-fast train --preset smoke
    golf-fast train --preset smoke --model.num_layers 4 --schedule.max_wallclock_s 30
    golf-fast train --preset record --data.data_dir ./data/datasets/fineweb10B_sp8192_caseops \\
        --data.tokenizer ./data/tokenizers/fineweb_8192_bpe_caseops_v1.model      # the record trains on CaseOps
    golf-fast train --preset record --data.caseops false --data.data_dir ./data/datasets/fineweb10B_sp8192 \\
        --data.tokenizer ./data/tokenizers/fineweb_8192_bpe.model                  # plain sp8192 data
    golf-fast train --preset record --seeds 42,0,1234 --baseline 2.3194,2.3224,2.3242
    torchrun --standalone --nproc_per_node=8 -m golf_fast.cli train --preset record

Every config field is an option ``--section.field VALUE`` (a boolean alone means true); unknown ones
are rejected. Before training, the run's ``train_gpt.py`` is exported in memory
(``golf_fast.export.stub``); its counted size is the code bytes the trainer budgets with (code +
artifact ≤ 16,000,000, the quantization fitted if needed). ``--seeds`` runs the seeds one after the
other, each in ``<out_dir>/<name>/seed<N>``, then prints per-seed val_loss/val_bpb, mean, std and,
with ``--baseline``, the one-sided Welch t-test against the challenge's 0.005-nat requirement.
"""


from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from datetime import datetime
from typing import Optional

from golf_fast.artifact import ArtifactError, resolve_codec
from golf_fast.data.errors import DataError
from golf_fast.export.baseline import bytes_per_token, parse_baseline
from golf_fast.export.stats import CHALLENGE_DELTA_NATS, format_table, welch_one_sided
from golf_fast.export.stub import ExportError, build_script
from golf_fast.train.config import PRESETS, TrainConfig, apply_overrides, config_fields, metavar, preset
from golf_fast.train.device_profile import PROFILES
from golf_fast.train.loop import train
from golf_fast.train.result import RunResult, RunSetupError, TrainingDiverged


def add_config_arguments(p: argparse.ArgumentParser, default_preset: str = "smoke") -> None:
    """``--preset``, ``--print-config`` and one ``--section.field`` option per config field (``golf-fast
    train`` and ``golf-fast eval`` take the same ones)."""
    p.allow_abbrev = False  # "--model.num_layer" must be an error, not a prefix of --model.num_layers
    p.add_argument("--preset", default=default_preset, choices=sorted(PRESETS), help="starting configuration")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    g = p.add_argument_group("config overrides (--section.field VALUE)")
    for key, typ in config_fields(TrainConfig()).items():
        extra = dict(nargs="?", const="true") if typ is bool else {}  # a bare boolean flag means true
        g.add_argument(f"--{key}", dest=f"ov::{key}", default=argparse.SUPPRESS, metavar=metavar(typ), **extra)
    g.add_argument("--device-profile", dest="ov::run.device_profile", default=argparse.SUPPRESS,
                   choices=PROFILES, help="same as --run.device_profile: resolve every auto as on "
                   "this device, a CPU or an H100 (then run here through CPU stand-ins the log names)")


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
    a file, a full disk, a bad artifact, a wall-clock window shorter than the Hessian reserve). ``what`` prefixes the line (e.g. ``"seed 42: "``)."""
    try:
        return train(cfg, code_bytes=code_bytes), 0
    except TrainingDiverged as e:
        print(f"golf-fast train: {what}{e}", file=sys.stderr)
        return None, 3
    except (DataError, ArtifactError, OSError, RunSetupError) as e:
        text = str(e).strip().splitlines()
        print(f"golf-fast train: {what}{text[0] if text else type(e).__name__}", file=sys.stderr)
        return None, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
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
        cfg = resolve_checked(args)
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
        res, rc = train_reporting_errors(cfg, code_bytes=code)
        if res is None:
            return rc
        return 0 if res.submission_ok is not False else 4
    base = cfg.run.name or f"{cfg.preset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    rows, scores = [], []
    for seed in seeds:
        c = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed, name=f"seed{seed}",
                                                             out_dir=os.path.join(cfg.run.out_dir, base)))
        res, rc = train_reporting_errors(c, code_bytes=code, what=f"seed {seed}: ")
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


