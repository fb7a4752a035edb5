"""``golf-fast eval ARTIFACT --data DIR --tokenizer MODEL``: val_bpb of an artifact in a fresh process.

Loads the artifact (checksummed, no pickle), rebuilds the model from its config (on CUDA its block
matrices stay packed int6 codes by default, ``--weights``), and reports plain and (with
``--stride``) sliding-window val_bpb on the ``*_val_*.bin`` shards of DIR; with
``--ttt``/``--slot``/``--research`` also the adaptive evaluation and its compliance verdict
(adapt_cli.py). When DIR has CaseOps byte sidecars (``*_val_bytes_*.bin``) the bytes come from them,
else from the tokenizer.
Works under torchrun too (the windows are split across ranks, the sums all-reduced).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from golf_fast.artifact import ArtifactError, load_artifact
from golf_fast.data.byte_table import TokenByteTable
from golf_fast.data.errors import DataError
from golf_fast.data.shards import check_token_ids, list_shards, load_tokens, load_val_bytes
from golf_fast.distributed import init_distributed, shutdown
from golf_fast.cli.eval_adapt import add_adapt_arguments, resolve_adapt_config, run_adapt_cli, wants_adaptation
from golf_fast.eval.evaluate import evaluate
from golf_fast.model.from_artifact import load_model_from_artifact
from golf_fast.model.precision import apply_precision


def _int_at_least(lo: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an int >= {lo}, got {v}")
        return v
    parse.__name__ = f"int>={lo}"
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", type=Path)
    p.add_argument("--data", type=Path, required=True, help="folder with *_val_*.bin shards")
    p.add_argument("--tokenizer", type=Path, help="SentencePiece .model (default: DATA/tokenizer.model)")
    p.add_argument("--seq-len", type=_int_at_least(1), default=2048)
    p.add_argument("--stride", type=_int_at_least(0), default=0, help="sliding-window stride (0: plain only)")
    p.add_argument("--batch-seqs", type=_int_at_least(1), default=32)
    p.add_argument("--max-val-tokens", type=_int_at_least(0), default=0, help="only the first N val tokens (0: all)")
    p.add_argument("--looping", choices=("on", "off"), default="on",
                   help="depth recurrence during eval (on: as at the end of training)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--weights", choices=("auto", "int6", "dequantized"), default="auto",
                   help="block matrices as packed int6 codes through the fused kernel, or dequantized "
                        "(auto: int6 on CUDA, dequantized on CPU)")
    p.add_argument("--precision", choices=("fp32", "record"), default="fp32",
                   help="parameter precision of the rebuilt model (record: bf16 with banks and control tensors fp32)")
    add_adapt_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done; 2 the artifact cannot be loaded or the data is bad (one line on stderr)."""
    if wants_adaptation(args):
        try:
            adapt_cfg = resolve_adapt_config(args)
        except ValueError as e:
            print(f"golf-fast eval: {e}", file=sys.stderr)
            return 2
    d = init_distributed(args.device)
    finished = False
    try:
        tok = args.tokenizer or args.data / "tokenizer.model"
        try:
            weights = args.weights if args.weights != "auto" else ("int6" if d.device.type == "cuda" else "dequantized")
            model = load_model_from_artifact(args.artifact, d.device, weights=weights)
        except ArtifactError as e:
            print(f"golf-fast eval: cannot load {args.artifact}: {e}", file=sys.stderr)
            return 2
        model = apply_precision(model, args.precision)
        try:
            table = TokenByteTable.from_sentencepiece(str(tok), vocab_size=model.cfg.vocab_size)
            val_files = list_shards(args.data, "val")
            val, val_bytes = load_tokens(val_files), load_val_bytes(val_files)
            check_token_ids(val, model.cfg.vocab_size, f"validation shards in {args.data}")
        except (DataError, OSError) as e:
            print(f"golf-fast eval: {_one_line(e)}", file=sys.stderr)
            return 2
        model.looping_active = args.looping == "on"
        if args.max_val_tokens:
            val = val[:args.max_val_tokens]
            val_bytes = val_bytes[:args.max_val_tokens] if val_bytes is not None else None
        dtype = torch.bfloat16 if d.device.type == "cuda" or args.precision == "record" else None
        out = {"artifact": str(args.artifact), "artifact_bytes": os.path.getsize(args.artifact),
               "bytes_from": "sidecar" if val_bytes is not None else "tokenizer", "weights": weights}
        for mode, stride in [("plain", None)] + ([("sliding", args.stride)] if args.stride else []):
            r = evaluate(model, val, table, seq_len=args.seq_len, stride=stride, batch_seqs=args.batch_seqs,
                         rank=d.rank, world_size=d.world, device=d.device, dtype=dtype, val_bytes=val_bytes)
            out[mode] = r.as_dict()
        if wants_adaptation(args):
            def fresh_model():
                m = apply_precision(load_model_from_artifact(args.artifact, d.device), args.precision)
                m.looping_active = args.looping == "on"
                return m

            int6_state = None
            if adapt_cfg.lora.backend == "int6":
                int6_state = load_artifact(args.artifact).state
            out.update(run_adapt_cli(args, fresh_model, val, table, d.rank, d.world, d.device, dtype, int6_state,
                                     val_bytes))
        if d.main:
            print(json.dumps(out, indent=1))
        finished = True
    finally:
        shutdown(d, synchronize=finished)
    return 0


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
