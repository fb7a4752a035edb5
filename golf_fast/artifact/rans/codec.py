"""The ``golf-rans`` codec: groups, side information and the payload layout (see ``rans``)."""

from __future__ import annotations

import json
import logging
import struct
from typing import Any

import numpy as np

from golf_fast._availability import load_extension
from golf_fast.artifact.codec_base import Codec, TensorData, TensorSpec
from golf_fast.artifact.compressors import (
    brotli_compress,
    brotli_decompress,
    byte_shuffle,
    byte_unshuffle,
    lzma_compress,
    lzma_decompress,
)
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import embcm, permcode
from golf_fast.artifact.rans.coder import (
    DEFAULT_PROB_BITS,
    DEFAULT_SLICE_ROWS,
    GroupModel,
    decode_group,
    encode_group,
    read_table_bytes,
    role_of,
    table_bytes,
    undo_order,
)
from golf_fast.artifact.rans.fit import DEFAULT_CANDIDATES, fit_group, normalize_candidate
from golf_fast.artifact.rans.numpy_coder import decode_slices_numpy, encode_group_np
from golf_fast.artifact.rans.portable import decode_slices_portable
from golf_fast.artifact.rans.rowdelta import DELTA_EXTRA_CANDIDATES, from_row_deltas, to_row_deltas
from golf_fast.artifact.rans.side import (
    KNOWN_VERSIONS,
    RMODE_MAX,
    SIDE_VERSION,
    check_permutation,
    check_tables,
    read_side,
    slices_of_group,
)
from golf_fast.artifact.untrusted import check_params
from golf_fast.quant.formats import qmax as qmax_of

_log = logging.getLogger("golf_fast.artifact")
_NOTED: list = []


def _resolve_backend(backend: str, decoding: bool = False) -> str:
    """``auto``: the C++ coder when ``golf_fast._C`` is built; without it, when ``decoding``, the
    portable C decoder (what an exported ``train_gpt.py`` runs: ~0.4 s instead of ~48 s for the
    record's 36M codes), else the numpy coder (the same bytes: tests/artifact/test_rans_numpy.py,
    test_rans_portable.py); ``cpp`` fails without the extension. ``portable``: when ``decoding``, the
    C decoder compiled at load (``rans.portable``), or the numpy decoder when no C compiler works;
    when encoding, as ``auto``."""
    if backend not in ("auto", "cpp", "reference", "numpy", "portable"):
        raise ValueError(f"backend: expected 'auto', 'cpp', 'reference', 'numpy' or 'portable', got {backend!r}")
    if backend in ("reference", "numpy"):
        return backend
    if backend == "portable":
        if not decoding:
            return _resolve_backend("auto")
        from golf_fast.artifact.rans import portable

        if portable.library() is not None:
            return "portable"
        if not _NOTED:
            _NOTED.append(portable.why())
            _log.info("golf-rans: numpy decoder (%s)", portable.why())
        return "numpy"
    ok, why = load_extension()
    if not ok:
        if backend == "auto" and decoding:
            return _resolve_backend("portable", decoding=True)
        if backend == "auto":
            if not _NOTED:
                _NOTED.append(why)
                _log.info("golf-rans: numpy coder (%s)", why)
            return "numpy"
        raise RuntimeError(f"golf-rans needs the compiled extension for its C++ coder: {why}. "
                           "Pass backend='numpy' (or 'auto') for the numpy coder, or use the "
                           "'brotli-11' codec.")
    return "cpp"


def _read_table(buf: bytes, pos: int, n: int, version: int) -> tuple[np.ndarray, int]:
    if pos + 2 * n > len(buf):
        raise ArtifactError("golf-rans: frequency tables end early")
    return read_table_bytes(buf[pos:pos + 2 * n], n, planes=version >= 2), pos + 2 * n


def _rest_bytes(items: list[TensorData]) -> bytes:
    """Scales and passthrough bytes, grouped by element size, each group shuffled by that size."""
    by_size: dict[int, list[bytes]] = {}
    for it in items:
        if it.spec.kind == "quantized":
            by_size.setdefault(2, []).append(np.ascontiguousarray(it.scales, dtype="<f2").tobytes())
        else:
            by_size.setdefault(it.spec.itemsize, []).append(np.ascontiguousarray(it.raw, dtype=np.uint8).tobytes())
    return b"".join(byte_shuffle(b"".join(by_size[k]), k) for k in sorted(by_size))


