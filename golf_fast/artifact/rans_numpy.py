"""The ``golf-rans`` coder in numpy: no compiled extension, byte-identical to the C++ coder.

An exported submission (``golf-fast export``) must load its artifact without ``golf_fast._C``;
this module is the coder it uses. It runs the same algorithm as ``rans.encode_ref`` /
``rans.decode_ref`` (see ``golf_fast.artifact.rans`` for the context model and stream layout),
vectorized across *lanes*: every slice of every matrix of a group is an independent rANS
stream, so one numpy operation advances all lanes of equal length by one symbol.

* ``features_np(q, ...)``: (3, R, C) int32 features — column accumulator, row accumulator,
  symbol above — equal to ``features_ref``. The column accumulator is a loop over the
  ``slice_rows`` row offsets (vector over slices × columns), the row accumulator a loop over the
  columns (vector over rows).
* ``contexts_np(model, q)``: (R, C) int64 context index of every symbol.
* ``encode_np(model, mats)`` / ``decode_np(model, streams, dims)``: the group's slice streams,
  matrix-major then slice order; decoding looks a symbol up in a (contexts, 2^P) slot table.

Cost: O(slice_rows · C) numpy steps per group whatever the number of matrices (the lanes are
the vector). Decode raises ``ArtifactError`` on a stream that ends early, has trailing words or
a wrong final state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from golf_fast.artifact.errors import ArtifactError

RANS_LOW = 1 << 16


def _slices(rows: int, slice_rows: int) -> list[tuple[int, int]]:
    return [(r0, min(slice_rows, rows - r0)) for r0 in range(0, rows, slice_rows)]


def _check_matrix(q: Any, what: str) -> np.ndarray:
    if not isinstance(q, np.ndarray) or q.ndim != 2 or q.dtype != np.int8:
        raise ValueError(f"{what}: expected a 2-D int8 numpy array, got "
                         f"{getattr(q, 'dtype', type(q).__name__)} {getattr(q, 'shape', '')}")
    return q


def features_np(q: np.ndarray, slice_rows: int, qmax: int, cs: int, rs: int, ainit: int, rinit: int,
                rmode: int = 0) -> np.ndarray:
    """(3, R, C) int32: column accumulator, row accumulator and symbol above (+qmax), per symbol.

    ``rmode`` 1: the row accumulator runs over ``|q − above|`` instead of ``|q|`` (above = 0 on a
    slice's first row); 0 (the format on main) over ``|q|``."""
    if rmode not in (0, 1):
        raise ValueError(f"rmode: expected 0 or 1, got {rmode!r}")
    _check_matrix(q, "q")
    if slice_rows < 1:
        raise ValueError(f"slice_rows: expected >= 1, got {slice_rows}")
    r, c = q.shape
    out = np.zeros((3, r, c), dtype=np.int32)
    if q.size == 0:
        return out
    mag = np.abs(q.astype(np.int64))
    # column accumulator: reset at every slice's first row; loop over the row offset in the slice
    starts = np.arange(0, r, slice_rows)
    col = np.full((starts.size, c), ainit, dtype=np.int64)
    for k in range(min(slice_rows, r)):
        rows = starts + k
        live = rows < r
        out[0, rows[live]] = col[live]
        col[live] += mag[rows[live]] - (col[live] >> cs)
    # row accumulator: reset at every row; loop over the columns, vector over all rows
    if rmode:
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
    return [(m, r0, nr, c) for m, (r, c) in enumerate(dims) for r0, nr in _slices(r, slice_rows)]


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


def _slot_table(freq: np.ndarray, cum: np.ndarray, p: int) -> np.ndarray:
    """(nctx, 2^p) int64 ``symbol | freq << 8 | cum << 26`` of the symbol whose interval
    [cum, cum + freq) holds each slot (0 for contexts that are never used)."""
    m = 1 << p
    nctx, nsym = freq.shape
    if p > 17:
        raise ValueError(f"p: expected at most 17 probability bits, got {p}")
    if nsym > 255:
        raise ValueError(f"freq: at most 255 symbols per context, got {nsym}")
    table = np.zeros((nctx, m), dtype=np.int64)
    syms = np.arange(nsym, dtype=np.int64)
    packed = syms[None, :] | (freq << 8) | (cum << 26)  # freq ≤ 2^p ≤ 2^17 fits in 18 bits
    for i in range(nctx):
        if freq[i].sum() == m:
            table[i] = np.repeat(packed[i], freq[i])
    return table


def _pad(lut: np.ndarray, n: int) -> np.ndarray:
    """``lut`` extended to ``n`` entries with its last value (``lut[min(v, len − 1)]`` for v < n)."""
    if lut.size >= n:
        return lut
    return np.concatenate([lut, np.full(n - lut.size, lut[-1], dtype=lut.dtype)])


def decode_np(model: Any, streams: list[bytes], dims: list[tuple[int, int]]) -> list[np.ndarray]:
    """Inverse of ``encode_np``: ``dims`` are the oriented (rows, cols) of each matrix."""
    lanes = _lanes(dims, model.slice_rows)
    if len(streams) != len(lanes):
        raise ArtifactError(f"expected {len(lanes)} slice streams, got {len(streams)}")
    p = int(model.prob_bits)
    mask = (1 << p) - 1
    freq = np.asarray(model.freq, dtype=np.int64)
    cum = np.asarray(model.cum(), dtype=np.int64)
    bad = [i for i in range(freq.shape[0]) if freq[i].sum() not in (0, 1 << p)]
    if bad:
        raise ArtifactError(f"frequency table of context {bad[0]} does not sum to 2^{p}")
    table = _slot_table(freq, cum, p)
    luta, lutb = model.luts()
    luta, lutb = luta.astype(np.int64), lutb.astype(np.int64)
    lutc = model.lutc().astype(np.int64)
    nb, nc, qmax, cs, rs = model.nb, model.nc, model.qmax, model.cs, model.rs
    rmode = int(getattr(model, "rmode", 0))
    outs = [np.zeros(d, dtype=np.int8) for d in dims]
    for st in streams:
        if len(st) < 4 or (len(st) - 4) % 2:
            raise ArtifactError("stream length is not 4 + 2*words")
    m_slots = 1 << p
    # row index into the flat slot table = ta[col] + tb[row] + tc[above] (context × 2^p). The
    # accumulators never exceed max((qmax+1) << shift, init) (increments are ≤ qmax, ≤ 2·qmax in
    # rmode 1): the lookups are padded with their last entry up to that bound instead of clamped.
    ta = _pad(luta.astype(np.int64) * (nb * nc * m_slots), max((qmax + 1) << cs, model.ainit + 1))
    tb = _pad(lutb.astype(np.int64) * (nc * m_slots), max((2 * qmax + 1) << rs, model.rinit + 1))
    tc = lutc * m_slots
    flat_table = table.ravel()
    mag = np.abs(np.arange(2 * qmax + 1, dtype=np.int64) - qmax)
    for (nr, c), idx in _by_shape(lanes).items():
        nl = len(idx)
        nwords = np.array([(len(streams[k]) - 4) // 2 for k in idx], dtype=np.int64)
        words = np.zeros((nl, int(nwords.max()) + 1), dtype=np.int64)  # one zero word past every stream's end
        x = np.empty(nl, dtype=np.int64)
        for j, k in enumerate(idx):
            x[j] = int(np.frombuffer(streams[k], dtype="<u4", count=1)[0])
            words[j, :nwords[j]] = np.frombuffer(streams[k], dtype="<u2", offset=4)
        flat_words = words.ravel()
        row_base = np.arange(nl, dtype=np.int64) * words.shape[1]
        pos = np.zeros(nl, dtype=np.int64)
        res = np.zeros((nl, nr, c), dtype=np.int64)
        col = np.full((c, nl), model.ainit, dtype=np.int64)  # column-major: col[j] is contiguous
        prev = np.full((c, nl), qmax, dtype=np.int64)  # symbol above (+qmax); qmax on the first row
        for i in range(nr):
            row = np.full(nl, model.rinit, dtype=np.int64)
            cur = np.empty((c, nl), dtype=np.int64)
            for j in range(c):
                a = col[j]
                slot = x & mask
                e = flat_table[ta[a] + tb[row] + tc[prev[j]] + slot]
                s = e & 0xFF
                x = ((e >> 8) & 0x3FFFF) * (x >> p) + slot - (e >> 26)
                low = x < RANS_LOW
                x = np.where(low, (x << 16) | flat_words[row_base + np.minimum(pos, nwords)], x)
                pos += low
                m = mag[s]
                cur[j] = s
                col[j] = a + m - (a >> cs)
                row += (np.abs(s - prev[j]) if rmode else m) - (row >> rs)
            res[:, i] = cur.T - qmax
            prev = cur
        if (pos > nwords).any():
            raise ArtifactError("stream ends early")
        if (pos != nwords).any():
            raise ArtifactError("stream has trailing words")
        if (x != RANS_LOW).any():
            raise ArtifactError("final rANS state is wrong")
        for j, k in enumerate(idx):
            mi, r0, _, _ = lanes[k]
            outs[mi][r0:r0 + nr] = res[j].astype(np.int8)
    return outs
