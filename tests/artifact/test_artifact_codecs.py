"""Codecs: byte shuffle, frequency tables, the rANS coder (C++ against the Python reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import golf_fast
from conftest import requires_ext
from golf_fast.artifact.codecs import get_codec
from golf_fast.artifact.compressors import byte_shuffle, byte_unshuffle
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans.coder import (
    decode_group,
    decode_ref,
    encode_group,
    encode_ref,
    features_ref,
    role_of,
)
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import fit_group, quantize_freqs, similarity_chain
from rans_items import code_items


def test_role_of():
    assert role_of("blocks.3.mlp.fc.weight") == "blocks.*.mlp.fc.weight"
    assert role_of("blocks.10.attn.c_q.weight") == "blocks.*.attn.c_q.weight"
    assert role_of("tok_emb.weight") == "tok_emb.weight"
    assert role_of("layer2.w") == "layer2.w"


@pytest.mark.parametrize("n,stride", [(0, 2), (1, 2), (7, 2), (10, 4), (13, 3)])
def test_byte_shuffle_inverse(n, stride):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    sh = byte_shuffle(data, stride)
    assert len(sh) == n and byte_unshuffle(sh, stride) == data
    if n >= 4 and stride == 2:
        assert sh[: (n + 1) // 2] == data[0::2]


def test_quantize_freqs_properties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        s = int(rng.integers(2, 256))
        counts = rng.integers(0, 1000, s) * (rng.random(s) < 0.7)
        counts[int(rng.integers(0, s))] += 1
        for bits in (8, 12, 14):
            f = quantize_freqs(counts, bits)
            assert f.sum() == 1 << bits
            assert np.all((f > 0) == (counts > 0))
            # close to the ideal code length: the loss of the rounding is small
            p = counts / counts.sum()
            nz = counts > 0
            loss = float((counts[nz] * np.log2(p[nz] / (f[nz] / (1 << bits)))).sum()) / counts.sum()
            assert loss < 0.02 if bits >= 12 else loss < 0.2
    assert not quantize_freqs(np.zeros(5, dtype=np.int64), 14).any()


def structured_codes(seed: int, r: int, c: int, qmax: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    col = rng.random(c) * 2 + 0.2
    w = rng.standard_t(4, size=(r, c)) * col * (qmax / 8)
    return np.clip(np.rint(w), -qmax, qmax).astype(np.int8)


MODELS = [(False, 4, 3, 1, 1, 0, False), (False, 3, 2, 4, 3, 0, False), (True, 4, 3, 4, 1, 2, False),
          (False, 5, 1, 2, 2, 3, True), (True, 4, 6, 2, 4, 8, True),
          # rmode 1: the row accumulator follows |q - above| (with and without reordering, transposed)
          (False, 4, 4, 2, 4, 8, True, 1), (True, 3, 2, 1, 3, 2, False, 1), (False, 4, 0, 1, 2, 0, False, 1)]


@pytest.mark.parametrize("cand", MODELS)
def test_reference_round_trip(cand):
    mats = [structured_codes(1, 23, 17, 31), structured_codes(2, 9, 17, 31)]
    model, perms, report = fit_group(mats, 31, candidates=[cand], slice_rows=7, backend="reference")
    assert report["chosen"]["transpose"] == cand[0] and report["chosen"]["reorder"] == cand[6]
    assert report["chosen"]["rmode"] == (cand[7] if len(cand) > 7 else 0)
    assert (perms is not None) == cand[6]
    streams = encode_group(model, mats, "reference", perms)
    back = decode_group(model, streams, [m.shape for m in mats], ["a", "b"], "reference", perms)
    for m, b in zip(mats, back):
        np.testing.assert_array_equal(m, b)


@requires_ext
@pytest.mark.parametrize("cand", MODELS)
@pytest.mark.parametrize("qmax", [31, 63, 127])
def test_cpp_matches_reference_bytes(cand, qmax):
    # 33 rows in slices of 8: one 4-lane decode item (rows 0-31) plus a 1-row tail
    mats = [structured_codes(3, 33, 13, qmax), structured_codes(4, 1, 13, qmax), structured_codes(5, 20, 13, qmax)]
    model, perms, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=8, backend="reference")
    model_cpp, perms_cpp, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=8, backend="cpp")
    np.testing.assert_array_equal(model.freq, model_cpp.freq)
    for m in mats:
        ref = features_ref(m, 8, qmax, model.cs, model.rs, model.ainit, model.rinit, model.rmode)
        cpp = torch.ops.golf_fast._rans_features_cpp([torch.from_numpy(m)], 8, qmax, model.cs, model.rs,
                                                     model.ainit, model.rinit, model.rmode)[0].numpy()
        np.testing.assert_array_equal(ref, cpp)
    ref_streams = encode_group(model, mats, "reference", perms)
    assert encode_group(model, mats, "cpp", perms_cpp) == ref_streams
    shapes = [m.shape for m in mats]
    for backend in ("cpp", "reference"):
        back = decode_group(model, ref_streams, shapes, ["x", "y", "z"], backend, perms)
        for m, b in zip(mats, back):
            np.testing.assert_array_equal(m, b)


def test_single_symbol_and_one_row():
    q = np.zeros((1, 5), dtype=np.int8)
    model, _, _ = fit_group([q], 31, candidates=[(False, 4, 3, 1, 1, 0, False)], backend="reference")
    assert model.freq.max() == 1 << model.prob_bits
    (stream,) = encode_ref(model, q)
    np.testing.assert_array_equal(decode_ref(model, [stream], 1, 5), q)


_items = code_items


def test_corrupt_stream_is_an_error_not_a_crash():
    mats = [structured_codes(7, 40, 24, 31), structured_codes(8, 40, 24, 31)]
    codec = RansCodec(backend="cpp" if golf_fast.HAS_EXT else "reference")
    items = _items(mats, 6)
    payload, params = codec.encode(items)
    start = codec.last_report["side_bytes"]
    end = start + codec.last_report["stream_bytes"]
    rng = np.random.default_rng(1)
    specs = [it.spec for it in items]
    for pos in rng.integers(start, end, 12):
        bad = bytearray(payload)
        bad[int(pos)] ^= 0x10
        with pytest.raises(ArtifactError, match="golf-rans"):
            codec.decode(bytes(bad), specs, params)
    with pytest.raises(ArtifactError):
        codec.decode(payload[:-3], specs, params)


@requires_ext
def test_iid_codes_within_0p3_percent_of_entropy():
    """On i.i.d. codes the coded size (tables and stream headers included) is ≤ 1.003 × the
    order-0 entropy: what is left of brotli-11's ~1% overhead."""
    rng = np.random.default_rng(11)
    w = rng.standard_t(4, size=(1024, 512)) / np.sqrt(2)
    q = np.clip(np.rint(w * 31 / 12.85 * 1.0), -31, 31).astype(np.int8)
    counts = np.bincount(q.ravel().astype(np.int64) + 31)
    p = counts[counts > 0] / q.size
    entropy_bytes = float(-(counts[counts > 0] * np.log2(p)).sum()) / 8
    codec = RansCodec()
    codec.encode(_items([q], 6))
    coded = codec.last_report["side_bytes"] + codec.last_report["stream_bytes"]
    assert coded <= 1.003 * entropy_bytes, (coded, entropy_bytes)
    assert coded >= 0.999 * entropy_bytes  # nothing beats the entropy on i.i.d. data


