"""``golf-cm`` (experimental, not an artifact codec yet): encode/decode a list of int8 code
matrices with the context-mixing coder of ``cm_src`` (compiled like the portable decoder).
Used by ``benchmarks/bench_compression.py`` to measure whether context mixing beats lrzip."""

from __future__ import annotations

import ctypes

import numpy as np

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import cm_src
from golf_fast.artifact.rans.portable import load_function

_FN: dict = {}


def _fn():
    f = load_function(_FN, "gcm_code", ctypes.c_longlong,
                      [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong,
                       ctypes.c_longlong, ctypes.c_void_p, ctypes.c_longlong], source=cm_src.C_SOURCE, prefix="gcm")
    if f is None:
        raise RuntimeError(f"golf-cm needs a C compiler: {_FN['why']}")
    return f


def _check(mats: list, qmax: int) -> None:
    if not isinstance(qmax, int) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    for k, q in enumerate(mats):
        if not isinstance(q, np.ndarray) or q.dtype != np.int8 or q.ndim != 2 or q.size == 0:
            raise ValueError(f"mats[{k}]: expected a non-empty 2-D int8 array")
        if int(np.abs(q.astype(np.int16)).max()) > qmax:
            raise ValueError(f"mats[{k}]: codes outside [-{qmax}, {qmax}]")


def encode(mats: list, qmax: int) -> bytes:
    """One stream for the matrices (each row-major, in order; the model adapts across them)."""
    _check(mats, qmax)
    codes = np.ascontiguousarray(np.concatenate([q.ravel() for q in mats]))
    rows = np.array([q.shape[0] for q in mats], dtype=np.int64)
    cols = np.array([q.shape[1] for q in mats], dtype=np.int64)
    cap = codes.size * 2 + 64
    buf = np.zeros(cap, dtype=np.uint8)
    n = _fn()(1, codes.ctypes.data, rows.ctypes.data, cols.ctypes.data, len(mats), qmax, buf.ctypes.data, cap)
    if n < 0:
        raise RuntimeError(f"golf-cm: encoder failed ({n})")
    return buf[:n].tobytes()


def decode(stream: bytes, shapes: list, qmax: int) -> list:
    """Inverse of ``encode``; ArtifactError when the stream is short, long or corrupt."""
    if not isinstance(qmax, int) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    sizes = [int(r) * int(c) for r, c in shapes]
    out = np.zeros(sum(sizes), dtype=np.int8)
    rows = np.array([r for r, _ in shapes], dtype=np.int64)
    cols = np.array([c for _, c in shapes], dtype=np.int64)
    buf = np.frombuffer(stream + b"\0", dtype=np.uint8)
    n = _fn()(0, out.ctypes.data, rows.ctypes.data, cols.ctypes.data, len(shapes), qmax, buf.ctypes.data,
              len(stream))
    if n != len(stream):
        raise ArtifactError(f"golf-cm: corrupt stream ({n} of {len(stream)} bytes consumed)")
    offs = np.cumsum([0] + sizes)
    return [out[offs[k]:offs[k + 1]].reshape(shapes[k]) for k in range(len(shapes))]
