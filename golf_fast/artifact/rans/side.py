"""``golf-rans`` side information: what the JSON header may hold, checked before anything is allocated.

A loaded artifact may come from anyone, so the side information is decompressed with an output
cap (:func:`decompress_side`) and every field is checked for type and range before it sizes an
allocation or a loop: the header's shape (``v``, ``groups``,
``streams``, ``rest``), each group's settings (:func:`check_group`), the stream count against the
manifest's shapes, and each frequency table (:func:`check_tables`: every context sums to 0 or
2^prob_bits). Anything else raises :class:`ArtifactError` naming the field. The C++ decoder checks
again every index it reads (tables, lookup tables, stream bounds).

Version 1 headers (no ``rmode``, tables stored as interleaved uint16) are read as ``rmode`` 0;
version 2 adds ``rmode`` (0..1) and stores each table as two byte planes (``rans.table_bytes``);
version 3 allows ``rmode`` 0..3 (bit 1: the column accumulator follows the signed code, see ``rans.coder``);
version 4 adds the boolean group field ``rowdelta`` (the group codes row differences, ``rans.rowdelta``;
such a group stores its row orders like a reordering one and is itself neither reordering nor transposed);
version 5 adds the int group field ``cm``: −1 for rANS, or the ``flag`` (0, 1) of the embedding coder
(``rans.embcm``) that codes each matrix of the group, rows in its stored row order, as one stream. Such a
group stores its row orders, is neither reordering, transposed nor row-delta, and its rANS settings are
the trivial ones (no thresholds, ck 0, one all-zero table) with ``slice_rows`` covering every matrix.
Version 6 is the embedding coder's second model (seven contexts, two probability maps) and allows
``cm`` 2 (its row-difference binarization); its row orders of at most 16,384 rows are stored as their
Lehmer rank in exactly ceil(log2(n!)/8) bytes (``rans.permcode``). Version 5's embedding coder is gone: a version-5 group with
``cm`` ≥ 0 is refused with an error that says so (its other groups are still read); every other
version-5 header reads as before.

``read_side`` does it all for the decoder: decompression with the cap, the JSON parsed with size
and depth caps (``untrusted.parse_json``), then the checks above against the manifest's groups;
row orders are checked to be permutations (``check_permutation``) as they are read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from golf_fast.artifact.codec_base import TensorSpec
from golf_fast.artifact.compressors import brotli_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.untrusted import MAX_JSON_BYTES, need_int, parse_json
from golf_fast.quant.formats import qmax as qmax_of

SIDE_VERSION = 6  # the newest; the encoder writes the oldest version that holds its settings
KNOWN_VERSIONS = (1, 2, 3, 4, 5, 6)
RMODE_MAX = {1: 0, 2: 1, 3: 3, 4: 3, 5: 3, 6: 3}  # per version, the largest rmode (bit 0: row residual, bit 1: signed column level)
MAX_BUCKETS = 64  # thresholds per accumulator + 1 (the lookup tables hold uint8 bucket indices)
MAX_CONTEXTS = 1 << 16
MAX_ACC = 1 << 20  # accumulator init values and thresholds (the lookup tables have one entry per value)
MAX_SLICE_ROWS = 1 << 24
MAX_SIDE_BYTES = 1 << 26  # decompressed side information (the record's is ~50 KB)
_GROUP_KEYS = {"tensors", "qmax", "transpose", "cs", "rs", "ainit", "rinit", "thr_a", "thr_b", "ck", "prob_bits",
               "slice_rows", "reorder"}


def _fail(what: str) -> None:
    raise ArtifactError(f"golf-rans: side information: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_in(g: dict, key: str, lo: int, hi: int) -> int:
    return need_int(g[key], f"golf-rans: side information: group field {key!r}", lo, hi)


def _thresholds(g: dict, key: str) -> list:
    v = g[key]
    if not isinstance(v, list) or len(v) >= MAX_BUCKETS:
        _fail(f"group field {key!r} must be a list of fewer than {MAX_BUCKETS} ints")
    if not all(_is_int(t) and 1 <= t <= MAX_ACC for t in v) or any(a >= b for a, b in zip(v, v[1:])):
        _fail(f"group field {key!r} must hold strictly increasing ints in [1, {MAX_ACC}]")
    return v


def decompress_side(data: bytes) -> bytes:
    """brotli-decompress the side information, refusing to produce more than ``MAX_SIDE_BYTES``
    (a few bytes of hostile brotli can expand to gigabytes): ``compressors.brotli_decompress``
    streams it and stops at the cap."""
    return brotli_decompress(data, "golf-rans side information", MAX_SIDE_BYTES)


def check_header(header: Any) -> int:
    """Check the header's top level; return its version."""
    if not isinstance(header, dict):
        _fail("the header is not a JSON object")
    v = header.get("v")
    if not _is_int(v) or v not in KNOWN_VERSIONS:
        raise ArtifactError(f"golf-rans: unknown side-information version {v!r}")
    if set(header) != {"v", "groups", "streams", "rest"}:
        _fail(f"header keys {sorted(header)} are not v, groups, streams, rest")
    if not isinstance(header["groups"], list) or not all(isinstance(g, dict) for g in header["groups"]):
        _fail("'groups' must be a list of objects")
    for g in header["groups"]:
        t = g.get("tensors")
        if not isinstance(t, list) or not t or not all(_is_int(i) and i >= 0 for i in t):
            _fail("a group's 'tensors' must be a non-empty list of tensor indices")
    lens = header["streams"]
    if not isinstance(lens, list) or not all(_is_int(n) and 0 <= n < 1 << 40 for n in lens):
        _fail("'streams' must be a list of stream lengths (non-negative ints)")
    rest = header["rest"]
    if not isinstance(rest, dict) or set(rest) != {"method", "len"} or rest["method"] not in ("brotli", "lzma") \
            or not _is_int(rest["len"]) or rest["len"] < 0:
        _fail("'rest' must be {'method': 'brotli' | 'lzma', 'len': int >= 0}")
    return v