def test_similarity_chain_puts_near_duplicates_together():
    rng = np.random.default_rng(3)
    base = rng.integers(-20, 21, (6, 40))
    rows = np.concatenate([base, base + rng.integers(-1, 2, (6, 40))])  # row i+6 ≈ row i
    order = similarity_chain(np.clip(rows, -31, 31).astype(np.int8))
    assert sorted(order.tolist()) == list(range(12)) and order[0] == 0
    if golf_fast.HAS_EXT:
        big = structured_codes(4, 70, 33, 63)
        big[40:50] = big[10:20]  # exact duplicates: ties
        np.testing.assert_array_equal(similarity_chain(big, "cpp"), similarity_chain(big, "reference"))
    pos = {int(r): k for k, r in enumerate(order)}
    assert sum(abs(pos[i] - pos[i + 6]) == 1 for i in range(6)) >= 5


def test_codec_names():
    for name in ("golf-rans", "brotli-11", "lzma-9"):
        assert get_codec(name).name == name
    with pytest.raises(ValueError, match="codec"):
        get_codec("gzip")
    with pytest.raises(ValueError, match="backend"):
        RansCodec(backend="gpu").encode(_items([structured_codes(1, 3, 3, 31)], 6))
    with pytest.raises(ValueError, match="candidates"):
        RansCodec(candidates=[(False, 4, 3)])
