"""Token shards in parameter-golf's exact file format (parameter_golf.md §1.1).

Layout of one shard file::

    header   256 × int32 little-endian (1024 bytes): [0] = 20240520 (magic), [1] = 1 (version),
             [2] = num_tokens, the rest zeros
    payload  num_tokens × uint16 little-endian token ids

The file size must be exactly ``1024 + 2 * num_tokens``. Reading memory-maps the payload (no copy);
writing is atomic (``golf_fast.artifact.atomic``: an unnamed temporary file in the same folder, fsync,
rename), so a crash, even a SIGKILL, never leaves half a shard or a temporary file. Users' existing FineWeb shards (``fineweb_train_000000.bin`` ...) read unchanged.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from golf_fast.artifact.atomic import atomic_write_bytes
from golf_fast.data.errors import DataError, check_regular_file

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKENS = 2**31 - 1

PathLike = Union[str, os.PathLike]


class ShardFormatError(DataError):
    """A shard file is not in the parameter-golf format (the message names the file)."""


def read_header(path: PathLike) -> int:
    """Check the header of ``path`` and its size; return the number of tokens it holds."""
    path = Path(path)
    check_regular_file(path, "path: shard file")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardFormatError(f"{path}: {size} bytes is shorter than the {HEADER_BYTES}-byte shard header")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != MAGIC:
        raise ShardFormatError(f"{path}: magic {int(header[0])} != {MAGIC}; not a parameter-golf token shard")
    if int(header[1]) != VERSION:
        raise ShardFormatError(f"{path}: shard version {int(header[1])} is not supported (expected {VERSION})")
    n = int(header[2])
    if n < 0:
        raise ShardFormatError(f"{path}: negative token count {n} in the header")
    expected = HEADER_BYTES + 2 * n
    if size != expected:
        raise ShardFormatError(f"{path}: file is {size} bytes but its header says {n} tokens "
                               f"(expected {expected} bytes = 1024 + 2*{n}); truncated or corrupted")
    return n


def read_shard(path: PathLike) -> np.memmap:
    """Memory-map the tokens of one shard: a read-only (num_tokens,) ``uint16`` array."""
    n = read_header(path)
    if n == 0:
        return np.zeros(0, dtype=np.uint16)  # np.memmap cannot map zero bytes
    return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,))


def max_token_id(path: PathLike) -> int:
    """The largest token id in a shard (-1 if it is empty): one pass over its payload."""
    tokens = read_shard(path)
    return int(tokens.max()) if tokens.size else -1


def check_token_ids(tokens: np.ndarray, vocab_size: int, what: str) -> None:
    """Every id in ``tokens`` is below ``vocab_size``, else a ``DataError`` naming ``what``."""
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise ValueError(f"vocab_size: expected an int >= 1, got {vocab_size!r}")
    if tokens.size:
        top = int(tokens.max())
        if top >= vocab_size:
            raise DataError(f"{what}: token id {top} is outside the model's vocabulary of {vocab_size} "
                            "(shards built with a different tokenizer?)")


def write_shard(path: PathLike, tokens: Union[np.ndarray, Iterable[int]]) -> int:
    """Write ``tokens`` (ids in [0, 65535]) as one shard, atomically; returns the token count."""
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"tokens: expected a 1-D array of token ids, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"tokens: expected integer token ids, got dtype {arr.dtype}")
    if arr.size > MAX_TOKENS:
        raise ValueError(f"tokens: {arr.size} tokens exceed the format's limit of {MAX_TOKENS}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 2**16):
        raise ValueError(f"tokens: ids must be in [0, 65535], got range [{int(arr.min())}, {int(arr.max())}]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, arr.size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, [header.tobytes(), np.ascontiguousarray(arr.astype("<u2", copy=False))])
    return int(arr.size)


def list_shards(data_dir: PathLike, split: str) -> list[Path]:
    """Sorted shard files of ``split`` ("train" or "val") in ``data_dir``: ``*_{split}_*.bin``.

    The CaseOps byte sidecars (``*_val_bytes_*.bin``) are not token shards and are left out.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split: expected 'train' or 'val', got {split!r}")
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"data_dir: {str(d)!r} is not a directory")
    files = [Path(p) for p in sorted(glob.glob(str(d / f"*_{split}_*.bin"))) if "_bytes_" not in Path(p).name]
    if not files:
        raise FileNotFoundError(f"data_dir: no '*_{split}_*.bin' shards in {str(d)!r}")
    return files


def load_tokens(files: Iterable[PathLike]) -> np.ndarray:
    """Concatenate the tokens of ``files`` into one in-memory uint16 array (the val split)."""
    parts = [np.asarray(read_shard(f)) for f in files]
    if not parts:
        raise ValueError("files: expected at least one shard")
    return np.concatenate(parts)


def sidecar_path(val_shard: PathLike) -> Path:
    """The CaseOps byte sidecar of a validation shard: ``X_val_NNNNNN.bin`` → ``X_val_bytes_NNNNNN.bin``."""
    p = Path(val_shard)
    head, sep, tail = p.name.rpartition("_val_")
    if not sep or "_bytes_" in p.name:
        raise ValueError(f"val_shard: expected a '*_val_*.bin' token shard name, got {p.name!r}")
    return p.with_name(f"{head}_val_bytes_{tail}")


def load_val_bytes(files: Iterable[PathLike]) -> Union[np.ndarray, None]:
    """Per-token original byte counts of the validation ``files`` from their sidecars, or None.

    Returns the concatenated uint16 sidecars (parallel to :func:`load_tokens` of ``files``) when every
    shard has one, None when none has; a partial set or a sidecar whose length differs from its
    shard is an error (a score from mixed byte sources would be wrong).
    """
    files = [Path(f) for f in files]
    if not files:
        raise ValueError("files: expected at least one shard")
    side = [sidecar_path(f) for f in files]
    have = [s.is_file() for s in side]
    if not any(have):
        return None
    if not all(have):
        missing = [str(s) for s, h in zip(side, have) if not h]
        raise FileNotFoundError(f"files: some validation shards have byte sidecars but {missing[:3]} are missing")
    parts = []
    for f, s in zip(files, side):
        n, m = read_header(f), read_header(s)
        if n != m:
            raise ShardFormatError(f"{s}: {m} byte counts for the {n} tokens of {f.name}")
        parts.append(np.asarray(read_shard(s)))
    return np.concatenate(parts)
