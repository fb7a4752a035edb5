"""``golf-rans``: the package's own artifact codec — context-modelled static rANS over int codes.

What it exploits (measured in benchmarks/bench_compression.py):

* codes are small integers: each is one symbol ``u = q + qmax`` of a (2·qmax+1)-letter alphabet,
  not a byte, and an entropy coder gets within ~0.1% of the order-0 entropy (brotli-11: ~1%);
* tensors of one role (all ``blocks.*.mlp.fc.weight``, …) share statistics: one model per
  (role, bits) group, its tables paid once (per-matrix tables measured no better on trained codes);
* trained matrices have per-column (input feature) and per-row magnitude structure left after the
  per-row SDClip scale: the context of a code is its column's running mean ``|q|`` (previous rows)
  and its row's running mean, each bucketed by thresholds the encoder fits (quantiles);
* near-duplicate rows (embedding rows of rare tokens that moved together; on the CPU-trained
  models measured, the code above after a similarity ordering carries 6-7% of the embedding's
  order-0 entropy, and 14-16% together with the row's running distance to the row above; in the
  attention and MLP matrices both carry < 1%): a third context is the code just above, clamped
  to [−ck, ck], after an optional row reordering (``reorder``: a greedy nearest-neighbour chain,
  exact squared L2 distance between code rows, puts similar rows next to each other; the
  permutation is stored, uint16 per row inside the brotli'd side information, ~10.4 bits per
  row at 1,024 rows), and ``rmode`` bit 0 makes the row accumulator follow ``|q − above|``, i.e.
  how closely this row tracks the one above so far.

The encoder (``fit``) tries a few settings per group (``fit.DEFAULT_CANDIDATES``) on a
sample and keeps the cheapest, tables and row orders included.

Decoding, exactly (what a port, e.g. to numpy, must do; all integer arithmetic)
------------------------------------------------------------------------------
Per group: settings ``qmax, transpose, cs, rs, ainit, rinit, thr_a, thr_b, ck, prob_bits (P),
slice_rows, reorder, rmode`` and ``freq`` (nctx, 2·qmax+1) with ``nctx = na·nb·nc``,
``na = len(thr_a)+1``, ``nb = len(thr_b)+1``, ``nc = 2·ck+1``; ``cum[c, s] = Σ_{t<s} freq[c, t]``.
Lookup tables: ``luta[v] = #{t ∈ thr_a : t ≤ v}`` for v < max((cspan+1)<<cs, ainit+1) with
cspan = qmax (rmode bit 1 clear) or 2·qmax (set), ``lutb`` likewise over thr_b for
v < max((span+1)<<rs, rinit+1) with span = qmax (rmode bit 0 clear) or 2·qmax (set);
``lutc[u] = clamp(u − qmax, −ck, ck) + ck``. ``rmode`` is 0..3 (bits 0 and 1 below; side
information version 2 allows 0..1).

Each matrix (R, C) is coded in its oriented form (C, R) if ``transpose``, then with its rows
permuted if ``reorder``; its rows are cut into slices of ``slice_rows`` rows, one stream each
(matrix-major, then slice order). A stream is ``u32 x0`` (little endian) then 16-bit LE words.
For each slice (independent of every other slice, so all slices can be decoded in lockstep,
one vector lane per slice)::

    x = x0; colacc[0..C) = ainit
    for i in rows of the slice:
        rowacc = rinit
        for j in 0..C:
            above = out[i−1, j] + qmax if i is not the slice's first row else qmax
            c = (luta[min(colacc[j], |luta|−1)]·nb + lutb[min(rowacc, |lutb|−1)])·nc + lutc[above]
            slot = x & (2^P − 1)
            s = the symbol with cum[c, s] ≤ slot < cum[c, s] + freq[c, s]
            x = freq[c, s]·(x >> P) + slot − cum[c, s]
            if x < 2^16: x = (x << 16) | next word        (no word left: corrupt)
            q = s − qmax; out[i, j] = q
            colacc[j] += (q + qmax if rmode & 2 else |q|) − (colacc[j] >> cs)
            rowacc += (|q − (above − qmax)| if rmode & 1 else |q|) − (rowacc >> rs)
    at the end every word is used and x == 2^16 (else corrupt)

Then ``out[perm[k]] = decoded row k`` undoes the reordering (perm must be a permutation) and a
transposed group is transposed back. The encoder runs the same contexts backwards (rANS is LIFO):
for symbols in reverse order, ``if x ≥ freq << (32 − P): emit x & 0xFFFF; x >>= 16``, then
``x = (x // f << P) + x % f + cum``, starting from x = 2^16; the words are stored in reverse.
The C++ op ``golf_fast::_rans_{encode,decode}_cpp`` runs it (slices in parallel, 4 interleaved
per thread), and so does the portable decoder (``portable_src``: plain C compiled at load, one
core, 4 interleaved slices); ``encode_ref`` / ``decode_ref`` here are the pure-Python reference
both must match byte for byte (tests/artifact/test_rans_portable.py, test_rans_roundtrip_props.py).

Payload: ``u32 len(side) | side | streams… | rest``, where ``side`` = brotli(u32 len(json) | json
| tables) holds each group's settings, stream lengths, frequency tables (uint16 LE) and row orders
(uint16, or uint32 past 65,536 rows), checked field by field at load (``rans_side``), and
``rest`` is the scales and passthrough tensors, byte-shuffled by element size and compressed with
whichever of brotli-11 / lzma-9 is smaller.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from golf_fast.artifact.compressors import byte_shuffle, byte_unshuffle
from golf_fast.artifact.errors import ArtifactError

RANS_LOW = 1 << 16
DEFAULT_PROB_BITS = 14
DEFAULT_SLICE_ROWS = 256


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
    ck: int
    freq: np.ndarray  # (na*nb*nc, 2*qmax+1) int32, each row sums to 2^prob_bits or is all zero
    prob_bits: int = DEFAULT_PROB_BITS
    slice_rows: int = DEFAULT_SLICE_ROWS
    reorder: bool = False
    # bit 0: row accumulator over |q - above| (else |q|); bit 1: column accumulator over the
    # signed code q + qmax (the column's running level, e.g. an embedding's common drift; else |q|)
    rmode: int = 0

    @property
    def nb(self) -> int:
        return len(self.thr_b) + 1

    @property
    def nc(self) -> int:
        return 2 * self.ck + 1

    @property
    def nctx(self) -> int:
        return (len(self.thr_a) + 1) * self.nb * self.nc

    def lutc(self) -> np.ndarray:
        """Symbol above → its context bucket: ``clamp(u − qmax, −ck, ck) + ck``."""
        v = np.arange(2 * self.qmax + 1) - self.qmax
        return (np.clip(v, -self.ck, self.ck) + self.ck).astype(np.uint8)

    def luts(self) -> tuple[np.ndarray, np.ndarray]:
        """Bucket lookup tables over every accumulator value: ``lut[v] = #(thresholds ≤ v)``."""
        la = max((self.col_span() + 1) << self.cs, self.ainit + 1)
        lb = max((self.row_span() + 1) << self.rs, self.rinit + 1)
        luta = np.searchsorted(np.asarray(self.thr_a, dtype=np.int64), np.arange(la), side="right")
        lutb = np.searchsorted(np.asarray(self.thr_b, dtype=np.int64), np.arange(lb), side="right")
        return luta.astype(np.uint8), lutb.astype(np.uint8)

    def row_span(self) -> int:
        """Largest value the row accumulator adds per symbol: ``qmax`` (|q|) or ``2·qmax`` (|q − above|)."""
        return self.qmax * (2 if self.rmode & 1 else 1)

    def col_span(self) -> int:
        """Largest value the column accumulator adds per symbol: ``qmax`` (|q|) or ``2·qmax`` (q + qmax)."""
        return self.qmax * (2 if self.rmode & 2 else 1)

    def cum(self) -> np.ndarray:
        c = np.zeros_like(self.freq)
        c[:, 1:] = np.cumsum(self.freq, axis=1)[:, :-1]
        return c

    def settings(self) -> dict[str, Any]:
        return {"qmax": self.qmax, "transpose": self.transpose, "cs": self.cs, "rs": self.rs,
                "ainit": self.ainit, "rinit": self.rinit, "thr_a": list(self.thr_a), "thr_b": list(self.thr_b),
                "ck": self.ck, "prob_bits": self.prob_bits, "slice_rows": self.slice_rows, "reorder": self.reorder,
                "rmode": self.rmode}

    @classmethod
    def from_settings(cls, g: dict, freq: np.ndarray) -> "GroupModel":
        return cls(int(g["qmax"]), bool(g["transpose"]), int(g["cs"]), int(g["rs"]), int(g["ainit"]),
                   int(g["rinit"]), [int(v) for v in g["thr_a"]], [int(v) for v in g["thr_b"]], int(g["ck"]),
                   freq.astype(np.int32), int(g["prob_bits"]), int(g["slice_rows"]), bool(g["reorder"]),
                   int(g.get("rmode", 0)))


