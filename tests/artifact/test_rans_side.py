"""golf-rans side information from a hostile file: every field's type and range is checked, and a
bad one is an ArtifactError naming the problem (never a crash, a hang or a huge allocation)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import golf_fast
from golf_fast.artifact.codec_base import TensorData, TensorSpec
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.side import MAX_SIDE_BYTES

BACKEND = "cpp" if golf_fast.HAS_EXT else "reference"


def _codes(seed: int, r: int, c: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_t(5, size=(r, c)) * 3
    base[1::2] = base[0::2][: r // 2] + rng.integers(-1, 2, (r // 2, c))  # near-duplicate rows
    return np.clip(np.rint(base), -31, 31).astype(np.int8)


@pytest.fixture(scope="module")
def encoded():
    mats = [_codes(101, 30, 21), _codes(102, 30, 21)]
    items = [TensorData(TensorSpec(f"blocks.{i}.w", "quantized", q.shape, "int8", 6, 1), codes=q,
                        scales=np.ones(q.shape[0], dtype=np.float16)) for i, q in enumerate(mats)]
    # a reordering, rmode-1 model, so row orders and every setting appear in the side information
    codec = RansCodec(backend=BACKEND, context_mixing=False, candidates=[(False, 4, 3, 2, 2, 3, True, 1)], slice_rows=8)
    payload, params = codec.encode(items)
    return codec, payload, params, [it.spec for it in items], mats


def _split(payload: bytes):
    (side_len,) = struct.unpack_from("<I", payload)
    side = brotli_decompress(payload[4:4 + side_len], "test", 1 << 26)
    (hlen,) = struct.unpack_from("<I", side)
    return json.loads(side[4:4 + hlen]), side[4 + hlen:], payload[4 + side_len:]


def _join(header, tables: bytes, body: bytes) -> bytes:
    hj = json.dumps(header).encode()
    side = brotli_compress(struct.pack("<I", len(hj)) + hj + tables, quality=5)
    return struct.pack("<I", len(side)) + side + body


def test_untouched_payload_round_trips(encoded):
    codec, payload, params, specs, mats = encoded
    header, tables, body = _split(payload)
    assert header["groups"][0]["reorder"] and header["groups"][0]["rmode"] == 1
    out = codec.decode(_join(header, tables, body), specs, params)  # re-packing alone changes nothing
    for q, it in zip(mats, out):
        np.testing.assert_array_equal(q, it.codes)


def _set(key, value):
    def f(h):
        h["groups"][0][key] = value
    return f


def _drop(key):
    def f(h):
        del h["groups"][0][key]
    return f


MUTATIONS = {
    "version": (lambda h: h.update(v=99), "version"),
    "version-type": (lambda h: h.update(v="2"), "version"),
    "groups-type": (lambda h: h.update(groups={"a": 1}), "groups"),
    "extra-header-key": (lambda h: h.update(x=1), "header keys"),
    "missing-key": (_drop("cs"), "group keys"),
    "extra-key": (_set("zzz", 1), "group keys"),
    "qmax": (_set("qmax", 63), "qmax"),
    "cs-range": (_set("cs", 60), "'cs'"),
    "rs-negative": (_set("rs", -1), "'rs'"),
    "rs-float": (_set("rs", 3.0), "'rs'"),
    "ck-range": (_set("ck", 1000), "'ck'"),
    "prob-bits": (_set("prob_bits", 16), "prob_bits"),
    "slice-rows-zero": (_set("slice_rows", 0), "slice_rows"),
    "rmode": (_set("rmode", 2), "rmode"),
    "ainit-huge": (_set("ainit", 1 << 40), "ainit"),
    "transpose-int": (_set("transpose", 1), "transpose"),
    "thr-decreasing": (_set("thr_a", [9, 3]), "thr_a"),
    "thr-huge": (_set("thr_b", [1 << 30]), "thr_b"),
    "thr-float": (_set("thr_b", [1.5]), "thr_b"),
    "thr-long": (_set("thr_a", list(range(1, 200))), "thr_a"),
    "too-many-contexts": (lambda h: h["groups"][0].update(thr_a=list(range(1, 60)), thr_b=list(range(1, 60)),
                                                           ck=20), "contexts"),
    "tensor-index": (lambda h: h["groups"][0].update(tensors=[0, 99]), "tensor|groups"),
    "tensor-type": (lambda h: h["groups"][0].update(tensors="01"), "tensors"),
    "stream-count": (lambda h: h["streams"].append(4), "code streams"),
    "stream-negative": (lambda h: h["streams"].__setitem__(0, -5), "streams"),
    "rest-method": (lambda h: h["rest"].update(method="zip"), "rest"),
    "rest-len": (lambda h: h["rest"].update(len=-1), "rest"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_hostile_header_field_is_rejected(encoded, name):
    codec, payload, params, specs, _ = encoded
    header, tables, body = _split(payload)
    mutate, match = MUTATIONS[name]
    mutate(header)
    with pytest.raises(ArtifactError, match=match):
        codec.decode(_join(header, tables, body), specs, params)


def test_hostile_tables_and_row_orders_are_rejected(encoded):
    codec, payload, params, specs, _ = encoded
    header, tables, body = _split(payload)
    g = header["groups"][0]
    n_table = (len(g["thr_a"]) + 1) * (len(g["thr_b"]) + 1) * (2 * g["ck"] + 1) * (2 * g["qmax"] + 1) * 2
    rng = np.random.default_rng(103)
    nonzero = [i for i in range(0, n_table, 2) if tables[i] or tables[i + 1]]
    for pos in rng.choice(nonzero, 8, replace=False):  # a frequency no longer sums to 2^P
        bad = bytearray(tables)
        bad[int(pos)] ^= 0x01
        with pytest.raises(ArtifactError, match="sum"):
            codec.decode(_join(header, bytes(bad), body), specs, params)
    bad = bytearray(tables)
    bad[n_table:n_table + 2] = bad[n_table + 2:n_table + 4]  # a row order that repeats a row
    with pytest.raises(ArtifactError, match="permutation"):
        codec.decode(_join(header, bytes(bad), body), specs, params)
    bad = bytearray(tables)
    bad[n_table:n_table + 2] = (60000).to_bytes(2, "little")  # a row index past the matrix
    with pytest.raises(ArtifactError, match="permutation"):
        codec.decode(_join(header, bytes(bad), body), specs, params)
    with pytest.raises(ArtifactError, match="end early|left over"):
        codec.decode(_join(header, tables[:-3], body), specs, params)
    with pytest.raises(ArtifactError, match="left over"):
        codec.decode(_join(header, tables + b"\0\0", body), specs, params)


def test_corrupt_streams_are_errors_for_the_rmode_model(encoded):
    codec, payload, params, specs, _ = encoded
    header, tables, body = _split(payload)
    n_streams = sum(header["streams"])
    rng = np.random.default_rng(104)
    for pos in rng.integers(0, n_streams, 10):
        bad = bytearray(body)
        bad[int(pos)] ^= 0x24
        with pytest.raises(ArtifactError, match="golf-rans"):
            codec.decode(_join(header, tables, bytes(bad)), specs, params)


def test_side_information_bomb_is_refused(encoded):
    """A few hundred bytes of brotli that would expand past the side-information cap."""
    codec, payload, params, specs, _ = encoded
    header, tables, body = _split(payload)
    hj = json.dumps(header).encode()
    bomb = brotli_compress(struct.pack("<I", len(hj)) + hj + tables + bytes(MAX_SIDE_BYTES), quality=5)
    assert len(bomb) < 1 << 16
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        codec.decode(struct.pack("<I", len(bomb)) + bomb + body, specs, params)
    with pytest.raises(ArtifactError, match="truncated|corrupt"):
        side = _join(header, tables, body)
        (n,) = struct.unpack_from("<I", side)
        codec.decode(struct.pack("<I", n - 5) + side[4:4 + n - 5] + side[4 + n:], specs, params)
