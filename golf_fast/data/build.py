"""Corpus → SentencePiece tokenizer + token shards (parameter_golf.md §1.2).

* Tokenizer: SentencePiece BPE trained with the records' settings (``character_coverage=0.999``,
  ``byte_fallback``, ``split_digits``, ``nmt_nfkc``, no dummy prefix, pad/bos/eos/unk = 0/1/2/3,
  ``hard_vocab_limit=False``) on the *train* documents only.
* The first ``val_docs`` documents are the validation split; the rest are train.
* Each document becomes ``[BOS] + sp.encode(text)`` (no EOS); documents are concatenated into
  shards of at most ``shard_tokens`` tokens named ``data_{split}_{index:06d}.bin``.
* The output folder is assembled under a temporary name and renamed when complete (a crash leaves
  no half-built dataset); a ``COMPLETE`` marker holds the counts.

Input files for the command line: ``.jsonl`` (one JSON object per line with a ``"text"`` field) or
plain text (documents separated by blank lines).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from golf_fast.data.errors import DataError, check_regular_file
from golf_fast.data.shards import write_shard

SPM_SETTINGS = dict(
    model_type="bpe", character_coverage=0.999, byte_fallback=True, split_digits=True,
    normalization_rule_name="nmt_nfkc", add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
    hard_vocab_limit=False,
)
BOS_ID = 1


class Progress:
    """A one-line progress bar on stderr: ``desc [#####.....] 12/40 (3.1 s)``."""

    def __init__(self, desc: str, total: int, stream=None, width: int = 30) -> None:
        self.desc, self.total, self.width = desc, max(total, 1), width
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.done = 0
        self._last = -1.0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last > 0.2 or self.done >= self.total:
            self._last = now
            fill = int(self.width * min(self.done, self.total) / self.total)
            self.stream.write(f"\r{self.desc} [{'#' * fill}{'.' * (self.width - fill)}] "
                              f"{self.done}/{self.total} ({now - self.t0:.1f} s)")
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()


def read_documents(files: Sequence[os.PathLike]) -> list[str]:
    """Documents of ``files``: JSONL ``"text"`` fields, or blank-line-separated blocks of text files."""
    docs: list[str] = []
    for f in files:
        p = Path(f)
        check_regular_file(p, "input")
        text = p.read_text(encoding="utf-8", errors="replace")
        if p.suffix == ".jsonl":
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"input: {p}:{lineno} is not valid JSON ({e})") from e
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise DataError(f"input: {p}:{lineno} has no string field 'text'")
                docs.append(obj["text"])
        else:
            blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
            docs.extend(b for b in blocks if b)
    return docs


def _sentences(docs: Iterable[str], max_chars: int) -> Iterator[str]:
    total = 0
    for d in docs:
        for line in d.split("\n"):
            line = line.strip()
            if line:
                yield line
                total += len(line)
                if total >= max_chars:
                    return


def train_tokenizer(docs: Sequence[str], model_prefix: os.PathLike, vocab_size: int,
                    max_chars: int = 200_000_000, num_threads: Optional[int] = None) -> Path:
    """Train a SentencePiece BPE model on ``docs`` (lines as sentences); returns ``<prefix>.model``."""
    import sentencepiece as spm

    if not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size: expected an int >= 300 (256 byte pieces + specials), got {vocab_size!r}")
    if not docs:
        raise ValueError("docs: expected at least one document to train the tokenizer on")
    model_prefix = Path(model_prefix)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(docs, max_chars), model_prefix=str(model_prefix), vocab_size=vocab_size,
        num_threads=num_threads or os.cpu_count() or 1, minloglevel=2, max_sentence_length=16384,
        **SPM_SETTINGS,
    )
    return model_prefix.with_suffix(".model")


def _write_split(sp, docs: Sequence[str], out: Path, split: str, shard_tokens: int, bar: Progress,
                 batch: int = 256) -> tuple[int, int]:
    buf: list[np.ndarray] = []
    filled = 0
    shard = 0
    total = 0
    for i in range(0, len(docs), batch):
        chunk = docs[i:i + batch]
        for ids in sp.encode(list(chunk)):
            arr = np.empty(len(ids) + 1, dtype=np.uint16)
            arr[0] = BOS_ID
            arr[1:] = ids
            while arr.size:
                take = min(arr.size, shard_tokens - filled)
                buf.append(arr[:take])
                filled += take
                arr = arr[take:]
                if filled == shard_tokens:
                    total += write_shard(out / f"data_{split}_{shard:06d}.bin", np.concatenate(buf))
                    shard, buf, filled = shard + 1, [], 0
        bar.update(len(chunk))
    if filled or shard == 0:
        total += write_shard(out / f"data_{split}_{shard:06d}.bin",
                             np.concatenate(buf) if buf else np.zeros(0, np.uint16))
        shard += 1
    return shard, total


def build_dataset(docs: Sequence[str], out_dir: os.PathLike, *, vocab_size: int, val_docs: int,
                  shard_tokens: int = 10**8, tokenizer: Optional[os.PathLike] = None,
                  progress: Optional[Callable[[str], None]] = None) -> Path:
    """Write ``tokenizer.model`` and train/val shards of ``docs`` into ``out_dir``; returns it.

    ``tokenizer`` reuses an existing SentencePiece model instead of training one.
    """
    import sentencepiece as spm

    say = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    docs = list(docs)
    if not isinstance(val_docs, int) or not 0 < val_docs < len(docs):
        raise ValueError(f"val_docs: expected an int in [1, {len(docs) - 1}] for {len(docs)} documents, got {val_docs!r}")
    if not isinstance(shard_tokens, int) or not 0 < shard_tokens < 2**31:
        raise ValueError(f"shard_tokens: expected an int in [1, 2^31), got {shard_tokens!r}")
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        if tokenizer is None:
            say(f"data: training a {vocab_size}-piece SentencePiece BPE tokenizer on {len(docs) - val_docs} documents")
            train_tokenizer(docs[val_docs:], tmp / "tokenizer", vocab_size)
        else:
            shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "tokenizer.model"))
        say(f"data: tokenizer ready ({sp.vocab_size()} pieces, {time.perf_counter() - t0:.1f} s)")
        bar = Progress("data: tokenizing", len(docs))
        n_val_shards, n_val = _write_split(sp, docs[:val_docs], tmp, "val", shard_tokens, bar)
        n_train_shards, n_train = _write_split(sp, docs[val_docs:], tmp, "train", shard_tokens, bar)
        info = dict(documents=len(docs), val_docs=val_docs, val_tokens=n_val, train_tokens=n_train,
                    val_shards=n_val_shards, train_shards=n_train_shards, vocab_size=int(sp.vocab_size()))
        (tmp / "COMPLETE").write_text(json.dumps(info, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    say(f"data: wrote {out} ({n_train:,} train / {n_val:,} val tokens) in {time.perf_counter() - t0:.1f} s")
    return out