def table_bytes(freq: np.ndarray) -> bytes:
    """Frequency tables as stored: uint16 little-endian, byte planes split (all low bytes, then all
    high bytes), which brotli packs ~5-10% tighter than interleaved."""
    return byte_shuffle(np.ascontiguousarray(freq, dtype="<u2").tobytes(), 2)


def read_table_bytes(buf: bytes, n: int, planes: bool = True) -> np.ndarray:
    """Inverse of ``table_bytes`` for ``n`` entries (``buf`` is exactly 2n bytes); ``planes=False``
    reads side-information version 1, which stored the uint16 entries interleaved."""
    return np.frombuffer(byte_unshuffle(buf, 2) if planes else buf, dtype="<u2", count=n).astype(np.int64)


# --------------------------------------------------------------------------- pure-Python reference


def slice_spans(rows: int, slice_rows: int) -> list[tuple[int, int]]:
    """The (first row, row count) of each slice of ``rows`` rows, ``slice_rows`` per slice."""
    return [(r0, min(slice_rows, rows - r0)) for r0 in range(0, rows, slice_rows)]


def features_ref(q: np.ndarray, slice_rows: int, qmax: int, cs: int, rs: int, ainit: int, rinit: int,
                 rmode: int = 0) -> np.ndarray:
    """(3, R, C) int32: column accumulator, row accumulator and symbol above, per symbol."""
    r, c = q.shape
    out = np.zeros((3, r, c), dtype=np.int32)
    for r0, nr in slice_spans(r, slice_rows):
        col = [ainit] * c
        for i in range(r0, r0 + nr):
            row = rinit
            for j in range(c):
                above = int(q[i - 1, j]) + qmax if i > r0 else qmax
                out[0, i, j], out[1, i, j], out[2, i, j] = col[j], row, above
                m = abs(int(q[i, j]))
                col[j] += (int(q[i, j]) + qmax if rmode & 2 else m) - (col[j] >> cs)
                row += (abs(int(q[i, j]) - (above - qmax)) if rmode & 1 else m) - (row >> rs)
    return out


