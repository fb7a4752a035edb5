"""golf-rans context paths added for trained weights: the residual row accumulator (rmode 1), the
per-group table precision, and reading version-1 side information."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import golf_fast
from golf_fast.artifact.codec_base import TensorData, TensorSpec
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.coder import decode_group, encode_group, features_ref, read_table_bytes, table_bytes
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import choose_precision, fit_group

BACKENDS = ["reference"] + (["cpp"] if golf_fast.HAS_EXT else [])


def tracking_rows(seed: int, r: int, c: int, qmax: int = 31) -> np.ndarray:
    """Rows that follow the previous row closely or loosely (the closeness varies by row), in a
    shuffled order: what an embedding's rare-token rows look like after training."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_t(5, c) * 4]
    for _ in range(r - 1):
        noise = rng.choice([0.3, 1.0, 4.0])
        rows.append(rows[-1] * 0.9 + rng.standard_normal(c) * noise)
    q = np.clip(np.rint(np.array(rows)), -qmax, qmax).astype(np.int8)
    return q[rng.permutation(r)]


def test_rmode1_row_accumulator_is_the_left_residual_when_rs_is_0():
    """rs = 0 keeps only the last term: rowacc(i, j) = |q(i, j−1) − q(i−1, j−1)| (0 above the
    slice's first row), rinit at j = 0; an independent closed form of the recursion."""
    q = tracking_rows(201, 11, 9)
    f = features_ref(q, 4, 31, 3, 0, 17, 5, rmode=1)
    above = np.zeros_like(q, dtype=np.int64)
    for r0 in range(0, 11, 4):
        r1 = min(r0 + 4, 11)
        above[r0 + 1:r1] = q[r0:r1 - 1]
    want = np.full(q.shape, 5, dtype=np.int64)
    want[:, 1:] = np.abs(q[:, :-1].astype(np.int64) - above[:, :-1])
    np.testing.assert_array_equal(f[1], want)
    f0 = features_ref(q, 4, 31, 3, 0, 17, 5, rmode=0)  # rmode 0: |q| of the left neighbour
    np.testing.assert_array_equal(f0[1][:, 1:], np.abs(q[:, :-1].astype(np.int64)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 7), (37, 13), (64, 1), (29, 40)])
def test_rmode1_round_trip_odd_shapes(backend, shape):
    mats = [tracking_rows(202, *shape), tracking_rows(203, shape[0] + 3, shape[1])]
    for cand in [(False, 4, 4, 2, 4, 8, True, 1), (True, 3, 2, 1, 3, 2, False, 1), (False, 2, 0, 1, 5, 0, False, 1)]:
        model, perms, _ = fit_group(mats, 31, candidates=[cand], slice_rows=9, backend=backend)
        streams = encode_group(model, mats, backend, perms)
        back = decode_group(model, streams, [m.shape for m in mats], ["a", "b"], backend, perms)
        for m, b in zip(mats, back):
            np.testing.assert_array_equal(m, b)


def test_rmode1_wins_on_rows_that_track_their_neighbour():
    mats = [tracking_rows(204, 300, 64)]
    backend = BACKENDS[-1]
    _, _, r0 = fit_group(mats, 31, candidates=[(False, 4, 4, 1, 4, 8, True, 0)], backend=backend)
    _, _, r1 = fit_group(mats, 31, candidates=[(False, 4, 4, 1, 4, 8, True, 1)], backend=backend)
    assert r1["entropy_bytes"] < 0.97 * r0["entropy_bytes"], (r1["entropy_bytes"], r0["entropy_bytes"])


def test_choose_precision_trades_table_bytes_for_coded_bytes():
    rng = np.random.default_rng(205)
    small = rng.integers(0, 40, (30, 63)) * (rng.random((30, 63)) < 0.4)  # few counts: tables dominate
    p_small, f_small, tried = choose_precision(small, 14)
    assert p_small < 14 and set(tried) == {10, 11, 12, 13, 14}
    assert np.all(f_small.sum(axis=1)[small.sum(axis=1) > 0] == 1 << p_small)
    big = (np.exp(-np.abs(np.arange(63) - 31) / 3.0) * 1e7).astype(np.int64)[None].repeat(4, 0)
    assert choose_precision(big, 14)[0] == 14  # many counts: precision pays
    assert np.array_equal(read_table_bytes(table_bytes(f_small), f_small.size).reshape(f_small.shape), f_small)