def _split_rest(rest: bytes, specs: list[TensorSpec]) -> list[bytes]:
    sizes: dict[int, list[int]] = {}
    for i, s in enumerate(specs):
        k = 2 if s.kind == "quantized" else s.itemsize
        sizes.setdefault(k, []).append(i)
    out: list[bytes] = [b""] * len(specs)
    pos = 0
    for k in sorted(sizes):
        lens = [2 * int(specs[i].shape[0]) if specs[i].kind == "quantized" else specs[i].numel * k for i in sizes[k]]
        total = sum(lens)
        if pos + total > len(rest):
            name = specs[sizes[k][0]].name
            raise ArtifactError(f"golf-rans: scales/passthrough data is short: tensor {name!r} and those after it "
                                "have no data in the payload")
        block = byte_unshuffle(rest[pos:pos + total], k)
        off = 0
        for i, n in zip(sizes[k], lens):
            out[i] = block[off:off + n]
            off += n
        pos += total
    if pos != len(rest):
        raise ArtifactError(f"golf-rans: {len(rest) - pos} bytes of scales/passthrough data more than the manifest needs")
    return out


class RansCodec(Codec):
    """Per-(role, bits) context-modelled rANS for codes; brotli/lzma for scales and passthrough.

    ``backend``: ``auto`` (the C++ coder, or the numpy coder when the extension is not built),
    ``cpp``, ``portable`` (decoding: the C decoder compiled at load, ``rans.portable``, numpy when
    no compiler works; encoding: as ``auto``), ``reference`` (pure Python, for tests and small states) or ``numpy`` (encoding and
    decoding vectorized over slices, ``rans_numpy``, no extension needed); all give the same
    bytes. ``candidates``: the context settings tried per group, ``(transpose, cs, rs, na, nb, ck, reorder[, rmode])`` (see
    ``rans_fit.DEFAULT_CANDIDATES``). ``prob_bits``: the largest table precision a group may get
    (each group takes the one among prob_bits−4 … prob_bits that minimizes coded + stored bytes).
    ``slice_rows``: rows per independent stream. ``row_deltas``: where a group's cheapest setting
    reorders rows (not transposed), also try coding each matrix's row differences in that order
    (``rans.rowdelta``, side-information version 4) and keep whichever is smaller. ``context_mixing``:
    for such a group also try the embedding coder (``rans.embcm``, a context-mixing arithmetic coder)
    in its own row orders (``CM_CHAIN_LAMS``) and binarizations (``CM_FLAGS``), and keep it where it is
    smaller (side-information version 6), for at most ``CM_MAX_CODES`` codes per artifact (groups in
    order: its decoding costs ~0.3 µs per code on one core against rANS's ~0.01). It is tried only where its
    compiled coder builds (a C compiler); any loader reads it (without a compiler through the
    pure-Python reference, slowly).
    """

    name = "golf-rans"
    REST_BROTLI_MAX = 1 << 18  # scales/passthrough bytes up to which brotli-11 is also tried
    CM_MAX_CODES = 1 << 22  # codes per artifact the embedding coder may take (the record's 8192 x 512 embedding)
    CM_CHAIN_LAMS = (0, 256)  # the embedding coder's row orders: 16·L1 + lam·Hamming chains (embcm.chain_order)
    CM_FLAGS = (0, 2)  # its binarizations tried (flag 1 is never the smaller on trained states; still read)

    def __init__(self, backend: str = "auto", candidates=DEFAULT_CANDIDATES, prob_bits: int = DEFAULT_PROB_BITS,
                 slice_rows: int = DEFAULT_SLICE_ROWS, row_deltas: bool = True, context_mixing: bool = True):
        if not isinstance(row_deltas, bool):
            raise ValueError(f"row_deltas: expected a bool, got {row_deltas!r}")
        if not isinstance(context_mixing, bool):
            raise ValueError(f"context_mixing: expected a bool, got {context_mixing!r}")
        if not isinstance(prob_bits, int) or not 8 <= prob_bits <= 15:
            raise ValueError(f"prob_bits: expected an int in 8..15, got {prob_bits!r}")
        if not isinstance(slice_rows, int) or slice_rows < 1:
            raise ValueError(f"slice_rows: expected a positive int, got {slice_rows!r}")
        if not candidates:
            raise ValueError("candidates: expected at least one context setting")
        self.slice_rows = slice_rows
        self.backend = backend
        self.candidates = tuple(normalize_candidate(c) for c in candidates)
        self.prob_bits = prob_bits
        self.row_deltas = row_deltas
        self.context_mixing = context_mixing
        self.last_report: dict[str, Any] = {}

    def check_ready(self) -> None:
        _resolve_backend(self.backend)

    @staticmethod
    def groups(specs: list[TensorSpec]) -> list[list[int]]:
        """Indices of the quantized tensors per (role, bits), in first-appearance order."""
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(specs):
            if s.kind == "quantized":
                groups.setdefault((role_of(s.name), s.bits), []).append(i)
        return list(groups.values())

    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        backend = _resolve_backend(self.backend)
        specs = [it.spec for it in items]
        header: dict[str, Any] = {"v": SIDE_VERSION, "groups": [], "streams": []}
        tables, streams = [], []
        self.last_report = {"groups": []}
        cm_left = self.CM_MAX_CODES
        for idx in self.groups(specs):
            mats = [np.ascontiguousarray(items[i].codes, dtype=np.int8) for i in idx]
            qm = qmax_of(int(specs[idx[0]].bits))
            model, perms, report = fit_group(mats, qm, candidates=self.candidates, prob_bits=self.prob_bits,
                                             slice_rows=self.slice_rows, backend=backend)
            self.last_report["groups"].append({"role": role_of(specs[idx[0]].name), **report})
            enc = self._encode(model, mats, backend, perms)
            # coded + stored bytes of the current choice, where an alternative (row deltas, embedding coder) can run
            size = _coded_bytes(model, enc) if perms is not None and not model.transpose else 0
            rowdelta = False
            if self.row_deltas and model.reorder and not model.transpose:
                alt = self._row_delta_alternative(mats, perms, qm, backend)
                alt_size = _coded_bytes(alt[0], alt[1])
                if alt_size < size:
                    model, enc, rowdelta, size = alt[0], alt[1], True, alt_size
                self.last_report["groups"][-1]["rowdelta"] = rowdelta
            cm = -1
            n_codes = sum(q.size for q in mats)
            if self.context_mixing and perms is not None and not model.transpose and n_codes <= cm_left \
                    and embcm.library() is not None:
                alt = _context_mixing_alternative(mats, qm, self.CM_CHAIN_LAMS, self.CM_FLAGS)
                if _coded_bytes(alt[0], alt[1]) < size:
                    model, enc, cm, perms, rowdelta = alt[0], alt[1], alt[2], alt[3], False
                    cm_left -= n_codes
                self.last_report["groups"][-1]["cm"] = cm
            self.last_report["groups"][-1]["stream_bytes"] = sum(len(s) for s in enc)
            header["groups"].append({"tensors": idx, **model.settings(), "rowdelta": rowdelta, "cm": cm})
            header["streams"].extend(len(s) for s in enc)
            streams.extend(enc)
            tables.append(table_bytes(model.freq))
            tables.extend(perms or [])  # row orders: laid out below, once the version is known
        rest_raw = _rest_bytes(items)
        cands = [("lzma", lzma_compress(rest_raw, preset=9))]
        if len(rest_raw) <= self.REST_BROTLI_MAX:  # brotli-11 is slow on big inputs; small ones it often wins
            cands.append(("brotli", brotli_compress(rest_raw, quality=11)))
        method, rest = min(cands, key=lambda c: (len(c[1]), c[0]))
        header["rest"] = {"method": method, "len": len(rest)}
        # the oldest side-information version that holds every group's settings (older loaders read it)
        header["v"] = next(v for v in sorted(KNOWN_VERSIONS) if v >= 2 and
                           all(g["rmode"] <= RMODE_MAX[v] and (v >= 4 or not g["rowdelta"]) and (v >= 6 or g["cm"] < 0)
                               for g in header["groups"]))
        for g in header["groups"]:
            if header["v"] < 5:  # (v5 is never written: its embedding coder is gone; v6 holds cm)
                del g["cm"]
            if header["v"] < 4:
                del g["rowdelta"]
        tables = [t if isinstance(t, bytes) else _row_order_bytes(t, header["v"]) for t in tables]
        hjson = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        side = brotli_compress(struct.pack("<I", len(hjson)) + hjson + b"".join(tables), quality=11)
        payload = struct.pack("<I", len(side)) + side + b"".join(streams) + rest
        self.last_report.update(side_bytes=len(side) + 4, stream_bytes=sum(len(s) for s in streams),
                                rest_bytes=len(rest), rest_method=method)
        return payload, {"prob_bits": self.prob_bits}

    @staticmethod
    def _encode(model: GroupModel, mats: list[np.ndarray], backend: str, perms) -> list[bytes]:
        return encode_group_np(model, mats, perms) if backend == "numpy" else encode_group(model, mats, backend, perms)

    def _row_delta_alternative(self, mats: list[np.ndarray], perms: list, qmax: int, backend: str) -> tuple:
        """(model, streams) of the group coded as row deltas in the row orders ``perms``; the model's own
        ``reorder`` is false (the orders are stored for the group, as for a reordering one)."""
        deltas = [to_row_deltas(np.ascontiguousarray(q[p]), qmax) for q, p in zip(mats, perms)]
        cands = tuple(c for c in self.candidates if not c[0] and not c[6]) + DELTA_EXTRA_CANDIDATES
        model, _, _ = fit_group(deltas, qmax, candidates=cands, prob_bits=self.prob_bits,
                                slice_rows=self.slice_rows, backend=backend)
        return model, self._encode(model, deltas, backend, None)

    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        try:
            backend = _resolve_backend(self.backend, decoding=True)
        except RuntimeError as exc:  # the file is fine, this machine cannot decode it: still one error type
            raise ArtifactError(f"golf-rans: {exc}") from None
        check_params(params, {"prob_bits": (8, 15)}, self.name)
        info, pos = read_side(payload, specs, self.groups(specs))  # every field checked before any allocation
        side, tpos = info.side, info.table_pos
        out: list[TensorData] = [TensorData(s) for s in specs]
        k = 0
        for g in info.groups:
            idx = g["tensors"]
            nsym = 2 * g["qmax"] + 1
            nctx = (len(g["thr_a"]) + 1) * (len(g["thr_b"]) + 1) * (2 * g["ck"] + 1)
            freq, tpos = _read_table(side, tpos, nctx * nsym, info.version)
            freq = freq.reshape(nctx, nsym)
            check_tables(freq, g["prob_bits"])
            model = GroupModel.from_settings(g, freq)
            shapes = [(int(specs[i].shape[0]), int(specs[i].shape[1])) for i in idx]
            streams = []
            for ns in slices_of_group(g, specs):
                for _ in range(ns):
                    streams.append(payload[pos:pos + info.streams[k]])
                    pos += info.streams[k]
                    k += 1
            perms = None
            if model.reorder or g["rowdelta"] or g["cm"] >= 0:
                perms = []
                for (r, c), i in zip(shapes, idx):
                    n = c if model.transpose else r
                    packed = info.version >= 6 and n <= permcode.MAX_ROWS
                    nbytes = permcode.packed_size(n) if packed else n * (2 if n <= 1 << 16 else 4)
                    if tpos + nbytes > len(side):
                        raise ArtifactError("golf-rans: row orders end early")
                    if packed:
                        p = permcode.unpack(side[tpos:tpos + nbytes], n, f"the row order of {specs[i].name!r}")
                    else:
                        p = np.frombuffer(side[tpos:tpos + nbytes], dtype="<u2" if nbytes == 2 * n else "<u4")
                        p = p.astype(np.int64)
                    check_permutation(p, n, repr(specs[i].name))
                    perms.append(p)
                    tpos += nbytes
            names = [specs[i].name for i in idx]
            if g["cm"] >= 0:
                for i, q in zip(idx, _decode_context_mixing(g, streams, shapes, perms, names)):
                    out[i].codes = q
                continue
            if backend in ("numpy", "portable"):
                dec = decode_slices_portable if backend == "portable" else decode_slices_numpy
                try:
                    oriented = dec(model, streams, [(c, r) if model.transpose else (r, c) for r, c in shapes])
                except ArtifactError as exc:
                    raise ArtifactError(f"golf-rans: corrupt code stream in the group of {names[0]!r}: {exc}") from exc
                mats = undo_order(model, oriented, names, None if g["rowdelta"] else perms)
            else:
                mats = decode_group(model, streams, shapes, names, backend, None if g["rowdelta"] else perms)
            if g["rowdelta"]:
                mats = [_undo_row_deltas(d, p, model.qmax) for d, p in zip(mats, perms)]
            for i, q in zip(idx, mats):
                out[i].codes = q
        if tpos != len(side):
            raise ArtifactError(f"golf-rans: {len(side) - tpos} bytes of side information left over")
        need = sum(2 * int(s.shape[0]) if s.kind == "quantized" else s.raw_nbytes for s in specs)
        rest = payload[pos:pos + info.rest_len]
        rest = (brotli_decompress if info.rest_method == "brotli" else lzma_decompress)(rest, "golf-rans rest", need)
        for it, chunk in zip(out, _split_rest(rest, specs)):
            if it.spec.kind == "quantized":
                it.scales = np.frombuffer(chunk, dtype="<f2").astype(np.float16)
            else:
                it.raw = np.frombuffer(chunk, dtype=np.uint8).copy()
        return out


