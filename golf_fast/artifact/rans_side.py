"""``golf-rans`` side information read from an untrusted payload, every field checked first.

The payload is ``u32 len(side) | side | streams… | rest`` and ``side`` = brotli(``u32 len(json) |
json | tables``) (layout in ``golf_fast.artifact.rans``). ``read_side`` decompresses the side
information (capped at ``MAX_SIDE_BYTES``), parses its JSON (size- and depth-capped) and checks
every field against the manifest's tensors before the decoder allocates anything from it:

* ``v`` is the side-information version; ``groups`` equals the manifest's (role, bits) groups;
* per group: ``qmax`` = the group's bits' qmax; ``cs``, ``rs`` in 0..8; ``ainit`` in
  [0, (qmax+1)·2^cs] and ``rinit`` in [0, (qmax+1)·2^rs] (the encoder's initial accumulators are
  mean magnitudes, at most qmax·2^cs); ``thr_a``/``thr_b`` non-decreasing ints in that same range,
  at most ``MAX_THRESHOLDS`` each; ``ck`` in 0..qmax; at most ``MAX_CONTEXTS`` contexts;
  ``prob_bits`` 8..15; ``slice_rows`` ≥ 1; ``transpose``/``reorder`` booleans;
* ``streams``: one length per slice of every group's matrices, each ≥ 4 bytes, in the payload;
* ``rest``: ``method`` brotli or lzma, ``len`` the payload's remaining bytes;
* the frequency tables: one row of 2·qmax+1 entries per context, each row summing to 0 or
  2^prob_bits; row orders (reordering groups) are permutations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from golf_fast.artifact.codec_base import TensorSpec
from golf_fast.artifact.compressors import brotli_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.untrusted import (
    MAX_JSON_BYTES,
    need_bool,
    need_dict,
    need_int,
    need_key,
    need_list,
    need_str,
    parse_json,
)
from golf_fast.quant.formats import qmax as qmax_of

SIDE_VERSION = 1
MAX_SIDE_BYTES = 1 << 26
"""Largest decompressed side information (64 MiB; tables and row orders are a few hundred KB)."""
MAX_THRESHOLDS = 63
"""Most bucket thresholds per accumulator (the encoder uses at most 7)."""
MAX_CONTEXTS = 1 << 16
"""Most contexts per group (the encoder uses at most 8·4·17 = 544)."""
MAX_SLICE_ROWS = 1 << 30
_GROUP_KEYS = ("tensors", "qmax", "transpose", "cs", "rs", "ainit", "rinit", "thr_a", "thr_b", "ck", "prob_bits",
               "slice_rows", "reorder")


@dataclass
class SideInfo:
    """Checked side information: the groups' settings (plain dicts of checked values), one length
    per code stream, the rest section's method and length, and the side bytes with the offset of
    the first table."""

    groups: list[dict[str, Any]]
    streams: list[int]
    rest_method: str
    rest_len: int
    side: bytes
    table_pos: int


def _check_thresholds(v: Any, what: str, hi: int) -> list[int]:
    thr = [need_int(t, f"{what}[{i}]", 0, hi) for i, t in enumerate(need_list(v, what, MAX_THRESHOLDS))]
    if any(b < a for a, b in zip(thr, thr[1:])):
        raise ArtifactError(f"{what}: thresholds must be non-decreasing")
    return thr


def check_group(g: Any, k: int, want_tensors: list[int], specs: list[TensorSpec]) -> dict[str, Any]:
    """One group's settings, checked (see the module docstring)."""
    where = f"golf-rans: group {k}"
    g = need_dict(g, where)
    for key in _GROUP_KEYS:
        need_key(g, key, where)
    tensors = [need_int(i, f"{where}: tensors[{j}]", 0, len(specs) - 1)
               for j, i in enumerate(need_list(g["tensors"], f"{where}: tensors", len(specs), 1))]
    if tensors != want_tensors:
        covered = set(tensors)
        missing = [specs[i].name for i in want_tensors if i not in covered]
        what = f"tensor {missing[0]!r} listed in the manifest has no code stream" if missing else \
            "its groups do not match the manifest's quantized tensors"
        raise ArtifactError(f"golf-rans: {what}")
    qmax = qmax_of(int(specs[tensors[0]].bits))
    need_int(g["qmax"], f"{where}: qmax", qmax, qmax)
    cs = need_int(g["cs"], f"{where}: cs", 0, 8)
    rs = need_int(g["rs"], f"{where}: rs", 0, 8)
    a_hi, b_hi = (qmax + 1) << cs, (qmax + 1) << rs
    out = {"tensors": tensors, "qmax": qmax, "cs": cs, "rs": rs,
           "transpose": need_bool(g["transpose"], f"{where}: transpose"),
           "reorder": need_bool(g["reorder"], f"{where}: reorder"),
           "ainit": need_int(g["ainit"], f"{where}: ainit", 0, a_hi),
           "rinit": need_int(g["rinit"], f"{where}: rinit", 0, b_hi),
           "thr_a": _check_thresholds(g["thr_a"], f"{where}: thr_a", a_hi),
           "thr_b": _check_thresholds(g["thr_b"], f"{where}: thr_b", b_hi),
           "ck": need_int(g["ck"], f"{where}: ck", 0, qmax),
           "prob_bits": need_int(g["prob_bits"], f"{where}: prob_bits", 8, 15),
           "slice_rows": need_int(g["slice_rows"], f"{where}: slice_rows", 1, MAX_SLICE_ROWS)}
    nctx = (len(out["thr_a"]) + 1) * (len(out["thr_b"]) + 1) * (2 * out["ck"] + 1)
    if nctx > MAX_CONTEXTS:
        raise ArtifactError(f"{where}: {nctx} contexts, more than the {MAX_CONTEXTS} allowed")
    return out