@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_group_round_trips(backend):
    mats = [tracking_rows(206, 13, 11)]
    model, perms, report = fit_group(mats, 31, candidates=[(False, 4, 4, 1, 4, 8, True, 1)], backend=backend)
    assert model.prob_bits < 14, report["precision_bytes"]
    streams = encode_group(model, mats, backend, perms)
    np.testing.assert_array_equal(decode_group(model, streams, [mats[0].shape], ["a"], backend, perms)[0], mats[0])


def test_version1_side_information_still_decodes():
    """A v1 payload (no rmode, tables interleaved) made from a v2 one by hand decodes the same."""
    mats = [tracking_rows(207, 24, 10), tracking_rows(208, 24, 10)]
    items = [TensorData(TensorSpec(f"blocks.{i}.w", "quantized", q.shape, "int8", 6, 1), codes=q,
                        scales=np.ones(q.shape[0], dtype=np.float16)) for i, q in enumerate(mats)]
    codec = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 4, 3, 2, 2, 3, True, 0)])
    payload, params = codec.encode(items)
    (side_len,) = struct.unpack_from("<I", payload)
    side = brotli_decompress(payload[4:4 + side_len], "test", 1 << 26)
    (hlen,) = struct.unpack_from("<I", side)
    header = json.loads(side[4:4 + hlen])
    g = header["groups"][0]
    n = (len(g["thr_a"]) + 1) * (len(g["thr_b"]) + 1) * (2 * g["ck"] + 1) * (2 * g["qmax"] + 1)
    tables = side[4 + hlen:]
    v1_table = read_table_bytes(tables[:2 * n], n).astype("<u2").tobytes()
    header["v"] = 1
    del g["rmode"]
    hj = json.dumps(header).encode()
    side1 = brotli_compress(struct.pack("<I", len(hj)) + hj + v1_table + tables[2 * n:], quality=5)
    out = codec.decode(struct.pack("<I", len(side1)) + side1 + payload[4 + side_len:], [it.spec for it in items],
                       params)
    for q, it in zip(mats, out):
        np.testing.assert_array_equal(q, it.codes)


NUMPY_MODELS = [(False, 4, 3, 1, 1, 0, False), (True, 4, 3, 4, 1, 2, False), (True, 4, 6, 2, 4, 8, True),
                (False, 4, 4, 2, 4, 8, True, 1), (True, 3, 2, 1, 3, 2, False, 1)]


@pytest.mark.parametrize("cand", NUMPY_MODELS)
def test_numpy_lockstep_decoder_matches(cand):
    """The numpy decoder (every slice one lane) gives the stored codes, on matrices of different
    shapes (different column counts once transposed) and slices with tails."""
    mats = [tracking_rows(209, 21, 13), tracking_rows(210, 21, 13), tracking_rows(211, 9, 13)]
    items = [TensorData(TensorSpec(f"blocks.{i}.w", "quantized", q.shape, "int8", 6, 1), codes=q,
                        scales=np.ones(q.shape[0], dtype=np.float16)) for i, q in enumerate(mats)]
    payload, params = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[cand], slice_rows=8).encode(items)
    out = RansCodec(backend="numpy", slice_rows=8).decode(payload, [it.spec for it in items], params)
    for q, it in zip(mats, out):
        np.testing.assert_array_equal(q, it.codes)


def test_numpy_decoder_rejects_corrupt_streams():
    mats = [tracking_rows(212, 30, 17), tracking_rows(213, 30, 17)]
    items = [TensorData(TensorSpec(f"blocks.{i}.w", "quantized", q.shape, "int8", 6, 1), codes=q,
                        scales=np.ones(q.shape[0], dtype=np.float16)) for i, q in enumerate(mats)]
    enc = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 4, 4, 2, 4, 8, True, 1)], slice_rows=8)
    payload, params = enc.encode(items)
    start = enc.last_report["side_bytes"]
    rng = np.random.default_rng(214)
    for pos in rng.integers(start, start + enc.last_report["stream_bytes"], 8):
        bad = bytearray(payload)
        bad[int(pos)] ^= 0x11
        with pytest.raises(ArtifactError, match="golf-rans"):
            RansCodec(backend="numpy").decode(bytes(bad), [it.spec for it in items], params)
