"""Checks for untrusted artifact content: JSON parsing with caps, typed field readers, limits.

An artifact's SHA-256 stops accidents, not attacks (anyone can recompute it), so every field a
file declares is read through these helpers before anything is allocated from it: an int must be
an ``int`` (not a bool, a float or a string) inside a stated range, a list a ``list`` of at most a
stated length, and so on. A violation is an ``ArtifactError`` naming the field. JSON is parsed
only after its size and nesting depth are checked (a deeply nested document would otherwise
raise ``RecursionError``), and ``NaN``/``Infinity`` literals are refused.

A leaf module beside ``errors``: the format and the codecs import it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

import numpy as np

from golf_fast.artifact.errors import ArtifactError

MAX_JSON_BYTES = 1 << 24
"""Largest decompressed manifest or side-information JSON (16 MiB; a real one is a few KB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of JSON arrays/objects accepted (a real manifest nests 4 deep plus the config)."""
BASE_DECODE_BYTES = 1 << 26
"""Decoded bytes always allowed (64 MiB), whatever the file size."""
MAX_EXPANSION = 1024
"""Decoded bytes allowed per file byte on top of ``BASE_DECODE_BYTES`` (real artifacts: ~3)."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def default_decode_limit(file_bytes: int) -> int:
    """How many bytes the declared tensors may take in total, for a file of ``file_bytes``:
    ``BASE_DECODE_BYTES + MAX_EXPANSION · file_bytes`` (pass ``max_decoded_bytes`` to loaders to
    allow more, e.g. for a state that is mostly zeros)."""
    return BASE_DECODE_BYTES + MAX_EXPANSION * int(file_bytes)


def json_depth(raw: bytes) -> int:
    """Deepest nesting of ``[``/``{`` in a JSON text (brackets inside strings do not count)."""
    stripped = _STRING.sub(b'""', raw)
    arr = np.frombuffer(stripped, dtype=np.uint8)
    steps = (np.isin(arr, (ord("["), ord("{")))).astype(np.int64) - np.isin(arr, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max()) if steps.size else 0


def _no_constants(name: str) -> Any:
    raise ValueError(f"the literal {name} is not allowed")


def parse_json(raw: bytes, what: str) -> Any:
    """Parse untrusted JSON: at most ``MAX_JSON_BYTES`` bytes and ``MAX_JSON_DEPTH`` levels deep,
    UTF-8, no NaN/Infinity; any failure is an ``ArtifactError`` naming ``what``."""
    if len(raw) > MAX_JSON_BYTES:
        raise ArtifactError(f"{what}: {len(raw)} bytes of JSON, more than the {MAX_JSON_BYTES} allowed")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ArtifactError(f"{what}: JSON nested {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactError(f"{what} is not valid JSON ({exc})") from None


def need_dict(v: Any, what: str) -> dict:
    if not isinstance(v, dict):
        raise ArtifactError(f"{what}: expected a JSON object, got {type(v).__name__}")
    return v


def need_list(v: Any, what: str, max_len: int, min_len: int = 0) -> list:
    if not isinstance(v, list):
        raise ArtifactError(f"{what}: expected a JSON list, got {type(v).__name__}")
    if not min_len <= len(v) <= max_len:
        raise ArtifactError(f"{what}: expected {min_len}..{max_len} entries, got {len(v)}")
    return v


def need_int(v: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ArtifactError(f"{what}: expected an integer, got {v!r:.80}")
    if not lo <= v <= hi:
        raise ArtifactError(f"{what}: expected an integer in [{lo}, {hi}], got {v}")
    return v


def need_bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise ArtifactError(f"{what}: expected true or false, got {v!r:.80}")
    return v


def need_str(v: Any, what: str, choices: Optional[tuple] = None, max_len: int = 1024) -> str:
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise ArtifactError(f"{what}: expected a non-empty string of at most {max_len} characters, got {v!r:.80}")
    if choices is not None and v not in choices:
        raise ArtifactError(f"{what}: expected one of {list(choices)}, got {v!r:.80}")
    return v


def need_key(d: dict, key: str, what: str) -> Any:
    if key not in d:
        raise ArtifactError(f"{what}: the field {key!r} is missing")
    return d[key]


def check_params(params: dict, allowed: dict[str, tuple[int, int]], codec: str) -> dict[str, int]:
    """A codec's manifest parameters: only the ``allowed`` keys, each an int in its [lo, hi]."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ArtifactError(f"{codec}: unknown codec parameter(s) {unknown[:4]} in the manifest")
    return {k: need_int(v, f"{codec}: codec parameter {k}", *allowed[k]) for k, v in params.items()}
