"""``golf-rans``: the package's own artifact codec — context-modelled static rANS over int codes.

What it exploits (measured in benchmarks/bench_compression.py):

* codes are small integers: each is one symbol ``u = q + qmax`` of a (2·qmax+1)-letter alphabet,
  not a byte, and an entropy coder gets within ~0.1% of the order-0 entropy (brotli-11: ~1%);
* tensors of one role (all ``blocks.*.mlp.fc.weight``, …) share statistics: one model per
  (role, bits) group, its tables paid once;
* trained matrices have per-column (input feature) and per-row magnitude structure left after the
  per-row SDClip scale: the context of a code is its column's running mean ``|q|`` (previous rows)
  and its row's running mean ``|q|`` (previous columns), each bucketed by thresholds the encoder
  fits (quantiles); the encoder tries a few settings (orientation, bucket counts) per group and
  keeps the cheapest, tables included.

Context of symbol (i, j) of a (R, C) matrix scanned row-major (after an optional transpose)::

    colacc[j] starts at ainit;   rowacc starts at rinit at every row
    ctx = luta[min(colacc[j], |luta|−1)] · nb + lutb[min(rowacc, |lutb|−1)]
    then colacc[j] += |q| − (colacc[j] >> cs);  rowacc += |q| − (rowacc >> rs)

Coder: rANS with a 32-bit state in [2^16, 2^32), 16-bit words, frequencies summing to 2^P per
context (P = 14 by default). One stream per matrix: u32 final state, then the words. The C++ op
``golf_fast::_rans_{encode,decode}_cpp`` runs it (matrices of a group in parallel);
``encode_ref`` / ``decode_ref`` here are the pure-Python reference it must match byte for byte.

Payload: ``u32 len(side) | side | streams… | rest``, where ``side`` = brotli(u32 len(json) | json
| tables) holds each group's settings, stream lengths and frequency tables, and ``rest`` is the
scales and passthrough tensors, byte-shuffled by element size and compressed with whichever of
brotli-11 / lzma-9 is smaller.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from golf_fast.artifact.codecs import (
    ArtifactError,
    Codec,
    TensorData,
    TensorSpec,
    brotli_compress,
    brotli_decompress,
    byte_shuffle,
    byte_unshuffle,
    lzma_compress,
    lzma_decompress,
)

RANS_LOW = 1 << 16
DEFAULT_PROB_BITS = 14
# (transpose, cs, rs, na, nb) settings the encoder tries per group; (False, 4, 3, 1, 1) is order-0.
DEFAULT_CANDIDATES = (
    (False, 4, 3, 1, 1),
    (False, 4, 3, 4, 1), (False, 4, 3, 8, 1), (False, 4, 3, 4, 3), (False, 4, 3, 8, 3),
    (True, 4, 3, 4, 1), (True, 4, 3, 8, 1), (True, 4, 3, 4, 3), (True, 4, 3, 8, 3),
)
_TABLE_BITS_PER_SYMBOL = 10.0  # estimated cost of one nonzero table entry, for model selection


def role_of(name: str) -> str:
    """The role of a tensor name: numeric path parts become ``*`` (``blocks.3.mlp.fc.weight`` →
    ``blocks.*.mlp.fc.weight``)."""
    return re.sub(r"(^|\.)\d+(?=\.|$)", r"\1*", name)


# --------------------------------------------------------------------------- model


@dataclass
class GroupModel:
    """One (role, bits) group's context model and frequency tables (see the module docstring)."""

    qmax: int
    transpose: bool
    cs: int
    rs: int
    ainit: int
    rinit: int
    thr_a: list
    thr_b: list
    freq: np.ndarray  # (na*nb, 2*qmax+1) int32, each row sums to 2^prob_bits or is all zero
    prob_bits: int = DEFAULT_PROB_BITS

    @property
    def nb(self) -> int:
        return len(self.thr_b) + 1

    @property
    def nctx(self) -> int:
        return (len(self.thr_a) + 1) * self.nb

    def luts(self) -> tuple[np.ndarray, np.ndarray]:
        """Bucket lookup tables over every accumulator value: ``lut[v] = #(thresholds ≤ v)``."""
        la = max((self.qmax + 1) << self.cs, self.ainit + 1)
        lb = max((self.qmax + 1) << self.rs, self.rinit + 1)
        luta = np.searchsorted(np.asarray(self.thr_a, dtype=np.int64), np.arange(la), side="right")
        lutb = np.searchsorted(np.asarray(self.thr_b, dtype=np.int64), np.arange(lb), side="right")
        return luta.astype(np.uint8), lutb.astype(np.uint8)

    def cum(self) -> np.ndarray:
        c = np.zeros_like(self.freq)
        c[:, 1:] = np.cumsum(self.freq, axis=1)[:, :-1]
        return c

    def settings(self) -> dict[str, Any]:
        return {"qmax": self.qmax, "transpose": self.transpose, "cs": self.cs, "rs": self.rs,
                "ainit": self.ainit, "rinit": self.rinit, "thr_a": list(self.thr_a), "thr_b": list(self.thr_b),
                "prob_bits": self.prob_bits}