def contexts_ref(model: GroupModel, q: np.ndarray) -> np.ndarray:
    luta, lutb = model.luts()
    f = features_ref(q, model.slice_rows, model.qmax, model.cs, model.rs, model.ainit, model.rinit, model.rmode)
    a = np.minimum(f[0], luta.size - 1)
    b = np.minimum(f[1], lutb.size - 1)
    return (luta[a].astype(np.int64) * model.nb + lutb[b]) * model.nc + model.lutc()[f[2]]


def encode_ref(model: GroupModel, q: np.ndarray) -> list[bytes]:
    """Reference rANS encoder of one (oriented) matrix: one stream per slice."""
    ctx_all = contexts_ref(model, q)
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    streams = []
    for r0, nr in slice_spans(q.shape[0], model.slice_rows):
        ctx = ctx_all[r0:r0 + nr].ravel().tolist()
        syms = (q[r0:r0 + nr].ravel().astype(np.int64) + model.qmax).tolist()
        x, words = RANS_LOW, []
        for k in range(len(syms) - 1, -1, -1):
            f, c = int(freq[ctx[k], syms[k]]), int(cum[ctx[k], syms[k]])
            if f == 0:
                raise ValueError("freq: a symbol that occurs has frequency 0 in its context")
            if x >= f << (32 - p):
                words.append(x & 0xFFFF)
                x >>= 16
            x = ((x // f) << p) + (x % f) + c
        streams.append(struct.pack("<I", x) + struct.pack(f"<{len(words)}H", *reversed(words)))
    return streams


def decode_ref(model: GroupModel, streams: list[bytes], rows: int, cols: int) -> np.ndarray:
    """Reference rANS decoder: one stream per slice → (rows, cols) int8 in the coded orientation."""
    sl = slice_spans(rows, model.slice_rows)
    if len(streams) != len(sl):
        raise ArtifactError(f"expected {len(sl)} slice streams, got {len(streams)}")
    luta, lutb, lutc = model.luts() + (model.lutc(),)
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    mask = (1 << p) - 1
    empty = freq.sum(axis=1) == 0
    out = np.zeros((rows, cols), dtype=np.int8)
    for (r0, nr), stream in zip(sl, streams):
        if len(stream) < 4 or (len(stream) - 4) % 2:
            raise ArtifactError("stream length is not 4 + 2*words")
        x = struct.unpack_from("<I", stream)[0]
        words = struct.unpack_from(f"<{(len(stream) - 4) // 2}H", stream, 4)
        pos = 0
        col = [model.ainit] * cols
        for i in range(r0, r0 + nr):
            row = model.rinit
            for j in range(cols):
                above = int(out[i - 1, j]) + model.qmax if i > r0 else model.qmax
                ctx = ((int(luta[min(col[j], luta.size - 1)]) * model.nb + int(lutb[min(row, lutb.size - 1)]))
                       * model.nc + int(lutc[above]))
                slot = x & mask
                if empty[ctx]:
                    raise ArtifactError("a symbol falls in an empty context")
                s = int(np.searchsorted(cum[ctx], slot, side="right")) - 1
                while s >= 0 and freq[ctx, s] == 0:  # a zero-width symbol shares its cum with the next one
                    s -= 1
                if s < 0:
                    raise ArtifactError("a symbol falls in an empty context")
                x = int(freq[ctx, s]) * (x >> p) + slot - int(cum[ctx, s])
                if x < RANS_LOW:
                    if pos >= len(words):
                        raise ArtifactError("stream ends early")
                    x = (x << 16) | words[pos]
                    pos += 1
                code = s - model.qmax
                out[i, j] = code
                col[j] += (code + model.qmax if model.rmode & 2 else abs(code)) - (col[j] >> model.cs)
                row += (abs(code - (above - model.qmax)) if model.rmode & 1 else abs(code)) - (row >> model.rs)
        if pos != len(words):
            raise ArtifactError("stream has trailing words")
        if x != RANS_LOW:
            raise ArtifactError("final rANS state is wrong")
    return out


# --------------------------------------------------------------------------- group coding


def _cpp_args(model: GroupModel) -> tuple:
    luta, lutb = model.luts()
    return (torch.from_numpy(luta), torch.from_numpy(lutb), torch.from_numpy(model.lutc()), model.nb, model.nc,
            torch.from_numpy(np.ascontiguousarray(model.freq, dtype=np.int32)),
            torch.from_numpy(np.ascontiguousarray(model.cum(), dtype=np.int32)),
            model.prob_bits, model.qmax, model.cs, model.rs, model.ainit, model.rinit, model.rmode)


def slice_counts(model: GroupModel, shapes: list[tuple]) -> list[int]:
    """Streams per matrix (slices of its oriented rows)."""
    return [len(slice_spans(c if model.transpose else r, model.slice_rows)) for r, c in shapes]


def encode_group(model: GroupModel, mats: list[np.ndarray], backend: str,
                 perms: Optional[list] = None) -> list[bytes]:
    """All slice streams of the group's matrices, matrix-major then slice order; ``perms`` (one
    row order per oriented matrix) when the model reorders."""
    oriented = [np.ascontiguousarray(q.T) if model.transpose else np.ascontiguousarray(q) for q in mats]
    if model.reorder:
        if perms is None or len(perms) != len(oriented):
            raise ValueError("perms: expected one row order per matrix for a reordering model")
        oriented = [np.ascontiguousarray(q[p]) for q, p in zip(oriented, perms)]
    if backend == "cpp":
        outs = torch.ops.golf_fast._rans_encode_cpp([torch.from_numpy(q) for q in oriented], model.slice_rows,
                                                    *_cpp_args(model))
        return [o.numpy().tobytes() for o in outs]
    return [s for q in oriented for s in encode_ref(model, q)]


def decode_group(model: GroupModel, streams: list[bytes], shapes: list[tuple], names: list[str],
                 backend: str, perms: Optional[list] = None) -> list[np.ndarray]:
    dims = [(c, r) if model.transpose else (r, c) for r, c in shapes]
    if backend == "cpp":
        try:
            outs = torch.ops.golf_fast._rans_decode_cpp(
                [torch.frombuffer(bytearray(s), dtype=torch.uint8) if s else torch.zeros(0, dtype=torch.uint8)
                 for s in streams],
                [d[0] for d in dims], [d[1] for d in dims], model.slice_rows, *_cpp_args(model))
        except RuntimeError as exc:
            raise ArtifactError(f"golf-rans: corrupt code stream in the group of {names[0]!r}: {exc}") from exc
        mats = [o.numpy() for o in outs]
    else:
        mats, k = [], 0
        for n, (r, c), name in zip(slice_counts(model, shapes), dims, names):
            try:
                mats.append(decode_ref(model, streams[k:k + n], r, c))
            except ArtifactError as exc:
                raise ArtifactError(f"golf-rans: corrupt code stream of {name!r}: {exc}") from exc
            k += n
    return undo_order(model, mats, names, perms)


def undo_order(model: GroupModel, mats: list[np.ndarray], names: list[str],
               perms: Optional[list] = None) -> list[np.ndarray]:
    """Decoded oriented matrices → the stored ones: rows back in place (``out[perm[k]] = row k``,
    perm checked to be a permutation), then transposed back if the group is transposed."""
    if model.reorder:
        if perms is None or len(perms) != len(mats):
            raise ArtifactError("golf-rans: a reordering group is missing its row orders")
        out = []
        for q, p, name in zip(mats, perms, names):
            if sorted(p.tolist()) != list(range(q.shape[0])):
                raise ArtifactError(f"golf-rans: row order of {name!r} is not a permutation")
            back = np.empty_like(q)
            back[p] = q
            out.append(back)
        mats = out
    return [np.ascontiguousarray(q.T) if model.transpose else q for q in mats]
