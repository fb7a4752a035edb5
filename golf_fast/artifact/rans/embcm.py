"""The embedding coder of ``golf-rans``: encode/decode one int8 code matrix (rows in a similarity
order) with the context-mixing coder of ``embcm_src``, compiled at load (``portable.build``, ctypes);
``backend="reference"`` runs ``embcm_ref`` instead (pure Python: small matrices, or a machine
without a C compiler). Both give the same bytes. ``chain_order`` computes the encoder's row orders
(``gecm_chain``, same C source; ``embcm_ref.chain_order_ref`` is its reference)."""

from __future__ import annotations

import ctypes

import numpy as np

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import embcm_src
from golf_fast.artifact.rans.embcm_ref import code_ref
from golf_fast.artifact.rans.portable import load_function

BACKENDS = ("c", "reference")
FLAGS = (0, 1, 2)  # binarizations: q; "same as above" first, then q; q minus the code above
_STATE: dict = {}
_CHAIN_STATE: dict = {}


def library():
    """The compiled ``gecm_code`` (built on first use, cached per process), or None (``why()``)."""
    return load_function(_STATE, "gecm_code", ctypes.c_longlong,
                         [ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
                          ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong], source=embcm_src.C_SOURCE, prefix="gecm")


def _chain_library():
    return load_function(_CHAIN_STATE, "gecm_chain", ctypes.c_longlong,
                         [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_void_p],
                         source=embcm_src.C_SOURCE, prefix="gecm")


def chain_order(q: np.ndarray, lam: int) -> np.ndarray:
    """The embedding coder's row order for ``q`` ((R, C) int8): the greedy chain from row 0, each next
    row the unvisited one nearest in ``16·L1 + lam·(number of positions that differ)`` (ties → the
    lowest index); (R,) int64. O(R²·C) in C (``gecm_chain``; 4.9 s for 8192 × 512 at -O2, measured); RuntimeError without
    a C compiler (the encoder then does not try the embedding coder)."""
    if not isinstance(q, np.ndarray) or q.dtype != np.int8 or q.ndim != 2 or q.size == 0:
        raise ValueError("q: expected a non-empty 2-D int8 array")
    if not isinstance(lam, int) or isinstance(lam, bool) or not 0 <= lam <= 1 << 20:
        raise ValueError(f"lam: expected an int in 0..2^20, got {lam!r}")
    fn = _chain_library()
    if fn is None:
        raise RuntimeError(f"the embedding coder's row order needs a C compiler: {_CHAIN_STATE.get('why', '')}")
    q = np.ascontiguousarray(q)
    order = np.empty(q.shape[0], dtype=np.int64)
    rc = fn(q.ctypes.data, q.shape[0], q.shape[1], lam, order.ctypes.data)
    if rc == -2:
        raise MemoryError("embedding coder: out of memory")
    if rc != 0:
        raise RuntimeError(f"embedding coder: chain failed ({rc})")
    return order


def why() -> str:
    """Why ``library()`` is None ("" when it is not, or was not tried)."""
    return _STATE.get("why", "")


def _check(qmax, flag, backend) -> None:
    if not isinstance(qmax, int) or isinstance(qmax, bool) or not 1 <= qmax <= 127:
        raise ValueError(f"qmax: expected an int in 1..127, got {qmax!r}")
    if flag not in FLAGS or isinstance(flag, bool):
        raise ValueError(f"flag: expected one of {FLAGS}, got {flag!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")


def _fn(backend: str):
    fn = library() if backend == "c" else None
    if backend == "c" and fn is None:
        raise RuntimeError(f"the embedding coder needs a C compiler: {why()}")
    return fn


def encode(q: np.ndarray, qmax: int, flag: int, backend: str = "c") -> bytes:
    """The stream of ``q`` ((R, C) int8, |q| ≤ qmax, rows in their coding order) in binarization
    ``flag`` (0: q; 1: first "same as the code above", then q; 2: q minus the code above; see ``embcm_src``)."""
    _check(qmax, flag, backend)
    if not isinstance(q, np.ndarray) or q.dtype != np.int8 or q.ndim != 2 or q.size == 0:
        raise ValueError("q: expected a non-empty 2-D int8 array")
    if int(np.abs(q.astype(np.int16)).max()) > qmax:
        raise ValueError(f"q: codes outside [-{qmax}, {qmax}]")
    fn = _fn(backend)
    if fn is None:
        return code_ref(True, q, qmax, flag)[0]
    q = np.ascontiguousarray(q)
    cap = q.size * 4 + 64  # 32 bits per code: ~4x what uniform random codes take (8.5 bits, flag 2)
    buf = np.zeros(cap, dtype=np.uint8)
    n = fn(1, q.ctypes.data, q.shape[0], q.shape[1], qmax, flag, buf.ctypes.data, cap)
    if n < 0:
        raise RuntimeError(f"embedding coder: encoding failed ({n})")
    return buf[:n].tobytes()


def decode(stream: bytes, rows: int, cols: int, qmax: int, flag: int, backend: str = "c") -> np.ndarray:
    """Inverse of :func:`encode`: the (rows, cols) int8 matrix; ArtifactError when the stream is
    short, long or corrupt (it must be consumed exactly)."""
    _check(qmax, flag, backend)
    for name, v in (("rows", rows), ("cols", cols)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if not isinstance(stream, (bytes, bytearray)):
        raise ValueError(f"stream: expected bytes, got {type(stream).__name__}")
    fn = _fn(backend)
    if fn is None:
        _, out, n = code_ref(False, np.zeros((rows, cols), np.int8), qmax, flag, bytes(stream))
    else:
        out = np.zeros((rows, cols), dtype=np.int8)
        buf = np.frombuffer(bytes(stream) or b"\0", dtype=np.uint8)
        n = fn(0, out.ctypes.data, rows, cols, qmax, flag, buf.ctypes.data, len(stream))
        if n == -2:
            raise MemoryError("embedding coder: out of memory")
    if n != len(stream):
        raise ArtifactError(f"embedding coder: corrupt stream ({'invalid' if n < 0 else f'{n} of {len(stream)} bytes read'})")
    return out
