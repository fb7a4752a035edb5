"""``golf-rans`` row-delta groups (side-information version 4): code each row as its difference from
the row above, for matrices whose similarity-ordered rows are near-copies of each other.

With M = 2·qmax + 1 and ``wrap(x) = ((x + qmax) mod M) − qmax`` (into [−qmax, qmax]), a matrix q
(rows already in the group's similarity-chain order) is coded as

    D[0] = q[0],    D[i] = wrap(q[i] − q[i−1])   (i ≥ 1, per column)

and decoded exactly by ``q[i] = wrap(D[0] + … + D[i])`` (the sum is exact in int64; wrap is a
congruence mod M, and q[i] ∈ [−qmax, qmax] is the one representative there). D has the codes'
dtype (int8) and range, so every golf-rans coder codes it unchanged. Where a row repeats the row
above at many positions (a trained embedding's rarely seen tokens), D is mostly 0 there and its
row accumulator (``rmode`` bit 0 over |D − above|, or |D|) gives those rows their own contexts.
"""

from __future__ import annotations

import numpy as np

# the settings tried on the row deltas: the non-reordering, non-transposed defaults plus row-tracking ones
DELTA_EXTRA_CANDIDATES = ((False, 3, 4, 8, 8, 4, False, 1), (False, 4, 3, 8, 4, 3, False, 1))


def _check(q: np.ndarray, qmax: int, name: str) -> None:
    if not isinstance(qmax, int) or isinstance(qmax, bool) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    if not isinstance(q, np.ndarray) or q.ndim != 2 or q.dtype != np.int8:
        raise ValueError(f"{name}: expected a 2-D int8 array, got {getattr(q, 'dtype', type(q).__name__)} "
                         f"{getattr(q, 'shape', '')}")
    if q.size and int(np.abs(q.astype(np.int16)).max()) > qmax:
        raise ValueError(f"{name}: values outside [-{qmax}, {qmax}]")


def _wrap(x: np.ndarray, qmax: int) -> np.ndarray:
    return (np.mod(x + qmax, 2 * qmax + 1) - qmax).astype(np.int8)


def to_row_deltas(q: np.ndarray, qmax: int) -> np.ndarray:
    """(R, C) int8 codes in [−qmax, qmax] → (R, C) int8 row deltas D (see the module doc)."""
    _check(q, qmax, "q")
    d = q.astype(np.int64)
    d[1:] -= q[:-1].astype(np.int64)
    return _wrap(d, qmax)


def from_row_deltas(d: np.ndarray, qmax: int) -> np.ndarray:
    """Inverse of :func:`to_row_deltas`: (R, C) int8 deltas → (R, C) int8 codes."""
    _check(d, qmax, "d")
    return _wrap(np.cumsum(d.astype(np.int64), axis=0), qmax)
