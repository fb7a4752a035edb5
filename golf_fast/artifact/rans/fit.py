"""``golf-rans`` encoder side: which context model a group gets (see ``rans`` for the model,
the format and the exact decoding procedure).

Per (role, bits) group the encoder tries the settings in ``DEFAULT_CANDIDATES`` on a sample of
the group (its first ~``SELECT_SAMPLE`` symbols, whole slices; for reordering candidates, slices
spread over each matrix's whole-matrix chain), costs each as the empirical entropy of the sample
under its contexts scaled to the group, plus its stored table (measured: brotli of the table's
byte planes) and its row orders, costs the ``FINALISTS`` cheapest again on the whole group, keeps
the cheapest of those, fits its tables on the whole group, and picks the table precision that
minimizes coded + stored bytes (``choose_precision``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from golf_fast.artifact.compressors import brotli_compress
from golf_fast.artifact.rans.coder import (
    DEFAULT_PROB_BITS,
    DEFAULT_SLICE_ROWS,
    GroupModel,
    contexts_ref,
    features_ref,
    table_bytes,
)
from golf_fast.artifact.rans.numpy_coder import counts_np, features_np
from golf_fast.artifact.rans.side import MAX_ACC

REORDER_MAX_ROWS = 16384  # the chain needs a rows × rows distance matrix
# (transpose, cs, rs, na, nb, ck, reorder[, rmode]) settings the encoder tries per group;
# (False, 4, 3, 1, 1, 0, False) is plain order-0.
DEFAULT_CANDIDATES = (
    (False, 4, 3, 1, 1, 0, False),
    (False, 4, 3, 8, 1, 0, False), (False, 4, 6, 8, 4, 0, False), (False, 4, 6, 1, 4, 0, False),
    (True, 4, 3, 8, 1, 0, False), (True, 4, 6, 8, 4, 0, False), (True, 4, 6, 1, 4, 0, False),
    (False, 4, 6, 8, 4, 2, False),
    (False, 4, 6, 8, 4, 2, True), (False, 4, 6, 8, 4, 8, True), (False, 4, 6, 4, 1, 8, True),
    (True, 4, 6, 8, 4, 8, True),
    # rmode 1: the row accumulator follows |q − above| (how closely the row tracks its neighbour)
    (False, 4, 4, 1, 4, 8, True, 1), (False, 4, 4, 4, 4, 8, True, 1), (True, 4, 4, 1, 4, 8, True, 1),
    (False, 4, 4, 1, 4, 3, False, 1), (True, 4, 4, 1, 4, 3, False, 1),
    (True, 4, 8, 1, 8, 0, False),  # a slow row mean: the column scale of a transposed MLP projection
    # rmode 3: also the column accumulator follows the signed code (the column's running level:
    # the common drift of a trained embedding's rarely-seen token rows)
    (False, 3, 4, 16, 4, 8, True, 3), (False, 3, 4, 8, 4, 8, True, 3),
)
SELECT_TABLE_BITS = 12  # table precision at which candidates' stored tables are measured
FINALISTS = 3  # candidates with the lowest sample estimate, costed again on the whole group


def normalize_candidate(cand) -> tuple:
    """A candidate as ``(transpose, cs, rs, na, nb, ck, reorder, rmode)``; a 7-tuple means rmode 0."""
    c = tuple(cand)
    if len(c) == 7:
        c = c + (0,)
    if len(c) != 8:
        raise ValueError(f"candidates: expected (transpose, cs, rs, na, nb, ck, reorder[, rmode]) tuples, got {cand!r}")
    transpose, cs, rs, na, nb, ck, reorder, rmode = c
    if not (isinstance(cs, int) and 0 <= cs <= 8 and isinstance(rs, int) and 0 <= rs <= 8):
        raise ValueError(f"candidates: cs and rs must be ints in 0..8, got {cand!r}")
    if not (isinstance(na, int) and 1 <= na <= 64 and isinstance(nb, int) and 1 <= nb <= 64):
        raise ValueError(f"candidates: na and nb must be ints in 1..64, got {cand!r}")
    if not (isinstance(ck, int) and 0 <= ck <= 127) or rmode not in (0, 1, 2, 3):
        raise ValueError(f"candidates: ck must be an int in 0..127 and rmode 0..3, got {cand!r}")
    return bool(transpose), cs, rs, na, nb, ck, bool(reorder), int(rmode)


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
              rmode: int, backend: str) -> list[np.ndarray]:
    if backend == "cpp":
        ts = [torch.from_numpy(np.ascontiguousarray(q)) for q in mats]
        feats = torch.ops.golf_fast._rans_features_cpp(ts, slice_rows, qmax, cs, rs, ainit, rinit, rmode)
        return [t.numpy() for t in feats]
    if backend == "numpy":
        return [features_np(q, slice_rows, qmax, cs, rs, ainit, rinit, rmode) for q in mats]
    return [features_ref(q, slice_rows, qmax, cs, rs, ainit, rinit, rmode) for q in mats]


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


def perm_bits(rows: int) -> float:
    """Estimated stored size of one row permutation, in bits: it is stored as uint16 (uint32 past
    65,536 rows) inside the brotli-compressed side information, which packs a chain order to
    ~log2(rows) + 0.5 bits per row (measured: 10.4 bits per row at 1,024 rows)."""
    return rows * (np.log2(max(rows, 2)) + 0.5)


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
    # bucket k holds values ≥ thr[k-1]; equal quantiles (a near-constant accumulator, e.g. a few
    # rows per slice) merge into one threshold: the loader needs them strictly increasing in [1, MAX_ACC]
    return sorted({min(int(v) + 1, MAX_ACC) for v in qs})


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


def _spread_sample(mats: list[np.ndarray], slice_rows: int, budget: int) -> list[np.ndarray]:
    """~``budget`` symbols of whole slices spread evenly over the matrices' slices (every k-th
    slice), each slice kept as one matrix: a sample of a chained matrix that sees its whole
    chain, not only its first rows (a greedy chain pairs its first rows best, its last rows worst)."""
    spans = [(m, r0) for m, q in enumerate(mats) for r0 in range(0, q.shape[0], slice_rows)]
    total = sum(q.size for q in mats)
    step = max(1, -(-total // max(budget, 1)))  # ceil(total / budget)
    return [np.ascontiguousarray(mats[m][r0:r0 + slice_rows]) for m, r0 in spans[::step]]


def _counts(model: GroupModel, mats: list[np.ndarray], backend: str) -> np.ndarray:
    """(nctx, nsym) int64 histogram of (context, symbol) over the matrices' slices."""
    nsym = 2 * model.qmax + 1
    luta, lutb = model.luts()
    if backend == "cpp":
        return torch.ops.golf_fast._rans_counts_cpp(
            [torch.from_numpy(np.ascontiguousarray(q)) for q in mats], model.slice_rows, torch.from_numpy(luta),
            torch.from_numpy(lutb), torch.from_numpy(model.lutc()), model.nb, model.nc, model.nctx, model.qmax,
            model.cs, model.rs, model.ainit, model.rinit, model.rmode).numpy()
    if backend == "numpy":
        return counts_np(model, mats)
    ctx = np.concatenate([contexts_ref(model, q).ravel() for q in mats])
    sym = np.concatenate([q.ravel() for q in mats]).astype(np.int64) + model.qmax
    return np.bincount(ctx * nsym + sym, minlength=model.nctx * nsym).reshape(model.nctx, nsym)


