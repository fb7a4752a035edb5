"""``golf-fast rehearse --preset record``: the record pipeline end to end on this CPU, at record shapes.

    golf-fast rehearse --preset record --out runs/rehearsal
    golf-fast rehearse --preset record --steps 1 --val-tokens 4096 --no-exported    # shorter

Trains the preset's model for a few steps on tiny batches under ``--device-profile h100`` (every
``auto`` as on an H100, run through the CPU stand-ins), then Hessians, GPTQ + LQER + int8 gates, the
artifact fitted to 16,000,000 bytes with the real code bytes, reload from int6 codes, eval, phased
TTT with its compliance verdict, ``golf-fast export``, and the exported ``train_gpt.py`` run in an
environment without golf_fast (``golf_fast.export.rehearse``). Prints one table. Exit status: 0 all
phases passed; 1 a phase failed (its row says why; later phases are ``not run``); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from golf_fast.export.rehearse import RehearsalSpec, rehearse
from golf_fast.train.config import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="record", choices=sorted(PRESETS))
    p.add_argument("--out", type=Path, default=None, help="working folder (default: runs/rehearse-<time>)")
    p.add_argument("--steps", type=int, default=2, help="training steps of the package run (and the exported one)")
    p.add_argument("--batch-tokens", type=int, default=0, help="tokens per step (0: one model.max_seqlen sequence)")
    p.add_argument("--val-tokens", type=int, default=16_384, help="the first N validation tokens (the documents "
                   "every evaluation and the TTT see)")
    p.add_argument("--eval-stride", type=int, default=1024, help="sliding-window stride (the record's 64 is "
                   "too slow for a CPU at seq 2048)")
    p.add_argument("--calibration-batches", type=int, default=2)
    p.add_argument("--no-exported", action="store_true", help="skip running the exported train_gpt.py")
    p.add_argument("--no-ttt", action="store_true", help="skip the TTT at the end of the package run")
    p.add_argument("--no-budget", action="store_true", help="no code bytes and no budget fit (the fit re-runs "
                   "GPTQ several times when the artifact is over 16,000,000 bytes)")
    p.add_argument("--time-limit", type=float, default=25 * 60, help="seconds for the whole rehearsal")
    p.add_argument("--cpu-threads", type=int, default=0, help="torch threads of the runs (0: torch's default)")


def run(args: argparse.Namespace) -> int:
    out = args.out or Path("runs") / f"rehearse-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    spec = RehearsalSpec(out_dir=out, preset=args.preset, steps=args.steps, batch_tokens=args.batch_tokens,
                         val_tokens=args.val_tokens, eval_stride=args.eval_stride,
                         calibration_batches=args.calibration_batches, exported=not args.no_exported,
                         ttt=not args.no_ttt, budget=not args.no_budget,
                         time_limit_s=args.time_limit, cpu_threads=args.cpu_threads)
    try:
        spec.validate()
    except (TypeError, ValueError) as e:
        print(f"golf-fast rehearse: {e}", file=sys.stderr)
        return 2
    reh = rehearse(spec, log=lambda s: print(s, flush=True))
    print(reh.table())
    print(f"working folder: {reh.out_dir}")
    return 0 if reh.ok else 1