def check_group(g: dict, version: int, qmax: int) -> dict:
    """One group's settings, checked (types, ranges, the context count); ``rmode`` filled in for v1.

    ``qmax`` is what the manifest's bit width implies; the group must agree."""
    keys = _GROUP_KEYS | ({"rmode"} if version >= 2 else set()) | ({"rowdelta"} if version >= 4 else set()) | \
        ({"cm"} if version >= 5 else set())
    if set(g) != keys:
        _fail(f"group keys {sorted(g)} are not {sorted(keys)}")
    if g["qmax"] != qmax or not _is_int(g["qmax"]):
        _fail(f"group qmax {g['qmax']!r} does not match the manifest's bit width (qmax {qmax})")
    for key in ("transpose", "reorder"):
        if not isinstance(g[key], bool):
            _fail(f"group field {key!r} must be a boolean, got {g[key]!r}")
    out = dict(g)
    out["rmode"] = _int_in(g, "rmode", 0, RMODE_MAX[version]) if version >= 2 else 0
    out["rowdelta"] = g.get("rowdelta", False)
    if not isinstance(out["rowdelta"], bool):
        _fail(f"group field 'rowdelta' must be a boolean, got {out['rowdelta']!r}")
    if out["rowdelta"] and (g["reorder"] or g["transpose"]):
        _fail("a row-delta group must have reorder and transpose false (its row orders are its own)")
    out["cm"] = _int_in(g, "cm", -1, 2 if version >= 6 else 1) if version >= 5 else -1
    if version == 5 and out["cm"] >= 0:
        _fail("a version-5 embedding-coder group (cm >= 0) was written by an earlier embedding coder that this "
              "version does not read; decode it with the golf_fast (or exported train_gpt.py) that wrote it")
    if out["cm"] >= 0 and (g["reorder"] or g["transpose"] or out["rowdelta"] or g["thr_a"] != [] or g["thr_b"] != []
                           or g["ck"] != 0):
        _fail("an embedding-coder group (cm >= 0) must have reorder, transpose and rowdelta false, no thresholds "
              "and ck 0")
    _int_in(g, "cs", 0, 8)
    _int_in(g, "rs", 0, 8)
    _int_in(g, "ainit", 0, MAX_ACC)
    _int_in(g, "rinit", 0, MAX_ACC)
    _int_in(g, "ck", 0, qmax)
    _int_in(g, "prob_bits", 8, 15)
    _int_in(g, "slice_rows", 1, MAX_SLICE_ROWS)
    na, nb = len(_thresholds(g, "thr_a")) + 1, len(_thresholds(g, "thr_b")) + 1
    if na * nb * (2 * g["ck"] + 1) > MAX_CONTEXTS:
        _fail(f"{na}x{nb}x{2 * g['ck'] + 1} contexts is more than {MAX_CONTEXTS}")
    return out


