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

  Near-duplicate rows (e.g. embedding rows that moved together) are caught by a third context,
  the code just above, clamped to [−ck, ck], after an optional row reordering (``reorder``):
  a greedy nearest-neighbour chain (exact squared L2 distance between code rows) puts similar
  rows next to each other; the permutation is stored (2 or 4 bytes per row).

A (R, C) matrix (after an optional transpose) is cut into slices of ``slice_rows`` rows, each an
independent stream with its own context history (so slices decode in parallel). Context of
symbol (i, j) of a slice, scanned row-major::

    colacc[j] starts at ainit;   rowacc starts at rinit at every row
    above = q[i−1, j] (0 on the slice's first row)
    ctx = (luta[min(colacc[j], |luta|−1)] · nb + lutb[min(rowacc, |lutb|−1)]) · nc + clamp(above, −ck, ck) + ck
    then colacc[j] += |q| − (colacc[j] >> cs);  rowacc += |q| − (rowacc >> rs)

with nc = 2·ck + 1. Coder: rANS with a 32-bit state in [2^16, 2^32), 16-bit words, frequencies
summing to 2^P per context (P = 14 by default). One stream per slice: u32 final state, then the
words. The C++ op
``golf_fast::_rans_{encode,decode}_cpp`` runs it (matrices of a group in parallel);
``encode_ref`` / ``decode_ref`` here are the pure-Python reference it must match byte for byte.

Payload: ``u32 len(side) | side | streams… | rest``, where ``side`` = brotli(u32 len(json) | json
| tables) holds each group's settings, stream lengths and frequency tables, and ``rest`` is the
scales and passthrough tensors, byte-shuffled by element size and compressed with whichever of
brotli-11 / lzma-9 is smaller.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from golf_fast.artifact.errors import ArtifactError

RANS_LOW = 1 << 16
DEFAULT_PROB_BITS = 14
DEFAULT_SLICE_ROWS = 256
REORDER_MAX_ROWS = 16384  # the chain needs a rows × rows distance matrix
# (transpose, cs, rs, na, nb, ck, reorder) settings the encoder tries per group;
# (False, 4, 3, 1, 1, 0, False) is plain order-0.
DEFAULT_CANDIDATES = (
    (False, 4, 3, 1, 1, 0, False),
    (False, 4, 3, 8, 1, 0, False), (False, 4, 6, 8, 4, 0, False), (False, 4, 6, 1, 4, 0, False),
    (True, 4, 3, 8, 1, 0, False), (True, 4, 6, 8, 4, 0, False), (True, 4, 6, 1, 4, 0, False),
    (False, 4, 6, 8, 4, 2, False),
    (False, 4, 6, 8, 4, 2, True), (False, 4, 6, 8, 4, 8, True), (False, 4, 6, 4, 1, 8, True),
    (True, 4, 6, 8, 4, 8, True),
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
    ck: int
    freq: np.ndarray  # (na*nb*nc, 2*qmax+1) int32, each row sums to 2^prob_bits or is all zero
    prob_bits: int = DEFAULT_PROB_BITS
    slice_rows: int = DEFAULT_SLICE_ROWS
    reorder: bool = False

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
                "ck": self.ck, "prob_bits": self.prob_bits, "slice_rows": self.slice_rows, "reorder": self.reorder}

    @classmethod
    def from_settings(cls, g: dict, freq: np.ndarray) -> "GroupModel":
        return cls(int(g["qmax"]), bool(g["transpose"]), int(g["cs"]), int(g["rs"]), int(g["ainit"]),
                   int(g["rinit"]), [int(v) for v in g["thr_a"]], [int(v) for v in g["thr_b"]], int(g["ck"]),
                   freq.astype(np.int32), int(g["prob_bits"]), int(g["slice_rows"]), bool(g["reorder"]))


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


def _features(mats: list[np.ndarray], slice_rows: int, qmax: int, cs: int, rs: int, ainit: int, rinit: int,
              backend: str) -> list[np.ndarray]:
    if backend == "cpp":
        ts = [torch.from_numpy(np.ascontiguousarray(q)) for q in mats]
        feats = torch.ops.golf_fast._rans_features_cpp(ts, slice_rows, qmax, cs, rs, ainit, rinit)
        return [t.numpy() for t in feats]
    return [features_ref(q, slice_rows, qmax, cs, rs, ainit, rinit) for q in mats]


def similarity_chain(q: np.ndarray, backend: str = "reference") -> np.ndarray:
    """Row order of a greedy nearest-neighbour chain: start at row 0, then always the closest
    unvisited row (exact squared L2 distance of the integer codes; ties → lowest index).

    With G = X·Xᵀ and sq = diag(G), the distance from the current row to row j is
    sq[j] − 2·G[cur, j] + const; G is computed in float32 when every entry is exact there
    (C·127² < 2^24), else float64. The chain is O(R²) (C++ op ``_rans_chain_cpp`` for ``cpp``)."""
    r, c = q.shape
    x = torch.from_numpy(q.astype(np.float32 if c * 127 * 127 < 1 << 24 else np.float64))
    gram = x @ x.T
    sq = torch.diagonal(gram).clone()
    if backend == "cpp":
        return torch.ops.golf_fast._rans_chain_cpp(gram, sq).numpy()
    g, sqn = gram.double().numpy(), sq.double().numpy()
    order = np.empty(r, dtype=np.int64)
    visited = np.zeros(r, dtype=bool)
    cur = 0
    for k in range(r):
        order[k] = cur
        visited[cur] = True
        if k + 1 < r:
            d = np.where(visited, np.inf, sqn - 2.0 * g[cur])
            cur = int(np.argmin(d))
    return order


def perm_bytes(rows: int) -> int:
    """Stored size of one row permutation: 2 bytes per row (4 past 65,536 rows)."""
    return rows * (2 if rows <= 1 << 16 else 4)


def _entropy_bits(counts: np.ndarray) -> float:
    """Σ over contexts of the empirical order-0 code length, in bits (counts (nctx, S))."""
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(counts > 0, counts / np.maximum(tot, 1), 1.0)
    return float(-(counts * np.log2(p)).sum())


def _quantile_thresholds(values: np.ndarray, n: int) -> list:
    if n <= 1:
        return []
    sample = values[:: max(1, values.size // 50_000)]
    qs = np.quantile(sample, [k / n for k in range(1, n)], method="lower")
    return [int(v) + 1 for v in qs]  # bucket k holds values ≥ thr[k-1]


SELECT_SAMPLE = 1 << 20  # symbols per group on which the candidates are compared


def _sample(oriented: list[np.ndarray], slice_rows: int, budget: int) -> list[np.ndarray]:
    """The first matrices of a group (whole slices of the last one) up to ~``budget`` symbols."""
    out, n = [], 0
    for q in oriented:
        if n >= budget:
            break
        rows = q.shape[0]
        if n + q.size > budget:
            rows = min(rows, max(slice_rows, -(-(budget - n) // q.shape[1] // slice_rows) * slice_rows))
        out.append(q[:rows])
        n += rows * q.shape[1]
    return out


def _counts(model: GroupModel, mats: list[np.ndarray], backend: str) -> np.ndarray:
    """(nctx, nsym) int64 histogram of (context, symbol) over the matrices' slices."""
    nsym = 2 * model.qmax + 1
    luta, lutb = model.luts()
    if backend == "cpp":
        return torch.ops.golf_fast._rans_counts_cpp(
            [torch.from_numpy(np.ascontiguousarray(q)) for q in mats], model.slice_rows, torch.from_numpy(luta),
            torch.from_numpy(lutb), torch.from_numpy(model.lutc()), model.nb, model.nc, model.nctx, model.qmax,
            model.cs, model.rs, model.ainit, model.rinit).numpy()
    ctx = np.concatenate([_contexts_ref(model, q).ravel() for q in mats])
    sym = np.concatenate([q.ravel() for q in mats]).astype(np.int64) + model.qmax
    return np.bincount(ctx * nsym + sym, minlength=model.nctx * nsym).reshape(model.nctx, nsym)


def _cost_bits(counts: np.ndarray, prob_bits: int) -> tuple[np.ndarray, float]:
    freq = np.stack([quantize_freqs(c, prob_bits) for c in counts])
    logq = np.log2(np.maximum(freq, 1) / float(1 << prob_bits))
    return freq, float(-(counts * logq).sum()) + _TABLE_BITS_PER_SYMBOL * float((freq > 0).sum())


def fit_group(mats: list[np.ndarray], qmax: int, *, candidates=DEFAULT_CANDIDATES,
              prob_bits: int = DEFAULT_PROB_BITS, slice_rows: int = DEFAULT_SLICE_ROWS,
              backend: str = "cpp", sample: int = SELECT_SAMPLE) -> tuple[GroupModel, Optional[list], dict[str, Any]]:
    """Choose the cheapest context setting for one group; return (model, row orders or None, report).

    Candidates are compared on a sample of the group (its first ~``sample`` symbols, whole
    slices; reordering candidates chain the sampled rows only): the estimated cost is the coded
    bits with quantized tables, scaled to the whole group, plus the tables and row orders. The
    winner's tables are then fitted on the whole group."""
    report: dict[str, Any] = {"tries": []}
    best: Optional[tuple[float, tuple]] = None
    total = sum(q.size for q in mats)
    mean_mag = float(np.mean([np.abs(q.astype(np.int16)).mean() for q in mats]))
    oriented_cache: dict[bool, list] = {}
    sample_cache: dict[tuple, list] = {}
    total_rows: dict[bool, int] = {}

    def oriented(transpose: bool) -> list:
        if transpose not in oriented_cache:
            oriented_cache[transpose] = [np.ascontiguousarray(q.T) if transpose else q for q in mats]
            total_rows[transpose] = sum(q.shape[0] for q in oriented_cache[transpose])
        return oriented_cache[transpose]

    def make(transpose, cs, rs, na, nb, ck, reorder, feats_from):
        ainit, rinit = int(round(mean_mag * (1 << cs))), int(round(mean_mag * (1 << rs)))
        fs = _features(feats_from, slice_rows, qmax, cs, rs, ainit, rinit, backend)
        a = np.concatenate([f[0].ravel() for f in fs])
        b = np.concatenate([f[1].ravel() for f in fs])
        return GroupModel(qmax, transpose, cs, rs, ainit, rinit, _quantile_thresholds(a, na),
                          _quantile_thresholds(b, nb), ck, np.zeros((1, 2 * qmax + 1), np.int32), prob_bits,
                          slice_rows, bool(reorder))

    for cand in candidates:
        transpose, cs, rs, na, nb, ck, reorder = cand
        full = oriented(transpose)
        if reorder and max(q.shape[0] for q in full) > REORDER_MAX_ROWS:
            continue
        key = (transpose, bool(reorder))
        if key not in sample_cache:
            smp = _sample(full, slice_rows, sample)
            if reorder:
                smp = [np.ascontiguousarray(q[similarity_chain(q, backend)]) for q in smp]
            sample_cache[key] = smp
        smp = sample_cache[key]
        n_smp = sum(q.size for q in smp)
        model = make(transpose, cs, rs, na, nb, ck, reorder, smp)
        counts = _counts(model, smp, backend)
        # empirical entropy (the tables' rounding loss is ~0.1% and alike for every candidate)
        table_bits = _TABLE_BITS_PER_SYMBOL * float((counts > 0).sum())
        cost = _entropy_bits(counts) * total / n_smp + table_bits
        if reorder:
            cost += 8.0 * sum(perm_bytes(q.shape[0]) for q in full)
        report["tries"].append({"transpose": transpose, "cs": cs, "rs": rs, "na": na, "nb": nb, "ck": ck,
                                "reorder": bool(reorder), "bytes": round(cost / 8),
                                "sampled_symbols": n_smp})
        if best is None or cost < best[0]:
            best = (cost, cand)
    if best is None:
        raise ValueError("candidates: none applies to this group (reordering needs at most "
                         f"{REORDER_MAX_ROWS} rows)")
    transpose, cs, rs, na, nb, ck, reorder = best[1]
    full = oriented(transpose)
    perms = [similarity_chain(q, backend) for q in full] if reorder else None
    coded = [np.ascontiguousarray(q[p]) for q, p in zip(full, perms)] if reorder else full
    model = make(transpose, cs, rs, na, nb, ck, reorder, _sample(coded, slice_rows, sample))
    counts = _counts(model, coded, backend)
    model.freq, _ = _cost_bits(counts, prob_bits)
    report["chosen"] = model.settings()
    report["entropy_bytes"] = round(_entropy_bits(counts) / 8)
    return model, perms, report


# --------------------------------------------------------------------------- pure-Python reference


def _slices(rows: int, slice_rows: int) -> list[tuple[int, int]]:
    return [(r0, min(slice_rows, rows - r0)) for r0 in range(0, rows, slice_rows)]


def features_ref(q: np.ndarray, slice_rows: int, qmax: int, cs: int, rs: int, ainit: int, rinit: int) -> np.ndarray:
    """(3, R, C) int32: column accumulator, row accumulator and symbol above, per symbol."""
    r, c = q.shape
    out = np.zeros((3, r, c), dtype=np.int32)
    for r0, nr in _slices(r, slice_rows):
        col = [ainit] * c
        for i in range(r0, r0 + nr):
            row = rinit
            for j in range(c):
                above = int(q[i - 1, j]) + qmax if i > r0 else qmax
                out[0, i, j], out[1, i, j], out[2, i, j] = col[j], row, above
                m = abs(int(q[i, j]))
                col[j] += m - (col[j] >> cs)
                row += m - (row >> rs)
    return out


def _contexts_ref(model: GroupModel, q: np.ndarray) -> np.ndarray:
    luta, lutb = model.luts()
    f = features_ref(q, model.slice_rows, model.qmax, model.cs, model.rs, model.ainit, model.rinit)
    a = np.minimum(f[0], luta.size - 1)
    b = np.minimum(f[1], lutb.size - 1)
    return (luta[a].astype(np.int64) * model.nb + lutb[b]) * model.nc + model.lutc()[f[2]]


def encode_ref(model: GroupModel, q: np.ndarray) -> list[bytes]:
    """Reference rANS encoder of one (oriented) matrix: one stream per slice."""
    ctx_all = _contexts_ref(model, q)
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    streams = []
    for r0, nr in _slices(q.shape[0], model.slice_rows):
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
    sl = _slices(rows, model.slice_rows)
    if len(streams) != len(sl):
        raise ArtifactError(f"expected {len(sl)} slice streams, got {len(streams)}")
    luta, lutb, lutc = model.luts() + (model.lutc(),)
    freq, cum, p = model.freq, model.cum(), model.prob_bits
    mask = (1 << p) - 1
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
    return (torch.from_numpy(luta), torch.from_numpy(lutb), torch.from_numpy(model.lutc()), model.nb, model.nc,
            torch.from_numpy(np.ascontiguousarray(model.freq, dtype=np.int32)),
            torch.from_numpy(np.ascontiguousarray(model.cum(), dtype=np.int32)),
            model.prob_bits, model.qmax, model.cs, model.rs, model.ainit, model.rinit)


def slice_counts(model: GroupModel, shapes: list[tuple]) -> list[int]:
    """Streams per matrix (slices of its oriented rows)."""
    return [len(_slices(c if model.transpose else r, model.slice_rows)) for r, c in shapes]


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
