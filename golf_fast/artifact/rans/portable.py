"""The portable ``golf-rans`` decoder: ``portable_src.C_SOURCE`` compiled once with the system C
compiler (``cc``/``gcc``/``clang``, the one Triton needs) into a cache folder and called through
ctypes; no torch headers, no prebuilt extension, so an exported submission can carry it.

The shared library is cached as ``<cache>/grans_<sha256 of source+compiler+flags>.so`` and
written atomically (compiled to a temporary name in the same folder, then renamed), so
concurrent loaders never see a half-written file. ``library()`` returns None (and ``why()`` says
why) when no compiler is found or compiling fails; the codec then falls back to the numpy decoder.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Optional

import numpy as np

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.portable_src import C_SOURCE, ERRORS

CFLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")
_STATE: dict = {}


def default_cache_dir() -> pathlib.Path:
    """``~/.cache/golf_fast/portable`` (a temporary folder when the home folder is not writable)."""
    return pathlib.Path.home() / ".cache" / "golf_fast" / "portable"


def find_compiler() -> Optional[str]:
    """The first of ``cc``, ``gcc``, ``clang`` on PATH, or None."""
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def build(cache_dir: Optional[os.PathLike] = None, compiler: Optional[str] = None, source: str = C_SOURCE,
          prefix: str = "grans") -> pathlib.Path:
    """Compile ``source`` (default: the portable decoder) into ``cache_dir`` (unless already
    there) as ``<prefix>_<hash>.so``; the library's path. Raises RuntimeError naming the problem
    (no compiler, compile error)."""
    cc = compiler or find_compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    key = hashlib.sha256("\0".join((source, os.path.basename(cc)) + CFLAGS).encode()).hexdigest()[:20]
    folder = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = pathlib.Path(tempfile.gettempdir()) / f"golf_fast_portable_{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"{prefix}_{key}.so"
    if lib.is_file():
        return lib
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = pathlib.Path(tmp) / "grans.c"
        src.write_text(source)
        out = pathlib.Path(tmp) / "grans.so"
        try:
            res = subprocess.run([cc, *CFLAGS, "-o", str(out), str(src)], capture_output=True, text=True)
        except OSError as exc:
            raise RuntimeError(f"cannot run the C compiler {cc}: {exc}") from None
        if res.returncode != 0 or not out.is_file():
            raise RuntimeError(f"{cc} failed to compile the portable decoder: {res.stderr.strip()[-500:]}")
        os.replace(out, lib)  # atomic: a reader sees the whole library or none
    return lib


def load_function(state: dict, symbol: str, restype, argtypes: list, source: str = C_SOURCE,
                  prefix: str = "grans", cache_dir: Optional[os.PathLike] = None):
    """``symbol`` of ``source`` compiled by :func:`build` and loaded through ctypes with the signature
    ``restype``/``argtypes``, once per process: cached in ``state`` as ``state["lib"]`` (None when no
    compiler works or compiling fails) and ``state["why"]`` (why it is None, else "")."""
    if "lib" not in state:
        try:
            fn = getattr(ctypes.CDLL(str(build(cache_dir, source=source, prefix=prefix))), symbol)
            fn.restype, fn.argtypes = restype, argtypes
            state["lib"], state["why"] = fn, ""
        except (RuntimeError, OSError, AttributeError) as exc:
            state["lib"], state["why"] = None, str(exc)
    return state["lib"]


_DECODE_ARGTYPES = [ctypes.c_void_p] + [ctypes.c_longlong] * 3 + \
    [ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_void_p] + \
    [ctypes.c_longlong] * 8 + [ctypes.c_void_p] * 6 + [ctypes.c_longlong, ctypes.c_void_p, ctypes.c_void_p]


def library(cache_dir: Optional[os.PathLike] = None):
    """The loaded ``grans_decode`` (built on first use, then cached per process), or None."""
    return load_function(_STATE, "grans_decode", ctypes.c_int, _DECODE_ARGTYPES, cache_dir=cache_dir)


def why() -> str:
    """Why ``library()`` is None ("" when it is not, or was not tried)."""
    return _STATE.get("why", "")


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def decode_slices_portable(model, streams: list[bytes], dims: list[tuple]) -> list[np.ndarray]:
    """Decode a group's streams (matrix-major, then slice order) into its oriented matrices
    ``dims[k] = (rows, cols)`` with the compiled C decoder; ArtifactError on a corrupt stream.
    The same contract and output as ``numpy_coder.decode_slices_numpy``."""
    fn = library()
    if fn is None:
        raise RuntimeError(f"portable decoder unavailable: {why()}")
    spans = [(t, r0, min(model.slice_rows, r - r0)) for t, (r, _) in enumerate(dims)
             for r0 in range(0, r, model.slice_rows)]
    if len(spans) != len(streams):
        raise ArtifactError(f"expected {len(spans)} slice streams, got {len(streams)}")
    sizes = [r * c for r, c in dims]
    mat_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out = np.zeros(int(mat_off[-1]), dtype=np.int8)
    n = len(spans)
    lens = np.array([len(s) for s in streams], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    rows = np.array([nr for _, _, nr in spans], dtype=np.int64)
    cols = np.array([dims[t][1] for t, _, _ in spans], dtype=np.int64)
    oo = np.array([mat_off[t] + r0 * dims[t][1] for t, r0, _ in spans], dtype=np.int64)
    buf = np.frombuffer(b"".join(streams) or b"\0", dtype=np.uint8)
    luta, lutb = model.luts()
    lutc = model.lutc()
    freq = np.ascontiguousarray(model.freq, dtype=np.int32)
    bad = np.zeros(1, dtype=np.int64)
    if n:
        err = fn(_ptr(freq), freq.shape[0], freq.shape[1], model.prob_bits, _ptr(luta), luta.size, _ptr(lutb),
                 lutb.size, _ptr(lutc), model.nb, model.nc, model.qmax, model.cs, model.rs, model.ainit,
                 model.rinit, int(model.rmode), _ptr(buf), _ptr(offs), _ptr(lens), _ptr(rows), _ptr(cols),
                 _ptr(oo), n, _ptr(out), _ptr(bad))
        if err:
            t, r0, _ = spans[int(bad[0])] if err not in (6, 7, 8) else (0, 0, 0)
            raise ArtifactError(f"{ERRORS.get(err, f'error {err}')} (matrix {t}, rows {r0}+)")
    return [out[mat_off[t]:mat_off[t + 1]].reshape(dims[t]) for t in range(len(dims))]
