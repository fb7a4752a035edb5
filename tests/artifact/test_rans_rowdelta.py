"""golf-rans row-delta groups (side-information version 4, ``rans.rowdelta``): rows coded as their
difference from the row above in the group's similarity order. The transform is exact, the codec keeps
it only where it is smaller, every decoder reads it back bit for bit, and a malformed header is refused."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import golf_fast
from golf_fast.artifact.compressors import brotli_compress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import portable
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.rowdelta import from_row_deltas, to_row_deltas
from golf_fast.artifact.rans.side import check_group
from rans_items import code_items, near_copy_rows, side_header

BACKEND = "cpp" if golf_fast.HAS_EXT else "reference"
DECODERS = [BACKEND, "numpy"] + (["portable"] if portable.find_compiler() else [])


@pytest.mark.parametrize("qmax,shape", [(1, (5, 3)), (31, (17, 9)), (63, (1, 4)), (127, (6, 1))])
def test_row_deltas_are_exact_and_stay_in_range(qmax, shape):
    rng = np.random.default_rng(qmax)
    q = rng.integers(-qmax, qmax + 1, shape).astype(np.int8)
    q[0] = qmax  # extremes wrap
    d = to_row_deltas(q, qmax)
    assert d.dtype == np.int8 and int(np.abs(d.astype(np.int16)).max()) <= qmax
    np.testing.assert_array_equal(from_row_deltas(d, qmax), q)
    np.testing.assert_array_equal(d[0], q[0])


def test_row_deltas_check_their_inputs():
    with pytest.raises(ValueError, match="qmax"):
        to_row_deltas(np.zeros((2, 2), np.int8), 0)
    with pytest.raises(ValueError, match="q: expected a 2-D int8"):
        to_row_deltas(np.zeros((2, 2), np.int16), 3)
    with pytest.raises(ValueError, match="d: values outside"):
        from_row_deltas(np.full((2, 2), 9, np.int8), 3)


def _items(mats, bits=7):
    return code_items(mats, bits, name="tok_emb{i}.weight")


_header = side_header


def test_codec_codes_near_copy_rows_as_deltas_and_every_decoder_reads_them():
    mats = [near_copy_rows(1), near_copy_rows(2, r=40)]
    items = _items(mats)
    codec = RansCodec(backend=BACKEND, context_mixing=False, candidates=[(False, 4, 4, 4, 4, 8, True, 1)])
    payload, params = codec.encode(items)
    plain, _ = RansCodec(backend=BACKEND, context_mixing=False, candidates=[(False, 4, 4, 4, 4, 8, True, 1)], row_deltas=False).encode(items)
    header = _header(payload)[3]
    assert header["v"] == 4 and [g["rowdelta"] for g in header["groups"]] == [True, True]  # one group per role
    assert len(payload) < len(plain)
    assert _header(plain)[3]["v"] == 2  # without row deltas: the version the settings need, as before
    for dec in DECODERS:
        back = RansCodec(backend=dec).decode(payload, [it.spec for it in items], params)
        for q, it in zip(mats, back):
            np.testing.assert_array_equal(q, it.codes)


def test_codec_keeps_plain_coding_where_deltas_do_not_pay():
    rng = np.random.default_rng(5)
    mats = [rng.integers(-3, 4, (48, 16)).astype(np.int8)]  # independent rows: deltas only widen them
    payload, _ = RansCodec(backend=BACKEND, context_mixing=False, candidates=[(False, 4, 4, 4, 4, 8, True, 1)]).encode(_items(mats, 6))
    assert _header(payload)[3]["v"] == 2


def _group(**kw):
    g = {"tensors": [0], "qmax": 63, "transpose": False, "cs": 3, "rs": 4, "ainit": 1, "rinit": 1, "thr_a": [2],
         "thr_b": [3], "ck": 2, "prob_bits": 12, "slice_rows": 256, "reorder": False, "rmode": 1, "rowdelta": True}
    g.update(kw)
    return g


def test_side_information_checks_the_row_delta_field():
    assert check_group(_group(), 4, 63)["rowdelta"] is True
    assert check_group({k: v for k, v in _group().items() if k != "rowdelta"}, 3, 63)["rowdelta"] is False
    with pytest.raises(ArtifactError, match="group keys"):
        check_group(_group(), 3, 63)  # a v3 header cannot carry it
    with pytest.raises(ArtifactError, match="group keys"):
        check_group({k: v for k, v in _group().items() if k != "rowdelta"}, 4, 63)  # v4 groups always do
    with pytest.raises(ArtifactError, match="rowdelta"):
        check_group(_group(rowdelta=1), 4, 63)
    with pytest.raises(ArtifactError, match="reorder and transpose"):
        check_group(_group(reorder=True), 4, 63)


def test_a_row_delta_header_relabelled_v3_is_refused():
    items = _items([near_copy_rows(3)])
    codec = RansCodec(backend=BACKEND, context_mixing=False, candidates=[(False, 4, 4, 4, 4, 8, True, 1)])
    payload, params = codec.encode(items)
    side_len, side, hlen, header = _header(payload)
    assert header["v"] == 4
    header["v"] = 3
    hj = json.dumps(header).encode()
    side2 = brotli_compress(struct.pack("<I", len(hj)) + hj + side[4 + hlen:], quality=5)
    with pytest.raises(ArtifactError, match="group keys"):
        codec.decode(struct.pack("<I", len(side2)) + side2 + payload[4 + side_len:], [it.spec for it in items], params)
