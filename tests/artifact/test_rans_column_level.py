"""golf-rans ``rmode`` bit 1: the column accumulator follows the signed code ``q + qmax`` (the
column's running level, e.g. the common drift of a trained embedding's rarely-seen rows) instead
of ``|q|``. Every backend (pure-Python reference, numpy, C++, portable C) must give the same
features and the same bytes; side information version 3 carries it, version 2 rejects it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

import golf_fast
from golf_fast.artifact.codec_base import TensorData, TensorSpec
from golf_fast.artifact.compressors import brotli_compress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import portable
from golf_fast.artifact.rans.coder import decode_group, decode_ref, encode_group, encode_ref, features_ref
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import fit_group, normalize_candidate
from golf_fast.artifact.rans.numpy_coder import decode_slices_numpy, encode_np, features_np
from rans_items import code_items, side_header

BACKENDS = ["reference"] + (["cpp"] if golf_fast.HAS_EXT else [])
needs_cc = pytest.mark.skipif(portable.find_compiler() is None, reason="needs a C compiler (cc/gcc/clang)")
CANDS = [(False, 3, 4, 4, 4, 8, True, 3), (False, 2, 3, 6, 1, 2, False, 2), (True, 0, 2, 3, 2, 1, True, 2),
         (False, 4, 4, 5, 3, 3, True, 3)]


def drift_rows(seed: int, r: int, c: int, qmax: int = 31) -> np.ndarray:
    """Rows = a common column level times a per-row gain plus small noise, shuffled with a few
    unrelated rows: what a tied embedding's unseen-token rows look like after training."""
    rng = np.random.default_rng(seed)
    level = rng.standard_t(5, c) * qmax / 6
    gain = rng.uniform(0.5, 1.5, r)[:, None]
    w = level[None] * gain + rng.standard_normal((r, c)) * rng.choice([0.3, 1.0, 3.0], (r, 1))
    odd = rng.random(r) < 0.2
    w[odd] = rng.standard_t(4, (int(odd.sum()), c)) * qmax / 4
    return np.clip(np.rint(w), -qmax, qmax).astype(np.int8)


def test_column_accumulator_is_the_signed_code_above_when_cs_is_0():
    """cs = 0 keeps only the last term: colacc(i, j) = q(i−1, j) + qmax within a slice, ainit on
    a slice's first row; an independent closed form of the recursion."""
    q = drift_rows(301, 11, 9)
    for rmode in (2, 3):
        f = features_ref(q, 4, 31, 0, 2, 17, 5, rmode=rmode)
        want = np.full(q.shape, 17, dtype=np.int64)
        for r0 in range(0, 11, 4):
            r1 = min(r0 + 4, 11)
            want[r0 + 1:r1] = q[r0:r1 - 1].astype(np.int64) + 31
        np.testing.assert_array_equal(f[0], want)
    f0 = features_ref(q, 4, 31, 0, 2, 17, 5, rmode=0)  # bit 1 clear: |q| of the code above
    np.testing.assert_array_equal(f0[0][1:4], np.abs(q[0:3].astype(np.int64)))


@pytest.mark.parametrize("rmode", [2, 3])
def test_features_agree_across_backends(rmode):
    q = drift_rows(302, 37, 23, qmax=63)
    ref = features_ref(q, 8, 63, 3, 4, 300, 40, rmode)
    np.testing.assert_array_equal(features_np(q, 8, 63, 3, 4, 300, 40, rmode), ref)
    if golf_fast.HAS_EXT:
        import torch

        got = torch.ops.golf_fast._rans_features_cpp([torch.from_numpy(q)], 8, 63, 3, 4, 300, 40, rmode)[0]
        np.testing.assert_array_equal(got.numpy(), ref)


def degenerate_mats(kind: str, qmax: int) -> list:
    rng = np.random.default_rng(303)
    if kind == "identical rows":
        row = np.clip(rng.integers(-qmax, qmax + 1, 17), -qmax, qmax).astype(np.int8)
        return [np.repeat(row[None], 40, axis=0)]
    if kind == "one row":
        return [drift_rows(304, 1, 33, qmax)]
    if kind == "one column":
        return [drift_rows(305, 50, 1, qmax)]
    if kind == "extremes":  # every code at ±qmax: the accumulator's largest values
        return [np.where(rng.random((30, 12)) < 0.5, -qmax, qmax).astype(np.int8)]
    if kind == "all zero":
        return [np.zeros((19, 7), dtype=np.int8)]
    return [drift_rows(306, 45, 19, qmax), drift_rows(307, 23, 19, qmax)]