def check_tables(freq: np.ndarray, prob_bits: int) -> None:
    """(nctx, nsym) frequencies: every context sums to 0 (unused) or exactly 2^prob_bits."""
    sums = freq.sum(axis=1)
    if not np.all((sums == 0) | (sums == 1 << prob_bits)):
        _fail(f"a frequency table does not sum to 2^{prob_bits}")


def check_stream_count(lens: list, needed: int) -> None:
    if len(lens) != needed:
        _fail(f"{len(lens)} code streams listed, the manifest's tensors need {needed}")


# --------------------------------------------------------------------------- reading the side information

@dataclass
class SideInfo:
    """Checked side information: its version, the groups' settings (``check_group``'s dicts), one
    length per code stream, the rest section's method and length, and the side bytes with the
    offset of the first table."""

    version: int
    groups: list[dict[str, Any]]
    streams: list[int]
    rest_method: str
    rest_len: int
    side: bytes
    table_pos: int


def slices_of_group(g: dict[str, Any], specs: list[TensorSpec]) -> list[int]:
    """Streams per matrix of a checked group: slices of its (oriented) rows."""
    out = []
    for i in g["tensors"]:
        r, c = int(specs[i].shape[0]), int(specs[i].shape[1])
        out.append(-(-(c if g["transpose"] else r) // g["slice_rows"]))
    return out


def check_permutation(p: np.ndarray, n: int, what: str) -> None:
    """``p`` is a permutation of 0..n−1 (a stored row order)."""
    if p.size != n or (n and (int(p.min()) < 0 or int(p.max()) >= n)) or \
            np.bincount(p, minlength=n).max(initial=1) != 1:
        raise ArtifactError(f"golf-rans: row order of {what} is not a permutation")


def read_side(payload: bytes, specs: list[TensorSpec], want_groups: list[list[int]]) -> tuple[SideInfo, int]:
    """Decompress (at most ``MAX_SIDE_BYTES``), parse (size- and depth-capped JSON) and check the
    side information against the manifest's tensors; return it and the offset of the first stream."""
    if len(payload) < 4:
        raise ArtifactError("golf-rans: payload is shorter than its header")
    (side_len,) = struct.unpack_from("<I", payload)
    if 4 + side_len > len(payload):
        raise ArtifactError("golf-rans: side information runs past the payload")
    side = decompress_side(payload[4:4 + side_len])
    if len(side) < 4:
        raise ArtifactError("golf-rans: side information is shorter than its header")
    (hlen,) = struct.unpack_from("<I", side)
    if hlen > min(len(side) - 4, MAX_JSON_BYTES):
        raise ArtifactError(f"golf-rans: side-information JSON length {hlen} runs past the side information")
    header = parse_json(side[4:4 + hlen], "golf-rans side information")
    version = check_header(header)
    got_groups = [g["tensors"] for g in header["groups"]]
    if got_groups != want_groups:
        covered = {i for g in got_groups for i in g}
        missing = [specs[i].name for g in want_groups for i in g if i not in covered]
        what = f"tensor {missing[0]!r} listed in the manifest has no code stream" if missing else \
            "its groups do not match the manifest's quantized tensors"
        raise ArtifactError(f"golf-rans: {what}")
    groups = [check_group(g, version, qmax_of(int(specs[g["tensors"][0]].bits))) for g in header["groups"]]
    lens = header["streams"]
    check_stream_count(lens, sum(sum(slices_of_group(g, specs)) for g in groups))
    body = len(payload) - 4 - side_len
    rest_len = header["rest"]["len"]
    if sum(lens) + rest_len != body:
        raise ArtifactError(f"golf-rans: payload is {len(payload)} bytes, its sections add up to "
                            f"{4 + side_len + sum(lens) + rest_len}")
    return SideInfo(version, groups, list(lens), header["rest"]["method"], rest_len, side, 4 + hlen), 4 + side_len
