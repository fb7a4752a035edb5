"""``golf-fast quantize``: quantize a trained state_dict so code + artifact fit the budget.

    golf-fast quantize --weights final_model.pt --code train_gpt.py --wrapper minify-brotli \\
        --out final_model.gfa [--codec golf-rans] [--margin 8000]

Counts the code bytes (``code_bytes``), sets the budget (16,000,000 − code − margin), then
bisects one factor on the record's per-role clip sigmas (``fit_clip_scale``, RTN quantization;
GPTQ plugs in through the same ``quantize`` callable from Python) and writes the artifact
atomically. Matrices with more than ``--min-numel`` entries matching a role of the plan are
quantized; every other tensor is stored as fp16 (floating point) or as it is.

``--weights`` is read with ``torch.load(weights_only=True)``, which refuses pickled code; pass
only files you trust all the same.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys

import torch

from golf_fast.artifact.code_bytes import WRAPPERS, code_bytes
from golf_fast.artifact.codecs import CODEC_NAMES, DEFAULT_CODEC
from golf_fast.artifact.fit import DEFAULT_MARGIN, budget_bytes, fit_clip_scale
from golf_fast.artifact.format import atomic_write_bytes
from golf_fast.quant.recipe import RECORD_RECIPE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a torch.save'd state_dict of float tensors")
    p.add_argument("--code", required=True, help="the submission script whose bytes count")
    p.add_argument("--wrapper", default=None, choices=[w for w in WRAPPERS if w], help="self-extracting wrapper")
    p.add_argument("--out", required=True, help="artifact path to write")
    p.add_argument("--codec", default=DEFAULT_CODEC, choices=CODEC_NAMES)
    p.add_argument("--margin", type=int, default=DEFAULT_MARGIN, help="safety margin in bytes")
    p.add_argument("--min-numel", type=int, default=RECORD_RECIPE.passthrough_max_numel,
                   help="quantize matrices with more entries than this")
    p.add_argument("--lo", type=float, default=0.5, help="smallest clip-sigma factor tried")
    p.add_argument("--hi", type=float, default=2.0, help="largest clip-sigma factor tried")


def _load_weights(path: str) -> dict:
    """The state_dict at ``path``; a missing, non-regular or unreadable file is one ``ValueError``."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"--weights: cannot open {path!r} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"--weights: {path!r} is not a regular file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load's errors for a bad file vary (unpickling, zip, EOF)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"--weights: {path!r} is not a loadable state_dict ({first})") from None
    if not isinstance(sd, dict):
        raise ValueError(f"--weights: expected a state_dict (dict of tensors), got {type(sd).__name__}")
    return sd


def run(args: argparse.Namespace) -> int:
    """Exit status 0, or 2 with one line on stderr for a bad input file or argument."""
    try:
        return _run(args)
    except (ValueError, TypeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"golf-fast quantize: {first}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    cb = code_bytes(args.code, wrapper=args.wrapper)
    print(f"code: {cb.describe()}")
    budget = budget_bytes(cb.counted, margin=args.margin)
    sd = _load_weights(args.weights)
    if not isinstance(sd, dict):
        raise TypeError(f"--weights: expected a state_dict (dict of tensors), got {type(sd).__name__}")
    mats = {n: t for n, t in sd.items()
            if isinstance(t, torch.Tensor) and t.dim() == 2 and t.is_floating_point() and t.numel() > args.min_numel}
    plan = RECORD_RECIPE.plan(mats)
    if not plan:
        raise ValueError("--weights: no matrix matches a role of the plan (tok_emb / .attn. / .mlp.)")
    rest = {n: (t.half() if t.is_floating_point() else t) for n, t in sd.items()
            if isinstance(t, torch.Tensor) and n not in plan}
    print(f"budget: 16,000,000 - {cb.counted:,} code - {args.margin:,} margin = {budget:,} bytes; "
          f"{len(plan)} matrices quantized, {len(rest)} tensors passed through")
    res = fit_clip_scale({n: mats[n].float() for n in plan}, plan, budget, passthrough=rest, codec=args.codec,
                         lo=args.lo, hi=args.hi, config={"source": str(args.weights)})
    atomic_write_bytes(args.out, res.data)
    total = res.nbytes + cb.counted
    print(f"wrote {args.out}: {res.nbytes:,} bytes + {cb.counted:,} code = {total:,} "
          f"({16_000_000 - total:,} under 16,000,000)")
    return 0