KINDS = ["mixed", "identical rows", "one row", "one column", "extremes", "all zero"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cand", CANDS[:3])
def test_round_trip_including_degenerate_groups(backend, kind, cand):
    qmax = 127 if kind == "extremes" else 31
    mats = degenerate_mats(kind, qmax)
    model, perms, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=9, backend=backend)
    assert model.rmode == cand[7]
    streams = encode_group(model, mats, backend, perms)
    back = decode_group(model, streams, [m.shape for m in mats], ["a"] * len(mats), backend, perms)
    for m, b in zip(mats, back):
        np.testing.assert_array_equal(m, b)


@needs_cc
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cand", CANDS)
def test_every_backend_gives_the_same_bytes_and_codes(kind, cand):
    """Reference, numpy and C++ encoders write the same streams; reference, numpy, C++ and the
    portable C decoder read back the codes."""
    qmax = 127 if kind == "extremes" else 31
    mats = degenerate_mats(kind, qmax)
    model, perms, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=8, backend=BACKENDS[-1])
    oriented = [np.ascontiguousarray(q.T) if model.transpose else q for q in mats]
    if model.reorder:
        oriented = [np.ascontiguousarray(q[p]) for q, p in zip(oriented, perms)]
    ref = [s for q in oriented for s in encode_ref(model, q)]
    assert [s for q in oriented for s in encode_np(model, [q])] == ref
    if golf_fast.HAS_EXT:
        assert encode_group(model, mats, "cpp", perms) == ref
    dims = [q.shape for q in oriented]
    for got in (portable.decode_slices_portable(model, ref, dims), decode_slices_numpy(model, ref, dims)):
        for g, q in zip(got, oriented):
            np.testing.assert_array_equal(g, q)
    k = 0
    for q in oriented:
        n = -(-q.shape[0] // model.slice_rows)
        np.testing.assert_array_equal(decode_ref(model, ref[k:k + n], *q.shape), q)
        k += n


def test_column_level_wins_on_drifting_rows():
    mats = [drift_rows(308, 400, 64)]
    backend = BACKENDS[-1]
    # the column accumulator as the only column context: its magnitude (rmode 0) or its signed level (2)
    _, _, r0 = fit_group(mats, 31, candidates=[(False, 3, 4, 8, 1, 0, False, 0)], backend=backend)
    _, _, r2 = fit_group(mats, 31, candidates=[(False, 3, 4, 8, 1, 0, False, 2)], backend=backend)
    assert r2["entropy_bytes"] < 0.96 * r0["entropy_bytes"], (r2["entropy_bytes"], r0["entropy_bytes"])


def test_candidates_accept_rmode_0_to_3_only():
    assert normalize_candidate((False, 3, 4, 8, 4, 8, True, 3))[7] == 3
    with pytest.raises(ValueError, match="rmode"):
        normalize_candidate((False, 3, 4, 8, 4, 8, True, 4))
    with pytest.raises(ValueError, match="rmode"):
        features_np(np.zeros((2, 2), np.int8), 2, 3, 1, 1, 0, 0, rmode=4)


def _items(mats):
    return code_items(mats, 6)


_header = side_header


@pytest.mark.parametrize("rmode,version", [(0, 2), (1, 2), (2, 3), (3, 3)])
def test_codec_writes_the_oldest_version_that_holds_the_settings(rmode, version):
    mats = [drift_rows(309, 24, 10), drift_rows(310, 24, 10)]
    items = _items(mats)
    codec = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 3, 3, 2, 2, 3, True, rmode)])
    payload, params = codec.encode(items)
    assert _header(payload)[3]["v"] == version
    for back in (codec, RansCodec(backend="numpy"), RansCodec(backend="portable")):
        for q, it in zip(mats, back.decode(payload, [it.spec for it in items], params)):
            np.testing.assert_array_equal(q, it.codes)


def test_version2_header_with_the_column_level_is_rejected():
    """A v2 loader's rule (rmode 0..1) holds for v2 payloads: a v3 setting relabelled v2 is corrupt."""
    mats = [drift_rows(311, 24, 10), drift_rows(312, 24, 10)]
    items = _items(mats)
    codec = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 3, 3, 2, 2, 3, True, 2)])
    payload, params = codec.encode(items)
    side_len, side, hlen, header = _header(payload)
    header["v"] = 2
    hj = json.dumps(header).encode()
    side2 = brotli_compress(struct.pack("<I", len(hj)) + hj + side[4 + hlen:], quality=5)
    with pytest.raises(ArtifactError, match="rmode"):
        codec.decode(struct.pack("<I", len(side2)) + side2 + payload[4 + side_len:], [it.spec for it in items], params)


