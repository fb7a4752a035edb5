"""``golf-fast data``: build tokenizer + shards from text, or describe existing shards.

    golf-fast data build --input a.jsonl b.txt --vocab-size 8192 --out DIR [--val-docs N]
    golf-fast data build --default --vocab-size 1024 [--out DIR]     # the embedded stdlib corpus
    golf-fast data build ... --caseops          # CaseOps text + tokenizer + val byte sidecars (R0611)
    golf-fast data info DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from golf_fast.data.errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="train a SentencePiece BPE tokenizer and write train/val shards")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", metavar="FILE",
                     help=".jsonl files (field 'text') or text files (documents separated by blank lines)")
    src.add_argument("--default", action="store_true",
                     help="the embedded corpus: standard-library docstrings and pydoc topics")
    b.add_argument("--vocab-size", type=int, required=True)
    b.add_argument("--out", type=Path, help="output folder (with --default: the cache folder)")
    b.add_argument("--val-docs", type=int, help="first N documents are the validation split (default: 5%%)")
    b.add_argument("--shard-tokens", type=int, help="tokens per shard (default 1e8; 1e7 with --caseops)")
    b.add_argument("--caseops", action="store_true",
                   help="CaseOps case transform, a tokenizer with its 4 control pieces, fineweb_val_bytes_* sidecars")
    b.add_argument("--tokenizer", type=Path, help="reuse this SentencePiece .model instead of training one")
    i = sub.add_parser("info", help="check and summarize the shards of a data folder")
    i.add_argument("dir", type=Path)


def run(args: argparse.Namespace) -> int:
    """Exit status 0, or 2 with one line on stderr when the data or a path is bad."""
    try:
        return _run(args)
    except (DataError, OSError) as e:
        text = str(e).strip().splitlines()
        print(f"golf-fast data: {text[0] if text else type(e).__name__}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.data_command == "info":
        import numpy as np

        from golf_fast.data.shards import list_shards, load_val_bytes, read_header

        for split in ("train", "val"):
            files = list_shards(args.dir, split)
            n = sum(read_header(f) for f in files)
            print(f"{split}: {len(files)} shards, {n:,} tokens")
        side = load_val_bytes(list_shards(args.dir, "val"))
        if side is not None:
            print(f"val byte sidecars: {int(side.sum(dtype=np.int64)):,} original UTF-8 bytes (CaseOps)")
        return 0
    if args.default:
        from golf_fast.data.corpus import default_dataset

        if args.shard_tokens is not None or args.tokenizer is not None or args.val_docs is not None:
            raise SystemExit("golf-fast data build: --default takes only --vocab-size, --out and --caseops")
        out = default_dataset(args.vocab_size, cache_dir=args.out, caseops=args.caseops)
    else:
        from golf_fast.data.build import build_dataset, read_documents

        if args.out is None:
            raise SystemExit("golf-fast data build: --out DIR is required with --input")
        docs = read_documents(args.input)
        val = args.val_docs if args.val_docs is not None else max(1, round(0.05 * len(docs)))
        out = build_dataset(docs, args.out, vocab_size=args.vocab_size, val_docs=val,
                            shard_tokens=args.shard_tokens, tokenizer=args.tokenizer, caseops=args.caseops)
    print(json.dumps({"out": str(out), **json.loads((Path(out) / "COMPLETE").read_text())}), file=sys.stdout)
    return 0