def _row_order_bytes(p: np.ndarray, version: int) -> bytes:
    """A stored row order: ``permcode`` (its Lehmer rank) from side-information version 6 for at most
    ``permcode.MAX_ROWS`` rows, else uint16 per row (uint32 above 65,536 rows)."""
    if version >= 6 and p.size <= permcode.MAX_ROWS:
        return permcode.pack(p)
    return p.astype("<u2" if p.size <= 1 << 16 else "<u4").tobytes()


def _coded_bytes(model: GroupModel, streams: list[bytes]) -> int:
    """Streams plus the group's stored table (brotli-11 of its byte planes, as the side information holds it)."""
    return sum(len(x) for x in streams) + len(brotli_compress(table_bytes(model.freq), quality=11))


def _context_mixing_alternative(mats: list[np.ndarray], qmax: int, lams: tuple, flags: tuple) -> tuple:
    """(trivial model, streams, flag, row orders): the group's matrices coded by the embedding coder in
    the row orders (one ``embcm.chain_order`` per ``lams`` entry) and binarization (``flags``) that give
    the fewest bytes; the model only records ``slice_rows`` (one stream per matrix) and carries one
    all-zero table."""
    best = None
    for lam in lams:
        perms = [embcm.chain_order(q, lam) for q in mats]
        ordered = [np.ascontiguousarray(q[p]) for q, p in zip(mats, perms)]
        for flag in flags:
            streams = [embcm.encode(q, qmax, flag) for q in ordered]
            if best is None or sum(map(len, streams)) < sum(map(len, best[0])):
                best = (streams, flag, perms)
    model = GroupModel(qmax, False, 0, 0, 0, 0, [], [], 0, np.zeros((1, 2 * qmax + 1), dtype=np.int32), 8,
                       max(q.shape[0] for q in mats), False, 0)
    return model, best[0], best[1], best[2]