def test_empty_matrices_are_refused_by_name():
    with pytest.raises(ValueError, match=r"mats\[0\]: expected a non-empty"):
        fit_group([np.zeros((0, 5), dtype=np.int8)], 31, candidates=[CANDS[0]], backend=BACKENDS[-1])
    with pytest.raises(ValueError, match="mats: expected at least one"):
        fit_group([], 31, candidates=[CANDS[0]], backend=BACKENDS[-1])
    with pytest.raises(ValueError, match=r"mats\[1\]: codes outside"):
        fit_group([np.zeros((3, 5), np.int8), np.full((3, 5), 40, np.int8)], 31, candidates=[CANDS[0]])


def test_a_state_without_quantized_tensors_round_trips():
    """No group at all (every tensor passthrough): streams empty, the rest carries everything."""
    raw = np.arange(40, dtype=np.uint8)
    items = [TensorData(TensorSpec("norm.w", "passthrough", (20,), "float16", None, 2), raw=raw)]
    codec = RansCodec(backend=BACKENDS[-1])
    payload, params = codec.encode(items)
    assert _header(payload)[3]["groups"] == [] and codec.last_report["stream_bytes"] == 0
    out = codec.decode(payload, [it.spec for it in items], params)
    np.testing.assert_array_equal(out[0].raw, raw)


def test_a_clamp_wider_than_qmax_is_cut_to_qmax():
    """A candidate's ck past qmax (ck 8 on a 4-bit group, qmax 7) is fitted as ck = qmax: the
    loader refuses ck > qmax, so the encoder must never write one."""
    mats = [drift_rows(313, 30, 12, qmax=7), drift_rows(314, 30, 12, qmax=7)]
    items = [TensorData(TensorSpec(f"blocks.{i}.w", "quantized", q.shape, "int8", 4, 1), codes=q,
                        scales=np.ones(q.shape[0], dtype=np.float16)) for i, q in enumerate(mats)]
    codec = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 3, 4, 4, 4, 8, True, 3)])
    payload, params = codec.encode(items)
    assert _header(payload)[3]["groups"][0]["ck"] == 7
    for q, it in zip(mats, codec.decode(payload, [it.spec for it in items], params)):
        np.testing.assert_array_equal(q, it.codes)


def test_fuzz_column_level_artifacts_only_raise_artifact_error():
    """Byte edits, side-information field edits and table edits of an artifact whose groups use
    rmode 3, decoded by the C++ (when built), numpy and portable decoders in a forked child: each
    either decodes or raises ArtifactError (no crash, hang, blowup or foreign error)."""
    import random

    from fuzz_harness import run_cases, summary
    from golf_fast.artifact import decode_artifact, encode_artifact
    from test_artifact_fuzz import byte_edits, field_edits, fuzz_state, join_manifest, rans_payload, rans_side, split

    rng = random.Random(1303)
    codec = RansCodec(backend=BACKENDS[-1], context_mixing=False, candidates=[(False, 3, 4, 4, 4, 8, True, 3), (True, 2, 3, 3, 2, 2, False, 2)])
    data = encode_artifact(fuzz_state(1303), {"vocab_size": 64}, codec=codec)
    assert {g["chosen"]["rmode"] for g in codec.last_report["groups"]} <= {2, 3}
    man, payload = split(data)
    header, tables, rest = rans_side(payload)
    assert header["v"] == 3
    cases = [join_manifest(man, rans_payload(h, tables, rest)) for h in field_edits(header, rng, 2)]
    for _ in range(15):
        t = bytearray(tables)
        t[rng.randrange(len(t))] = rng.randrange(256)
        cases.append(join_manifest(man, rans_payload(header, bytes(t), rest)))
    cases += list(byte_edits(data, rng, 20))
    for backend in (["cpp"] if golf_fast.HAS_EXT else []) + ["numpy", "portable"]:
        decode_artifact(data, codec_options={"backend": backend})  # the unmutated artifact loads
        results = run_cases(cases, lambda d: decode_artifact(d, codec_options={"backend": backend}), ArtifactError,
                            batch=64, extra_bytes=256 << 20)
        bad = [r for r in results if r["kind"] not in ("clean", "accepted")]
        assert not bad, (backend, [(r["case"], r["kind"], r["what"]) for r in bad[:10]])
        assert summary(results)["clean"] >= 0.6 * len(cases), (backend, dict(summary(results)))