def quantize_freqs(counts: np.ndarray, prob_bits: int) -> np.ndarray:
    """Counts (S,) → integer frequencies summing to 2^prob_bits, ≥ 1 wherever a count is > 0.

    Start from the rounded proportional share, then move units one at a time where they cost
    (or save) the fewest coded bits, ``count · log2(f/(f−1))``; ties go to the lower symbol.
    All-zero counts give all-zero frequencies.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    m = 1 << prob_bits
    f = np.zeros(counts.size, dtype=np.int64)
    if total == 0:
        return f.astype(np.int32)
    nz = counts > 0
    if int(nz.sum()) > m:
        raise ValueError(f"prob_bits: {prob_bits} bits cannot hold {int(nz.sum())} distinct symbols")
    f[nz] = np.maximum(1, np.rint(counts[nz] * m / total).astype(np.int64))
    c = counts.astype(np.float64)
    while f.sum() > m:  # take a unit where it costs least
        cand = np.where(f > 1, c * (np.log2(np.maximum(f, 2)) - np.log2(np.maximum(f - 1, 1))), np.inf)
        f[int(np.argmin(cand))] -= 1
    while f.sum() < m:  # give a unit where it saves most
        gain = np.where(nz, c * (np.log2(f + 1) - np.log2(np.maximum(f, 1))), -np.inf)
        f[int(np.argmax(gain))] += 1
    return f.astype(np.int32)


def _features(mats: list[np.ndarray], cs: int, rs: int, ainit: int, rinit: int, backend: str) -> list[np.ndarray]:
    if backend == "cpp":
        ts = [torch.from_numpy(np.ascontiguousarray(q)) for q in mats]
        return [t.numpy() for t in torch.ops.golf_fast._rans_features_cpp(ts, cs, rs, ainit, rinit)]
    return [features_ref(q, cs, rs, ainit, rinit) for q in mats]


def _entropy_bits(counts: np.ndarray) -> float:
    """Σ over contexts of the empirical order-0 code length, in bits (counts (nctx, S))."""
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(counts > 0, counts / np.maximum(tot, 1), 1.0)
    return float(-(counts * np.log2(p)).sum())


def _quantile_thresholds(values: np.ndarray, n: int) -> list:
    if n <= 1:
        return []
    sample = values[:: max(1, values.size // 200_000)]
    qs = np.quantile(sample, [k / n for k in range(1, n)], method="lower")
    return [int(v) + 1 for v in qs]  # bucket k holds values ≥ thr[k-1]


def fit_group(mats: list[np.ndarray], qmax: int, *, candidates=DEFAULT_CANDIDATES,
              prob_bits: int = DEFAULT_PROB_BITS, backend: str = "cpp") -> tuple[GroupModel, dict[str, Any]]:
    """Choose the cheapest context setting for one group; return the model and a cost report."""
    report: dict[str, Any] = {"tries": []}
    best: Optional[tuple[float, GroupModel]] = None
    feats_cache: dict[tuple, tuple[list, list]] = {}
    nsym = 2 * qmax + 1
    for transpose, cs, rs, na, nb in candidates:
        key = (transpose, cs, rs)
        if key not in feats_cache:
            oriented = [np.ascontiguousarray(q.T) if transpose else q for q in mats]
            mean_mag = float(np.mean([np.abs(q.astype(np.int16)).mean() for q in mats]))
            ainit, rinit = int(round(mean_mag * (1 << cs))), int(round(mean_mag * (1 << rs)))
            fs = _features(oriented, cs, rs, ainit, rinit, backend)
            a = np.concatenate([f[0].ravel() for f in fs])
            b = np.concatenate([f[1].ravel() for f in fs])
            sym = np.concatenate([q.ravel().astype(np.int64) + qmax for q in oriented])
            feats_cache[key] = (a, b, sym, ainit, rinit)
        a, b, sym, ainit, rinit = feats_cache[key]
        thr_a, thr_b = _quantile_thresholds(a, na), _quantile_thresholds(b, nb)
        ctx = np.searchsorted(np.asarray(thr_a, dtype=np.int64), a, side="right") * (len(thr_b) + 1)
        ctx = ctx + np.searchsorted(np.asarray(thr_b, dtype=np.int64), b, side="right")
        nctx = (len(thr_a) + 1) * (len(thr_b) + 1)
        counts = np.bincount(ctx * nsym + sym, minlength=nctx * nsym).reshape(nctx, nsym)
        freq = np.stack([quantize_freqs(c, prob_bits) for c in counts])
        with np.errstate(divide="ignore"):
            code_bits = float(-(counts * np.where(freq > 0, np.log2(np.maximum(freq, 1) / (1 << prob_bits)), 0)).sum())
        table_bits = _TABLE_BITS_PER_SYMBOL * float((freq > 0).sum())
        cost = code_bits + table_bits
        report["tries"].append({"transpose": transpose, "cs": cs, "rs": rs, "na": na, "nb": nb,
                                "bytes": round(cost / 8), "entropy_bytes": round(_entropy_bits(counts) / 8)})
        if best is None or cost < best[0]:
            best = (cost, GroupModel(qmax, transpose, cs, rs, ainit, rinit, thr_a, thr_b, freq, prob_bits))
    assert best is not None
    report["chosen"] = best[1].settings()
    return best[1], report


# --------------------------------------------------------------------------- pure-Python reference


def features_ref(q: np.ndarray, cs: int, rs: int, ainit: int, rinit: int) -> np.ndarray:
    """(2, R, C) int32: the column and row accumulators each symbol is coded with."""
    r, c = q.shape
    out = np.zeros((2, r, c), dtype=np.int32)
    col = [ainit] * c
    for i in range(r):
        row = rinit
        for j in range(c):
            out[0, i, j], out[1, i, j] = col[j], row
            m = abs(int(q[i, j]))
            col[j] += m - (col[j] >> cs)
            row += m - (row >> rs)
    return out


def _contexts_ref(model: GroupModel, q: np.ndarray) -> list[int]:
    luta, lutb = model.luts()
    f = features_ref(q, model.cs, model.rs, model.ainit, model.rinit)
    a = np.minimum(f[0].ravel(), luta.size - 1)
    b = np.minimum(f[1].ravel(), lutb.size - 1)
    return (luta[a].astype(np.int64) * model.nb + lutb[b]).tolist()


def encode_ref(model: GroupModel, q: np.ndarray) -> bytes:
    """Reference rANS encoder of one (oriented) matrix: the stream bytes."""
    ctx = _contexts_ref(model, q)
    syms = (q.ravel().astype(np.int64) + model.qmax).tolist()
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    x, words = RANS_LOW, []
    for k in range(len(syms) - 1, -1, -1):
        f, c = int(freq[ctx[k], syms[k]]), int(cum[ctx[k], syms[k]])
        if f == 0:
            raise ValueError("freq: a symbol that occurs has frequency 0 in its context")
        if x >= f << (32 - p):
            words.append(x & 0xFFFF)
            x >>= 16
        x = ((x // f) << p) + (x % f) + c
    return struct.pack("<I", x) + struct.pack(f"<{len(words)}H", *reversed(words))


def decode_ref(model: GroupModel, stream: bytes, rows: int, cols: int) -> np.ndarray:
    """Reference rANS decoder: stream → (rows, cols) int8 in the coded orientation."""
    if len(stream) < 4 or (len(stream) - 4) % 2:
        raise ArtifactError("stream length is not 4 + 2*words")
    luta, lutb = model.luts()
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    mask = (1 << p) - 1
    x = struct.unpack_from("<I", stream)[0]
    words = struct.unpack_from(f"<{(len(stream) - 4) // 2}H", stream, 4)
    pos = 0
    out = np.zeros((rows, cols), dtype=np.int8)
    col = [model.ainit] * cols
    for i in range(rows):
        row = model.rinit
        for j in range(cols):
            ctx = int(luta[min(col[j], luta.size - 1)]) * model.nb + int(lutb[min(row, lutb.size - 1)])
            slot = x & mask
            cf = cum[ctx]
            s = int(np.searchsorted(cf, slot, side="right")) - 1
            while freq[ctx, s] == 0:  # zero-width symbols share a cum value with the next one
                s -= 1
            x = int(freq[ctx, s]) * (x >> p) + slot - int(cf[s])
            if x < RANS_LOW:
                if pos >= len(words):
                    raise ArtifactError("stream ends early")
                x = (x << 16) | words[pos]
                pos += 1
            code = s - model.qmax
            out[i, j] = code
            col[j] += abs(code) - (col[j] >> model.cs)
            row += abs(code) - (row >> model.rs)
    if pos != len(words):
        raise ArtifactError("stream has trailing words")
    if x != RANS_LOW:
        raise ArtifactError("final rANS state is wrong")
    return out


# --------------------------------------------------------------------------- group coding


def _cpp_args(model: GroupModel) -> tuple:
    luta, lutb = model.luts()
    return (torch.from_numpy(luta), torch.from_numpy(lutb), model.nb,
            torch.from_numpy(np.ascontiguousarray(model.freq, dtype=np.int32)),
            torch.from_numpy(np.ascontiguousarray(model.cum(), dtype=np.int32)),
            model.prob_bits, model.qmax, model.cs, model.rs, model.ainit, model.rinit)


def encode_group(model: GroupModel, mats: list[np.ndarray], backend: str) -> list[bytes]:
    oriented = [np.ascontiguousarray(q.T) if model.transpose else np.ascontiguousarray(q) for q in mats]
    if backend == "cpp":
        outs = torch.ops.golf_fast._rans_encode_cpp([torch.from_numpy(q) for q in oriented], *_cpp_args(model))
        return [o.numpy().tobytes() for o in outs]
    return [encode_ref(model, q) for q in oriented]


def decode_group(model: GroupModel, streams: list[bytes], shapes: list[tuple], names: list[str],
                 backend: str) -> list[np.ndarray]:
    dims = [(c, r) if model.transpose else (r, c) for r, c in shapes]
    if backend == "cpp":
        try:
            outs = torch.ops.golf_fast._rans_decode_cpp(
                [torch.frombuffer(bytearray(s), dtype=torch.uint8) for s in streams],
                [d[0] for d in dims], [d[1] for d in dims], *_cpp_args(model))
        except RuntimeError as exc:
            raise ArtifactError(f"golf-rans: corrupt code stream in group of {names[0]!r}: {exc}") from exc
        mats = [o.numpy() for o in outs]
    else:
        mats = []
        for s, (r, c), name in zip(streams, dims, names):
            try:
                mats.append(decode_ref(model, s, r, c))
            except ArtifactError as exc:
                raise ArtifactError(f"golf-rans: corrupt code stream of {name!r}: {exc}") from exc
    return [np.ascontiguousarray(q.T) if model.transpose else q for q in mats]