PROB_BITS_TRIED = 5  # precisions tried per group: prob_bits − 4 … prob_bits


def choose_precision(counts: np.ndarray, max_bits: int) -> tuple[int, np.ndarray, dict]:
    """The table precision P ≤ ``max_bits`` minimizing coded bits + stored table bytes (brotli of
    ``table_bytes``): low-count contexts lose almost nothing at P = 10, and their tables shrink.
    Returns (P, frequencies (nctx, S), {P: estimated bytes})."""
    best, tried = None, {}
    nz_max = int((counts > 0).sum(axis=1).max(initial=0))
    for p in range(max(8, max_bits - PROB_BITS_TRIED + 1), max_bits + 1):
        if nz_max > 1 << p:
            continue
        freq = np.stack([quantize_freqs(c, p) for c in counts])
        bits = float(-(counts * np.log2(np.maximum(freq, 1) / float(1 << p))).sum())
        total = bits / 8 + len(brotli_compress(table_bytes(freq), quality=11))
        tried[p] = round(total)
        if best is None or total < best[0]:
            best = (total, p, freq)
    if best is None:
        raise ValueError(f"prob_bits: {max_bits} bits cannot hold {nz_max} distinct symbols")
    return best[1], best[2].astype(np.int32), tried


def fit_group(mats: list[np.ndarray], qmax: int, *, candidates=DEFAULT_CANDIDATES,
              prob_bits: int = DEFAULT_PROB_BITS, slice_rows: int = DEFAULT_SLICE_ROWS,
              backend: str = "cpp", sample: int = SELECT_SAMPLE) -> tuple[GroupModel, Optional[list], dict[str, Any]]:
    """Choose the cheapest context setting for one group; return (model, row orders or None, report).

    Candidates are first compared on a sample of the group (its first ~``sample`` symbols, whole
    slices; for reordering candidates, slices spread over each whole matrix's chain): the
    estimated cost is the coded bits with quantized tables, scaled to the whole group, plus the
    tables and row orders. The
    ``FINALISTS`` cheapest are costed again on the whole group (entropy under tables fitted to
    it, plus tables and row orders); the cheapest of those is kept, its tables fitted on the
    whole group (``report["finalists"]`` lists both estimates)."""
    if not isinstance(qmax, int) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    if not mats:
        raise ValueError("mats: expected at least one matrix")
    for k, q in enumerate(mats):
        if not isinstance(q, np.ndarray) or q.ndim != 2 or q.dtype != np.int8 or q.size == 0:
            raise ValueError(f"mats[{k}]: expected a non-empty 2-D int8 array, got "
                             f"{getattr(q, 'dtype', type(q).__name__)} {getattr(q, 'shape', '')}")
        if int(np.abs(q.astype(np.int16)).max()) > qmax:
            raise ValueError(f"mats[{k}]: codes outside [-{qmax}, {qmax}]")
    report: dict[str, Any] = {"tries": []}
    tried: list[tuple[float, tuple]] = []
    best: Optional[tuple] = None
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

    chain_cache: dict[tuple, np.ndarray] = {}

    def chain_of(transpose: bool, i: int) -> np.ndarray:
        """Row order of matrix ``i`` of the group in this orientation, computed once."""
        if (transpose, i) not in chain_cache:
            chain_cache[(transpose, i)] = similarity_chain(oriented(transpose)[i], backend)
        return chain_cache[(transpose, i)]

    def chained_sample(transpose: bool) -> list:
        """A sample of the group's matrices in their whole-matrix chain orders (``_spread_sample``)."""
        full = oriented(transpose)
        return _spread_sample([np.ascontiguousarray(q[chain_of(transpose, i)]) for i, q in enumerate(full)],
                              slice_rows, sample)

    def make(transpose, cs, rs, na, nb, ck, reorder, rmode, feats_from):
        row_mean, col_mean = mean_mag, mean_mag
        if rmode & 2:  # the column accumulator runs over q + qmax: start it at the mean level
            col_mean = float(np.mean([q.astype(np.int16).mean() for q in feats_from])) + qmax
        if rmode & 1:  # mean |q − above| of the coded row order
            row_mean = float(np.mean([np.abs(np.diff(q.astype(np.int16), axis=0)).mean() if q.shape[0] > 1 else 0.0
                                      for q in feats_from]))
        ainit, rinit = int(round(col_mean * (1 << cs))), int(round(row_mean * (1 << rs)))
        fs = _features(feats_from, slice_rows, qmax, cs, rs, ainit, rinit, rmode, backend)
        a = np.concatenate([f[0].ravel() for f in fs])
        b = np.concatenate([f[1].ravel() for f in fs])
        return GroupModel(qmax, transpose, cs, rs, ainit, rinit, _quantile_thresholds(a, na),
                          _quantile_thresholds(b, nb), ck, np.zeros((1, 2 * qmax + 1), np.int32), prob_bits,
                          slice_rows, bool(reorder), int(rmode))

    for cand in candidates:
        transpose, cs, rs, na, nb, ck, reorder, rmode = normalize_candidate(cand)
        ck = min(ck, qmax)  # |code above| ≤ qmax: a wider clamp adds only empty contexts (and the loader caps ck at qmax)
        full = oriented(transpose)
        if reorder and max(q.shape[0] for q in full) > REORDER_MAX_ROWS:
            continue
        key = (transpose, bool(reorder))
        if key not in sample_cache:
            # a reordering candidate is sampled from the chain of the WHOLE matrix: chaining only
            # the sampled rows pairs each row with a worse neighbour than the coder will see
            # (measured on a trained 8192-row embedding: 1.72 MB estimated vs 1.53 MB coded)
            smp = chained_sample(transpose) if reorder else _sample(full, slice_rows, sample)
            sample_cache[key] = smp
        smp = sample_cache[key]
        n_smp = sum(q.size for q in smp)
        model = make(transpose, cs, rs, na, nb, ck, reorder, rmode, smp)
        counts = _counts(model, smp, backend)
        # the stored table, measured (brotli-9 of the byte planes at 2^12 precision), plus the coded
        # bits scaled to the group: the tables' rounding loss is ~0.1% and alike for every candidate
        used = counts[counts.sum(axis=1) > 0]
        table = np.stack([quantize_freqs(c, SELECT_TABLE_BITS) for c in used]) if used.size else used
        table_bits = 8.0 * len(brotli_compress(table_bytes(table), quality=9))
        cost = _entropy_bits(counts) * total / n_smp + table_bits
        if reorder:
            cost += sum(perm_bits(q.shape[0]) for q in full)
        report["tries"].append({"transpose": transpose, "cs": cs, "rs": rs, "na": na, "nb": nb, "ck": ck,
                                "reorder": bool(reorder), "rmode": rmode, "bytes": round(cost / 8),
                                "sampled_symbols": n_smp})
        tried.append((cost, (transpose, cs, rs, na, nb, ck, reorder, rmode)))
    if not tried:
        raise ValueError("candidates: none applies to this group (reordering needs at most "
                         f"{REORDER_MAX_ROWS} rows)")
    # the sample can mislead (few slices of a matrix whose chain ends among poorly matched rows,
    # tables fitted to the sample itself): the best few are costed again on the whole group
    finalists = sorted(tried, key=lambda t: t[0])[:FINALISTS]
    for cost_smp, setting in finalists:
        transpose, cs, rs, na, nb, ck, reorder, rmode = setting
        full = oriented(transpose)
        coded = [np.ascontiguousarray(q[chain_of(transpose, i)]) for i, q in enumerate(full)] if reorder else full
        model = make(transpose, cs, rs, na, nb, ck, reorder, rmode, sample_cache[(transpose, bool(reorder))])
        counts = _counts(model, coded, backend)
        used = counts[counts.sum(axis=1) > 0]
        table = np.stack([quantize_freqs(c, SELECT_TABLE_BITS) for c in used]) if used.size else used
        cost = _entropy_bits(counts) + 8.0 * len(brotli_compress(table_bytes(table), quality=9))
        if reorder:
            cost += sum(perm_bits(q.shape[0]) for q in full)
        report.setdefault("finalists", []).append({"setting": list(setting), "sample_bytes": round(cost_smp / 8),
                                                   "group_bytes": round(cost / 8)})
        if best is None or cost < best[0]:
            best = (cost, setting, model, coded, counts)
    _, setting, model, coded, counts = best
    transpose, reorder = setting[0], setting[6]
    perms = [chain_of(transpose, i) for i in range(len(coded))] if reorder else None
    model.prob_bits, model.freq, report["precision_bytes"] = choose_precision(counts, prob_bits)
    report["chosen"] = model.settings()
    report["entropy_bytes"] = round(_entropy_bits(counts) / 8)
    return model, perms, report
