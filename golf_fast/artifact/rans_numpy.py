"""``golf-rans`` decoder in numpy: the procedure of the ``rans`` module docstring, vectorized over
slices (one lane per slice, every lane one symbol per step), for machines without the compiled
extension. Output is identical to the C++ and the pure-Python decoders.

Cost: one Python step per (row, column) of a slice for all lanes together, ~20 numpy calls on
arrays of #slices elements, so a group of same-shaped matrices takes ``slice_rows × cols``
steps whatever its number of matrices. Measured (CPU, one thread, a loaded 2-core machine): the
smoke model's 1.2M codes in 24 s (~20 µs per code: its groups have only 4-6 lanes). It is a
correctness port, not the fast path; fewer rows per slice (more lanes) would cut the steps.
"""

from __future__ import annotations

import numpy as np

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import RANS_LOW, GroupModel


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
                colacc[:, j] += np.where(act, np.abs(q) - (colacc[:, j] >> model.cs), 0)
                res = np.abs(q - (above - qm)) if model.rmode else np.abs(q)
                rowacc += res - (rowacc >> model.rs)
        if np.any(pos != end):
            raise ArtifactError("stream has trailing words")
        if np.any(x != RANS_LOW):
            raise ArtifactError("final rANS state is wrong")
        for li, k in enumerate(ks):
            t, r0, nr = lanes[k]
            outs[t][r0:r0 + nr] = block[li, :nr]
    return outs
