"""``golf-rans`` in numpy, for machines without the compiled extension (an exported submission):
the procedure of the ``rans`` module docstring vectorized over slices (one lane per slice, every
lane one symbol per step). Output is identical to the C++ and the pure-Python coders.

* ``features_np`` / ``contexts_np`` / ``counts_np``: the encoder's context features and
  histograms (``rans_fit`` with ``backend="numpy"``); the column accumulator is a loop over the
  ``slice_rows`` row offsets (vector over slices × columns), the row accumulator a loop over the
  columns (vector over rows).
* ``encode_np`` / ``encode_group_np``: the slice streams, lanes of equal length in lockstep,
  processed from the last symbol back (rANS encodes in reverse).
* ``decode_slices_numpy``: the decoder.

Cost: one Python step per (row, column) of a slice for all lanes together, ~20 numpy calls on
arrays of #slices elements, so a group of same-shaped matrices takes ``slice_rows × cols``
steps whatever its number of matrices. Measured (CPU, one thread, a loaded 2-core machine): the
smoke model's 1.2M codes in 24 s (~20 µs per code: its groups have only 4-6 lanes); the record's
67 matrix shapes (35.9M synthetic codes, side-information v1) decoded in 153 s and encoded in 141 s
(C++: 10 s). It is a correctness port, not the fast path; fewer rows per slice (more lanes)
would cut the steps.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.coder import RANS_LOW, GroupModel, slice_spans


def slot_table(model: GroupModel) -> np.ndarray:
    """(nctx, 2^P) uint8: the symbol whose interval holds each slot (255 in an empty context)."""
    p = model.prob_bits
    out = np.full((model.nctx, 1 << p), 255, dtype=np.uint8)
    for c in range(model.nctx):
        f = model.freq[c]
        if f.sum() == 0:
            continue
        out[c] = np.repeat(np.arange(f.size, dtype=np.uint8), f)
    return out


def decode_slices_numpy(model: GroupModel, streams: list[bytes], dims: list[tuple]) -> list[np.ndarray]:
    """Decode a group's streams (matrix-major, then slice order) into its oriented matrices
    ``dims[k] = (rows, cols)``; raises ArtifactError on a corrupt stream."""
    lanes = []  # (matrix, first row, rows) per stream
    for t, (r, _) in enumerate(dims):
        lanes += [(t, r0, min(model.slice_rows, r - r0)) for r0 in range(0, r, model.slice_rows)]
    if len(lanes) != len(streams):
        raise ArtifactError(f"expected {len(lanes)} slice streams, got {len(streams)}")
    outs = [np.zeros(d, dtype=np.int8) for d in dims]
    by_cols: dict[int, list[int]] = {}
    for k, (t, _, _) in enumerate(lanes):
        by_cols.setdefault(dims[t][1], []).append(k)
    luta, lutb = model.luts()
    lutc = model.lutc().astype(np.int64)
    luta, lutb = luta.astype(np.int64), lutb.astype(np.int64)
    sym_of = slot_table(model)
    freq, cum = model.freq.astype(np.int64), model.cum().astype(np.int64)
    p, qm, mask = model.prob_bits, model.qmax, (1 << model.prob_bits) - 1
    for cols, ks in by_cols.items():
        n = len(ks)
        x = np.zeros(n, dtype=np.int64)
        words, start, end = [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        off = 0
        for li, k in enumerate(ks):
            s = streams[k]
            if len(s) < 4 or (len(s) - 4) % 2:
                raise ArtifactError("stream length is not 4 + 2*words")
            x[li] = int.from_bytes(s[:4], "little")
            w = np.frombuffer(s, dtype="<u2", offset=4).astype(np.int64)
            words.append(w)
            start[li], end[li] = off, off + w.size
            off += w.size
        flat = np.concatenate(words + [np.zeros(1, dtype=np.int64)])
        pos = start.copy()
        nrows = np.array([lanes[k][2] for k in ks])
        block = np.zeros((n, int(nrows.max()), cols), dtype=np.int64)
        colacc = np.full((n, cols), model.ainit, dtype=np.int64)
        for i in range(int(nrows.max())):
            act = nrows > i
            rowacc = np.full(n, model.rinit, dtype=np.int64)
            for j in range(cols):
                above = block[:, i - 1, j] + qm if i > 0 else np.full(n, qm, dtype=np.int64)
                ctx = (luta[np.minimum(colacc[:, j], luta.size - 1)] * model.nb
                       + lutb[np.minimum(rowacc, lutb.size - 1)]) * model.nc + lutc[above]
                slot = x & mask
                s = sym_of[ctx, slot].astype(np.int64)
                if np.any(act & (s == 255)):
                    raise ArtifactError("a symbol falls in an empty context")
                s = np.where(act, s, qm)
                xn = freq[ctx, s] * (x >> p) + slot - cum[ctx, s]
                x = np.where(act, xn, x)
                need = act & (x < RANS_LOW)
                if np.any(need & (pos >= end)):
                    raise ArtifactError("stream ends early")
                x = np.where(need, (x << 16) | flat[np.minimum(pos, flat.size - 1)], x)
                pos += need
                q = s - qm
                block[:, i, j] = q
                cadd = q + qm if model.rmode & 2 else np.abs(q)
                colacc[:, j] += np.where(act, cadd - (colacc[:, j] >> model.cs), 0)
                res = np.abs(q - (above - qm)) if model.rmode & 1 else np.abs(q)
                rowacc += res - (rowacc >> model.rs)
        if np.any(pos != end):
            raise ArtifactError("stream has trailing words")
        if np.any(x != RANS_LOW):
            raise ArtifactError("final rANS state is wrong")
        for li, k in enumerate(ks):
            t, r0, nr = lanes[k]
            outs[t][r0:r0 + nr] = block[li, :nr]
    return outs


def _check_matrix(q: Any, what: str) -> np.ndarray:
    if not isinstance(q, np.ndarray) or q.ndim != 2 or q.dtype != np.int8:
        raise ValueError(f"{what}: expected a 2-D int8 numpy array, got "
                         f"{getattr(q, 'dtype', type(q).__name__)} {getattr(q, 'shape', '')}")
    return q


def features_np(q: np.ndarray, slice_rows: int, qmax: int, cs: int, rs: int, ainit: int, rinit: int,
                rmode: int = 0) -> np.ndarray:
    """(3, R, C) int32: column accumulator, row accumulator and symbol above (+qmax), per symbol.

    ``rmode`` bit 0: the row accumulator runs over ``|q − above|`` instead of ``|q|`` (above = 0
    on a slice's first row); bit 1: the column accumulator runs over ``q + qmax`` instead of ``|q|``."""
    if rmode not in (0, 1, 2, 3):
        raise ValueError(f"rmode: expected 0..3, got {rmode!r}")
    _check_matrix(q, "q")
    if slice_rows < 1:
        raise ValueError(f"slice_rows: expected >= 1, got {slice_rows}")
    r, c = q.shape
    out = np.zeros((3, r, c), dtype=np.int32)
    if q.size == 0:
        return out
    mag = np.abs(q.astype(np.int64))
    cmag = q.astype(np.int64) + qmax if rmode & 2 else mag
    # column accumulator: reset at every slice's first row; loop over the row offset in the slice
    starts = np.arange(0, r, slice_rows)
    col = np.full((starts.size, c), ainit, dtype=np.int64)
    for k in range(min(slice_rows, r)):
        rows = starts + k
        live = rows < r
        out[0, rows[live]] = col[live]
        col[live] += cmag[rows[live]] - (col[live] >> cs)
    # row accumulator: reset at every row; loop over the columns, vector over all rows
    if rmode & 1:
        above0 = np.zeros_like(mag)
        above0[1:] = q[:-1]
        above0[starts] = 0
        rmag = np.abs(q.astype(np.int64) - above0)
    else:
        rmag = mag
    row = np.full(r, rinit, dtype=np.int64)
    for j in range(c):
        out[1, :, j] = row
        row += rmag[:, j] - (row >> rs)
    # symbol above, qmax on a slice's first row
    out[2] = qmax
    above = q[:-1].astype(np.int32) + qmax
    out[2, 1:] = above
    out[2, starts] = qmax
    return out


def contexts_np(model: Any, q: np.ndarray) -> np.ndarray:
    """(R, C) int64 context of every symbol of the oriented matrix ``q`` under ``model``."""
    luta, lutb = model.luts()
    f = features_np(q, model.slice_rows, model.qmax, model.cs, model.rs, model.ainit, model.rinit,
                    int(getattr(model, "rmode", 0)))
    a = np.minimum(f[0], luta.size - 1)
    b = np.minimum(f[1], lutb.size - 1)
    return (luta[a].astype(np.int64) * model.nb + lutb[b]) * model.nc + model.lutc()[f[2]]


def counts_np(model: Any, mats: list[np.ndarray]) -> np.ndarray:
    """(nctx, nsym) int64 histogram of (context, symbol) over the oriented matrices."""
    nsym = 2 * model.qmax + 1
    if not mats:
        return np.zeros((model.nctx, nsym), dtype=np.int64)
    ctx = np.concatenate([contexts_np(model, q).ravel() for q in mats])
    sym = np.concatenate([q.ravel() for q in mats]).astype(np.int64) + model.qmax
    return np.bincount(ctx * nsym + sym, minlength=model.nctx * nsym).reshape(model.nctx, nsym)


def _lanes(dims: list[tuple[int, int]], slice_rows: int) -> list[tuple[int, int, int, int]]:
    """(matrix, first row, rows, cols) of every slice, matrix-major then slice order."""
    return [(m, r0, nr, c) for m, (r, c) in enumerate(dims) for r0, nr in slice_spans(r, slice_rows)]


def _by_shape(lanes: list[tuple[int, int, int, int]]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for k, (_, _, nr, c) in enumerate(lanes):
        groups.setdefault((nr, c), []).append(k)
    return groups


def encode_np(model: Any, mats: list[np.ndarray]) -> list[bytes]:
    """All slice streams of the (oriented, reordered) matrices: u32 final state, then u16 words."""
    mats = [_check_matrix(q, "mats[]") for q in mats]
    p = int(model.prob_bits)
    freq = np.asarray(model.freq, dtype=np.int64)
    cum = np.asarray(model.cum(), dtype=np.int64)
    nsym = freq.shape[1]
    ctxs = [contexts_np(model, q) for q in mats]
    lanes = _lanes([q.shape for q in mats], model.slice_rows)
    streams: list[bytes] = [b""] * len(lanes)
    for (nr, c), idx in _by_shape(lanes).items():
        n = nr * c
        ctx = np.stack([ctxs[lanes[k][0]][lanes[k][1]:lanes[k][1] + nr].ravel() for k in idx])
        sym = np.stack([mats[lanes[k][0]][lanes[k][1]:lanes[k][1] + nr].ravel() for k in idx]).astype(np.int64)
        sym += model.qmax
        flat = ctx * nsym + sym
        f_all = freq.ravel()[flat]
        c_all = cum.ravel()[flat]
        if n and int(f_all.min()) == 0:
            raise ValueError("freq: a symbol that occurs has frequency 0 in its context")
        nl = len(idx)
        x = np.full(nl, RANS_LOW, dtype=np.int64)
        words = np.zeros((nl, max(n, 1)), dtype=np.uint16)
        cnt = np.zeros(nl, dtype=np.int64)
        lane = np.arange(nl)
        shift = 32 - p
        for k in range(n - 1, -1, -1):
            f = f_all[:, k]
            out = x >= (f << shift)
            if out.any():
                li = lane[out]
                words[li, cnt[li]] = (x[li] & 0xFFFF).astype(np.uint16)
                cnt[li] += 1
                x[li] >>= 16
            x = ((x // f) << p) + (x % f) + c_all[:, k]
        for j, k in enumerate(idx):
            body = words[j, :cnt[j]][::-1].astype("<u2").tobytes()
            streams[k] = np.array([x[j]], dtype="<u4").tobytes() + body
    return streams


def encode_group_np(model: GroupModel, mats: list[np.ndarray], perms: Optional[list] = None) -> list[bytes]:
    """``rans.encode_group`` with the numpy coder: orient (transpose), reorder, then encode."""
    oriented = [np.ascontiguousarray(q.T) if model.transpose else np.ascontiguousarray(q) for q in mats]
    if model.reorder:
        if perms is None or len(perms) != len(oriented):
            raise ValueError("perms: expected one row order per matrix for a reordering model")
        oriented = [np.ascontiguousarray(q[p]) for q, p in zip(oriented, perms)]
    return encode_np(model, oriented)