def _decode_context_mixing(g: dict, streams: list, shapes: list, perms: list, names: list) -> list[np.ndarray]:
    """The matrices of an embedding-coder group: one stream each, decoded in row order, then put back."""
    if len(streams) != len(shapes) or any(r > g["slice_rows"] for r, _ in shapes):
        raise ArtifactError(f"golf-rans: the embedding-coder group of {names[0]!r} must have one stream per matrix")
    backend = "c" if embcm.library() is not None else "reference"
    out = []
    for s, (r, c), p, name in zip(streams, shapes, perms, names):
        try:
            q = embcm.decode(s, r, c, g["qmax"], g["cm"], backend=backend)
        except (ArtifactError, ValueError) as exc:  # ValueError: a shape the coder cannot hold (e.g. 0 rows)
            raise ArtifactError(f"golf-rans: corrupt code stream of {name!r}: {exc}") from exc
        back = np.empty_like(q)
        back[p] = q
        out.append(back)
    return out


def _undo_row_deltas(d: np.ndarray, perm: np.ndarray, qmax: int) -> np.ndarray:
    """Decoded row deltas (rows in the order ``perm``) → the stored matrix (``out[perm[k]] = row k``)."""
    q = from_row_deltas(d, qmax)
    back = np.empty_like(q)
    back[perm] = q
    return back
