"""Corpus → SentencePiece tokenizer + token shards (parameter_golf.md §1.2).

* Tokenizer: SentencePiece BPE trained with the records' settings (``character_coverage=0.999``,
  ``byte_fallback``, ``split_digits``, ``nmt_nfkc``, no dummy prefix, pad/bos/eos/unk = 0/1/2/3,
  ``hard_vocab_limit=False``) on the *train* documents only.
* The first ``val_docs`` documents are the validation split; the rest are train.
* Each document becomes ``[BOS] + sp.encode(text)`` (no EOS); documents are concatenated into
  shards of at most ``shard_tokens`` tokens named ``data_{split}_{index:06d}.bin``.
* CaseOps (``caseops=True``, :mod:`golf_fast.data.caseops`): every document is case-transformed
  before tokenizing, the tokenizer is trained with the four control characters as
  ``user_defined_symbols`` (ids 4–7), files are named ``fineweb_{split}_{index:06d}.bin`` like the
  record's prep script, and each validation shard gets a parallel ``fineweb_val_bytes_{index:06d}.bin``
  sidecar (same header, uint16 original UTF-8 byte count per token; BOS 0). The record writes
  10,000,000-token shards (:data:`CASEOPS_SHARD_TOKENS`).
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

from golf_fast.data import caseops as case_ops
from golf_fast.data.errors import DataError, check_regular_file
from golf_fast.data.shards import sidecar_path, write_shard

SPM_SETTINGS = dict(
    model_type="bpe", character_coverage=0.999, byte_fallback=True, split_digits=True,
    normalization_rule_name="nmt_nfkc", add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
    hard_vocab_limit=False,
)
BOS_ID = 1
CASEOPS_SHARD_TOKENS = 10_000_000
"""Tokens per shard of the record's CaseOps prep script (``SHARD_TOKENS``)."""


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
                    max_chars: int = 200_000_000, num_threads: Optional[int] = None,
                    user_defined_symbols: Sequence[str] = ()) -> Path:
    """Train a SentencePiece BPE model on ``docs`` (lines as sentences); returns ``<prefix>.model``.

    ``user_defined_symbols`` get the ids right after the four specials (CaseOps: its controls).
    """
    import sentencepiece as spm

    if not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size: expected an int >= 300 (256 byte pieces + specials), got {vocab_size!r}")
    if not docs:
        raise ValueError("docs: expected at least one document to train the tokenizer on")
    model_prefix = Path(model_prefix)
    spm.SentencePieceTrainer.train(
        sentence_iterator=_sentences(docs, max_chars), model_prefix=str(model_prefix), vocab_size=vocab_size,
        num_threads=num_threads or os.cpu_count() or 1, minloglevel=2, max_sentence_length=16384,
        **({"user_defined_symbols": list(user_defined_symbols)} if user_defined_symbols else {}),
        **SPM_SETTINGS,
    )
    return model_prefix.with_suffix(".model")


def _documents(sp, docs: Sequence[str], caseops: bool, sidecar: bool, batch: int = 256):
    """Per chunk of documents: [(tokens uint16 with BOS, original bytes uint16 or None), ...]."""
    for i in range(0, len(docs), batch):
        chunk = list(docs[i:i + batch])
        if sidecar:
            yield [case_ops.encode_document(sp, d, BOS_ID) for d in chunk]
            continue
        texts = [case_ops.encode(d) for d in chunk] if caseops else chunk
        out = []
        for ids in sp.encode(texts):
            arr = np.empty(len(ids) + 1, dtype=np.uint16)
            arr[0] = BOS_ID
            arr[1:] = ids
            out.append((arr, None))
        yield out


def _write_split(sp, docs: Sequence[str], out: Path, split: str, shard_tokens: int, bar: Progress,
                 prefix: str = "data", caseops: bool = False) -> tuple[int, int]:
    """Shards ``{prefix}_{split}_NNNNNN.bin`` (and, for CaseOps val, their byte sidecars)."""
    sidecar = caseops and split == "val"
    buf: list[np.ndarray] = []
    nbuf: list[np.ndarray] = []
    filled = shard = total = 0

    def flush() -> int:
        path = out / f"{prefix}_{split}_{shard:06d}.bin"
        n = write_shard(path, np.concatenate(buf) if buf else np.zeros(0, np.uint16))
        if sidecar:
            write_shard(sidecar_path(path), np.concatenate(nbuf) if nbuf else np.zeros(0, np.uint16))
        return n

    for chunk in _documents(sp, docs, caseops, sidecar):
        for arr, nb in chunk:
            while arr.size:
                take = min(arr.size, shard_tokens - filled)
                buf.append(arr[:take])
                if sidecar:
                    nbuf.append(nb[:take])
                    nb = nb[take:]
                filled += take
                arr = arr[take:]
                if filled == shard_tokens:
                    total += flush()
                    shard, buf, nbuf, filled = shard + 1, [], [], 0
        bar.update(len(chunk))
    if filled or shard == 0:
        total += flush()
        shard += 1
    return shard, total


def build_dataset(docs: Sequence[str], out_dir: os.PathLike, *, vocab_size: int, val_docs: int,
                  shard_tokens: Optional[int] = None, tokenizer: Optional[os.PathLike] = None,
                  caseops: bool = False, progress: Optional[Callable[[str], None]] = None) -> Path:
    """Write ``tokenizer.model`` and train/val shards of ``docs`` into ``out_dir``; returns it.

    ``tokenizer`` reuses an existing SentencePiece model instead of training one (with ``caseops``
    it must have the four control pieces). ``shard_tokens``: None = 1e8 (plain) or 1e7 (CaseOps).
    ``caseops``: transform the documents and write the validation byte sidecars.
    """
    import sentencepiece as spm

    say = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    docs = list(docs)
    if shard_tokens is None:
        shard_tokens = CASEOPS_SHARD_TOKENS if caseops else 10**8
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
            kind = "CaseOps " if caseops else ""
            say(f"data: training a {vocab_size}-piece {kind}SentencePiece BPE tokenizer on {len(docs) - val_docs} documents")
            train_docs = [case_ops.encode(d) for d in docs[val_docs:]] if caseops else docs[val_docs:]
            train_tokenizer(train_docs, tmp / "tokenizer", vocab_size,
                            user_defined_symbols=case_ops.CONTROLS if caseops else ())
        else:
            shutil.copyfile(tokenizer, tmp / "tokenizer.model")
        sp = spm.SentencePieceProcessor(model_file=str(tmp / "tokenizer.model"))
        if caseops:
            case_ops.check_tokenizer(sp)
        say(f"data: tokenizer ready ({sp.vocab_size()} pieces, {time.perf_counter() - t0:.1f} s)")
        bar = Progress("data: tokenizing", len(docs))
        prefix = "fineweb" if caseops else "data"
        n_val_shards, n_val = _write_split(sp, docs[:val_docs], tmp, "val", shard_tokens, bar, prefix, caseops)
        n_train_shards, n_train = _write_split(sp, docs[val_docs:], tmp, "train", shard_tokens, bar, prefix, caseops)
        info = dict(documents=len(docs), val_docs=val_docs, val_tokens=n_val, train_tokens=n_train,
                    val_shards=n_val_shards, train_shards=n_train_shards, vocab_size=int(sp.vocab_size()),
                    text_transform=case_ops.TRANSFORM_NAME if caseops else "identity")
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
