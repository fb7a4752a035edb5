"""Row orders stored in exactly ceil(log2(n!) / 8) bytes (side information version 6, n ≤ ``MAX_ROWS``).

A permutation p of 0..n−1 is its Lehmer code d_i = #{j > i : p_j < p_i} (0 ≤ d_i ≤ n−1−i) read as one
mixed-radix integer, ``v = (…((d_0·(n−1) + d_1)·(n−2) + d_2)…)·1 + d_{n−1}`` with 0 ≤ v < n!, written
little-endian in ``packed_size(n)`` bytes. Against uint16 per row inside brotli (~13.4 bits per row for
a greedy chain of 8,192 rows) that is log2(n!)/n ≈ 11.6 bits per row: 1.8 KB less for the record's
embedding. Python integers do the arithmetic (O(n²) word operations; pack / unpack measured at 0.03 / 0.07 s
for 8,192 rows and 0.11 / 0.28 s for 16,384); larger orders keep the plain uint16/uint32 layout.
"""

from __future__ import annotations

import math

import numpy as np

from golf_fast.artifact.errors import ArtifactError

MAX_ROWS = 1 << 14  # the reordering limit of the fit (``fit.REORDER_MAX_ROWS``)


def packed_size(n: int) -> int:
    """Bytes of a packed permutation of ``n`` elements (0 for n ≤ 1)."""
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_ROWS:
        raise ValueError(f"n: expected an int in 0..{MAX_ROWS}, got {n!r}")
    return ((math.factorial(n) - 1).bit_length() + 7) // 8


def _all_unused(n: int) -> list:
    """A Fenwick tree over the values 0..n−1 (1-based slots), every value counted once (unused)."""
    tree = [0] * (n + 1)
    for k in range(1, n + 1):
        tree[k] += 1
        if k + (k & -k) <= n:
            tree[k + (k & -k)] += tree[k]
    return tree


def pack(p: np.ndarray) -> bytes:
    """The packed bytes of permutation ``p`` ((n,) ints, a permutation of 0..n−1, n ≤ ``MAX_ROWS``)."""
    if not isinstance(p, np.ndarray) or p.ndim != 1 or p.dtype.kind not in "iu" or p.size > MAX_ROWS:
        raise ValueError(f"p: expected a 1-D integer array of at most {MAX_ROWS} entries")
    n = int(p.size)
    if n and (int(p.min()) < 0 or int(p.max()) >= n or np.bincount(p, minlength=n).max() != 1):
        raise ValueError("p: expected a permutation of 0..n-1")
    tree = _all_unused(n)
    v = 0
    for i, x in enumerate(p.tolist()):
        d, k = 0, x  # d = unused values below x
        while k > 0:
            d += tree[k]
            k -= k & -k
        k = x + 1
        while k <= n:
            tree[k] -= 1
            k += k & -k
        v = v * (n - i) + d
    return v.to_bytes(packed_size(n), "little")


def unpack(buf: bytes, n: int, what: str = "a row order") -> np.ndarray:
    """Inverse of :func:`pack`: the (n,) int64 permutation; ArtifactError when ``buf`` is not
    ``packed_size(n)`` bytes or its value is not below n! (``what`` names it)."""
    size = packed_size(n)
    if not isinstance(buf, (bytes, bytearray)) or len(buf) != size:
        raise ArtifactError(f"golf-rans: {what} must be {size} bytes")
    v = int.from_bytes(buf, "little")
    digits = [0] * n
    for i in range(n - 1, 0, -1):
        v, digits[i] = divmod(v, n - i)
    if n and v >= n:
        raise ArtifactError(f"golf-rans: {what} is not a permutation code (value ≥ {n}!)")
    if n:
        digits[0] = v
    tree = _all_unused(n)
    top = 1 << max(n.bit_length() - 1, 0)
    out = np.empty(n, dtype=np.int64)
    for i, d in enumerate(digits):  # the (d+1)-th unused value, by descending the tree
        pos, rest, step = 0, d + 1, top
        while step:
            if pos + step <= n and tree[pos + step] < rest:
                pos += step
                rest -= tree[pos]
            step >>= 1
        out[i] = pos  # value pos (0-based) is the (pos+1)-th slot
        k = pos + 1
        while k <= n:
            tree[k] -= 1
            k += k & -k
    return out