def slices_of_group(g: dict[str, Any], specs: list[TensorSpec]) -> list[int]:
    """Streams per matrix of a checked group: slices of its (oriented) rows."""
    out = []
    for i in g["tensors"]:
        r, c = int(specs[i].shape[0]), int(specs[i].shape[1])
        rows = c if g["transpose"] else r
        out.append(-(-rows // g["slice_rows"]))
    return out


def check_table(freq: np.ndarray, prob_bits: int, where: str) -> None:
    """Every context's frequencies sum to 0 (an unused context) or 2^prob_bits."""
    sums = freq.sum(axis=1)
    bad = np.flatnonzero((sums != 0) & (sums != 1 << prob_bits))
    if bad.size:
        raise ArtifactError(f"{where}: frequency table of context {int(bad[0])} sums to {int(sums[bad[0]])}, "
                            f"expected 0 or 2^{prob_bits}")


def check_permutation(p: np.ndarray, n: int, what: str) -> None:
    if p.size != n or (n and (int(p.min()) < 0 or int(p.max()) >= n)) or \
            np.bincount(p, minlength=n).max(initial=1) != 1:
        raise ArtifactError(f"golf-rans: row order of {what} is not a permutation")


def read_side(payload: bytes, specs: list[TensorSpec], want_groups: list[list[int]]) -> tuple[SideInfo, int]:
    """Decompress and check the side information; return it and the offset of the first stream."""
    if len(payload) < 4:
        raise ArtifactError("golf-rans: payload is shorter than its header")
    (side_len,) = struct.unpack_from("<I", payload)
    if 4 + side_len > len(payload):
        raise ArtifactError("golf-rans: side information runs past the payload")
    side = brotli_decompress(payload[4:4 + side_len], "golf-rans side information", MAX_SIDE_BYTES)
    if len(side) < 4:
        raise ArtifactError("golf-rans: side information is shorter than its header")
    (hlen,) = struct.unpack_from("<I", side)
    if hlen > min(len(side) - 4, MAX_JSON_BYTES):
        raise ArtifactError(f"golf-rans: side-information JSON length {hlen} runs past the side information")
    header = need_dict(parse_json(side[4:4 + hlen], "golf-rans side information"), "golf-rans side information")
    if header.get("v") != SIDE_VERSION or isinstance(header.get("v"), bool):
        raise ArtifactError(f"golf-rans: unknown side-information version {header.get('v')!r:.40}")
    raw_groups = need_list(need_key(header, "groups", "golf-rans side information"), "golf-rans: groups",
                           len(specs))
    if len(raw_groups) != len(want_groups):
        covered = {i for g in raw_groups if isinstance(g, dict) and isinstance(g.get("tensors"), list)
                   for i in g["tensors"] if isinstance(i, int)}
        missing = [specs[i].name for g in want_groups for i in g if i not in covered]
        what = f"tensor {missing[0]!r} listed in the manifest has no code stream" if missing else \
            "its groups do not match the manifest's quantized tensors"
        raise ArtifactError(f"golf-rans: {what}")
    groups = [check_group(g, k, want, specs) for k, (g, want) in enumerate(zip(raw_groups, want_groups))]
    n_streams = sum(sum(slices_of_group(g, specs)) for g in groups)
    body = len(payload) - 4 - side_len
    lens = need_list(need_key(header, "streams", "golf-rans side information"), "golf-rans: streams",
                     n_streams, n_streams)
    lens = [need_int(v, f"golf-rans: streams[{k}]", 4, body) for k, v in enumerate(lens)]
    rest = need_dict(need_key(header, "rest", "golf-rans side information"), "golf-rans: rest")
    method = need_str(need_key(rest, "method", "golf-rans: rest"), "golf-rans: rest method", ("brotli", "lzma"))
    rest_len = need_int(need_key(rest, "len", "golf-rans: rest"), "golf-rans: rest len", 0, body)
    if sum(lens) + rest_len != body:
        raise ArtifactError(f"golf-rans: payload is {len(payload)} bytes, its sections add up to "
                            f"{4 + side_len + sum(lens) + rest_len}")
    return SideInfo(groups, lens, method, rest_len, side, 4 + hlen), 4 + side_len
