"""The numpy golf-rans coder: byte-identical to the pure-Python reference and to the C++ coder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import requires_ext
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.coder import decode_group, encode_group, features_ref, undo_order
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import fit_group, quantize_freqs
from golf_fast.artifact.rans.numpy_coder import contexts_np, counts_np, decode_slices_numpy, encode_np, features_np
from rans_items import code_items


def decode_np(model, streams, dims):
    return decode_slices_numpy(model, streams, dims)


def numpy_decode_group(model, streams, shapes, perms):
    dims = [(c, r) if model.transpose else (r, c) for r, c in shapes]
    return undo_order(model, decode_slices_numpy(model, streams, dims), [str(i) for i in range(len(shapes))], perms)


def structured_codes(seed, r, c, qmax):
    rng = np.random.default_rng(seed)
    col = rng.random(c) * 2 + 0.2
    w = rng.standard_t(4, size=(r, c)) * col * (qmax / 8)
    return np.clip(np.rint(w), -qmax, qmax).astype(np.int8)


MODELS = [(False, 4, 3, 1, 1, 0, False), (False, 3, 2, 4, 3, 0, False), (True, 4, 3, 4, 1, 2, False),
          (False, 5, 1, 2, 2, 3, True), (True, 4, 6, 2, 4, 8, True), (False, 4, 3, 2, 3, 2, False, 1),
          (True, 4, 6, 2, 4, 8, True, 1)]


@pytest.mark.parametrize("cand", MODELS)
@pytest.mark.parametrize("qmax", [31, 127])
def test_numpy_matches_reference_bytes(cand, qmax):
    # 33 rows in slices of 8 (four full slices and a 1-row tail), a 1-row matrix, 20 rows
    mats = [structured_codes(101, 33, 13, qmax), structured_codes(102, 1, 13, qmax),
            structured_codes(103, 20, 13, qmax)]
    model, perms, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=8, backend="reference")
    model_np, perms_np, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=8, backend="numpy")
    np.testing.assert_array_equal(model.freq, model_np.freq)
    for m in mats:
        np.testing.assert_array_equal(features_np(m, 8, qmax, model.cs, model.rs, model.ainit, model.rinit),
                                      features_ref(m, 8, qmax, model.cs, model.rs, model.ainit, model.rinit))
    ref_streams = encode_group(model, mats, "reference", perms)
    assert encode_group(model, mats, "numpy", perms_np) == ref_streams
    back = numpy_decode_group(model, ref_streams, [m.shape for m in mats], perms)
    for m, b in zip(mats, back):
        np.testing.assert_array_equal(m, b)


@requires_ext
@pytest.mark.parametrize("cand", MODELS[2:])
def test_numpy_matches_cpp_on_a_larger_group(cand):
    """Several lanes of unequal length (slices of 64 over 150 and 64 rows) through both coders."""
    mats = [structured_codes(111, 150, 96, 31), structured_codes(112, 64, 96, 31)]
    model, perms, _ = fit_group(mats, 31, candidates=[cand], slice_rows=64, backend="cpp")
    cpp = encode_group(model, mats, "cpp", perms)
    assert encode_group(model, mats, "numpy", perms) == cpp
    for back in (numpy_decode_group(model, cpp, [m.shape for m in mats], perms),
                 decode_group(model, cpp, [m.shape for m in mats], ["a", "b"], "cpp", perms)):
        for m, b in zip(mats, back):
            np.testing.assert_array_equal(m, b)
    f_cpp = torch.ops.golf_fast._rans_features_cpp([torch.from_numpy(mats[0])], 64, 31, model.cs, model.rs,
                                                   model.ainit, model.rinit, model.rmode)[0].numpy()
    np.testing.assert_array_equal(features_np(mats[0], 64, 31, model.cs, model.rs, model.ainit, model.rinit,
                                              model.rmode), f_cpp)


def _items(mats, bits):
    return code_items(mats, bits, scale_step=0.01)


@requires_ext
def test_codec_payload_identical_numpy_and_cpp():
    mats = [structured_codes(121, 300, 40, 31), structured_codes(122, 300, 40, 31)]
    items = _items(mats, 6)
    p_cpp, params = RansCodec(backend="cpp").encode(items)
    p_np, params_np = RansCodec(backend="numpy").encode(items)
    assert p_np == p_cpp and params == params_np
    back = RansCodec(backend="numpy").decode(p_cpp, [it.spec for it in items], params)
    for it, b in zip(items, back):
        np.testing.assert_array_equal(it.codes, b.codes)
        np.testing.assert_array_equal(it.scales, b.scales)


def test_corrupt_stream_is_an_error():
    mats = [structured_codes(131, 40, 24, 31), structured_codes(132, 40, 24, 31)]
    codec = RansCodec(backend="numpy")
    items = _items(mats, 6)
    payload, params = codec.encode(items)
    start = codec.last_report["side_bytes"]
    end = start + codec.last_report["stream_bytes"]
    rng = np.random.default_rng(133)
    specs = [it.spec for it in items]
    for pos in rng.integers(start, end, 10):
        bad = bytearray(payload)
        bad[int(pos)] ^= 0x10
        with pytest.raises(ArtifactError, match="golf-rans"):
            codec.decode(bytes(bad), specs, params)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="q: expected a 2-D int8"):
        features_np(np.zeros((3, 3), dtype=np.int16), 8, 31, 4, 3, 1, 1)
    model, _, _ = fit_group([structured_codes(141, 9, 5, 31)], 31, candidates=[MODELS[0]], backend="numpy")
    with pytest.raises(ArtifactError, match="expected 2 slice streams"):
        decode_np(model, [b"\0\0\1\0"], [(300, 5)])
    assert contexts_np(model, structured_codes(142, 9, 5, 31)).shape == (9, 5)
    with pytest.raises(ValueError, match="mats"):
        encode_np(model, [np.zeros((2, 2), dtype=np.float32)])


def test_residual_row_mode_round_trips_and_matches_a_python_loop():
    """rmode 1 (row accumulator over |q − above|, the format being introduced on the i16 branch):
    features against a direct Python loop, and encode → decode through the numpy coder."""
    mats = [structured_codes(151, 21, 9, 31), structured_codes(152, 5, 9, 31)]
    q = mats[0]
    f = features_np(q, 8, 31, 4, 3, 10, 12, rmode=1)
    ref = np.zeros(q.shape, dtype=np.int64)
    for r0 in range(0, q.shape[0], 8):
        for i in range(r0, min(r0 + 8, q.shape[0])):
            row = 12
            for j in range(q.shape[1]):
                ref[i, j] = row
                above = int(q[i - 1, j]) if i > r0 else 0
                row += abs(int(q[i, j]) - above) - (row >> 3)
    np.testing.assert_array_equal(f[1], ref)
    assert not np.array_equal(f[1], features_np(q, 8, 31, 4, 3, 10, 12)[1])  # the mode changes the context
    model, _, _ = fit_group(mats, 31, candidates=[(False, 4, 3, 2, 3, 1, False)], slice_rows=8, backend="numpy")
    model.rmode = 1
    model.freq = np.stack([quantize_freqs(c, model.prob_bits) for c in counts_np(model, mats)])
    streams = encode_np(model, mats)
    for m, b in zip(mats, decode_np(model, streams, [m.shape for m in mats])):
        np.testing.assert_array_equal(m, b)
    with pytest.raises(ValueError, match="rmode"):
        features_np(q, 8, 31, 4, 3, 10, 12, rmode=4)


def test_sixteen_bit_tables_and_a_single_symbol_context():
    """prob_bits 16 (a context holding one symbol has frequency 2^16): the packed table keeps it."""
    q = np.zeros((3, 4), dtype=np.int8)
    q[2, 3] = 1
    model, _, _ = fit_group([q], 31, candidates=[MODELS[0]], prob_bits=15, backend="numpy")
    model.prob_bits = 16
    model.freq = np.stack([quantize_freqs(c, 16) for c in counts_np(model, [q])])
    streams = encode_np(model, [q])
    np.testing.assert_array_equal(decode_np(model, streams, [q.shape])[0], q)
