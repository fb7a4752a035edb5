"""The embedding coder (``rans.embcm``): the compiled C coder and the pure-Python reference write the
same bytes and read them back; corrupt streams and bad arguments are refused; the codec uses it where
it is smaller (side information v6) and every decoder reads that back bit for bit; its row order
(``chain_order``) is the greedy chain its reference computes; version-5 embedding-coder groups are refused."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import embcm
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.embcm_ref import chain_order_ref
from golf_fast.artifact.rans.side import check_group
from rans_items import code_items, near_copy_rows, side_header

pytestmark = pytest.mark.skipif(embcm.library() is None, reason="needs a C compiler")  # the C half of each test


def _codes(rng, r, c, qmax, kind):
    if kind == "near-copy":
        fam = np.clip(np.rint(rng.standard_normal((3, c)) * qmax * 0.5), -qmax, qmax)
        q = fam[rng.integers(0, 3, r)] + (rng.random((r, c)) < 0.3) * rng.integers(-2, 3, (r, c))
    elif kind == "saturated":
        q = rng.choice([-qmax, qmax, 0], size=(r, c))
    else:
        q = rng.standard_t(3, size=(r, c)) * qmax / 4
    return np.clip(np.rint(q), -qmax, qmax).astype(np.int8)


@pytest.mark.parametrize("r,c,qmax,kind", [(1, 1, 127, "heavy"), (1, 9, 63, "near-copy"), (13, 1, 31, "heavy"),
                                           (21, 11, 63, "near-copy"), (17, 6, 1, "saturated"),
                                           (9, 14, 3, "heavy"), (11, 5, 127, "saturated"), (26, 19, 7, "near-copy")])
@pytest.mark.parametrize("flag", [0, 1, 2])
def test_c_and_reference_write_the_same_bytes_and_read_them_back(r, c, qmax, kind, flag):
    q = _codes(np.random.default_rng(r * 31 + c), r, c, qmax, kind)
    s = embcm.encode(q, qmax, flag)
    assert embcm.encode(q, qmax, flag, backend="reference") == s
    for backend in embcm.BACKENDS:
        np.testing.assert_array_equal(embcm.decode(s, r, c, qmax, flag, backend=backend), q)


def test_corrupt_streams_are_refused_not_misread_silently():
    q = near_copy_rows(3, r=40, c=16)
    rng = np.random.default_rng(0)
    for flag in embcm.FLAGS:
        s = embcm.encode(q, 63, flag)
        for bad in (s[:-1], s[:len(s) // 2], s + b"\0", b""):
            for backend in embcm.BACKENDS:
                with pytest.raises(ArtifactError, match="corrupt stream"):
                    embcm.decode(bad, 40, 16, 63, flag, backend=backend)
        for _ in range(30):  # flipped bytes: refused, or decoded to some matrix; never a crash
            b = bytearray(s)
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            try:
                out = embcm.decode(bytes(b), 40, 16, 63, flag)
                assert out.shape == (40, 16) and int(np.abs(out.astype(np.int16)).max()) <= 63
            except ArtifactError:
                pass


def test_bad_arguments_name_the_argument():
    q = np.zeros((2, 2), np.int8)
    for kwargs, what in (({"qmax": 0}, "qmax"), ({"qmax": 128}, "qmax"), ({"flag": 3}, "flag"), ({"flag": -1}, "flag"),
                         ({"flag": True}, "flag"), ({"backend": "gpu"}, "backend")):
        args = {"qmax": 7, "flag": 0, **kwargs}
        with pytest.raises(ValueError, match=what):
            embcm.encode(q, **args)
    with pytest.raises(ValueError, match="q: expected"):
        embcm.encode(q.astype(np.int16), 7, 0)
    with pytest.raises(ValueError, match="q: codes outside"):
        embcm.encode(np.full((2, 2), 9, np.int8), 7, 0)
    with pytest.raises(ValueError, match="rows"):
        embcm.decode(b"\0" * 8, 0, 2, 7, 0)
    with pytest.raises(ValueError, match="stream"):
        embcm.decode("abc", 1, 2, 7, 0)


def _embedding_items():
    return code_items([near_copy_rows(5, r=120, c=24), near_copy_rows(6, r=50, c=24)], 7, name="tok_emb{i}.weight")


def test_codec_uses_the_embedding_coder_where_smaller_and_every_decoder_reads_it():
    items = _embedding_items()
    codec = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)])
    payload, params = codec.encode(items)
    plain, _ = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)], context_mixing=False).encode(items)
    header = side_header(payload)[3]
    assert header["v"] == 6 and header["groups"] and all(g["cm"] in RansCodec.CM_FLAGS for g in header["groups"])
    assert len(payload) < len(plain) and side_header(plain)[3]["v"] <= 4
    for backend in ("auto", "portable", "numpy", "reference"):
        back = RansCodec(backend=backend).decode(payload, [it.spec for it in items], params)
        for it, b in zip(items, back):
            np.testing.assert_array_equal(it.codes, b.codes)


def test_without_a_compiler_the_loader_decodes_with_the_reference(monkeypatch):
    items = _embedding_items()
    codec = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)])
    payload, params = codec.encode(items)
    assert side_header(payload)[3]["v"] == 6
    monkeypatch.setattr(embcm, "library", lambda: None)
    back = RansCodec().decode(payload, [it.spec for it in items], params)
    for it, b in zip(items, back):
        np.testing.assert_array_equal(it.codes, b.codes)
    payload2, _ = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)]).encode(items)  # no compiler: not tried
    assert side_header(payload2)[3]["v"] <= 4


def test_the_per_artifact_budget_limits_the_embedding_coder(monkeypatch):
    items = _embedding_items()
    monkeypatch.setattr(RansCodec, "CM_MAX_CODES", 100)  # below either group (2,880 and 1,200 codes)
    payload, _ = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)]).encode(items)
    assert side_header(payload)[3]["v"] <= 4


def test_side_information_checks_the_cm_field():
    items = _embedding_items()
    payload, _ = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)]).encode(items)
    g = side_header(payload)[3]["groups"][0]
    assert check_group(g, 6, 63)["cm"] in (0, 2)
    for key, value in (("cm", 3), ("cm", -2), ("cm", "1"), ("reorder", True), ("ck", 1), ("thr_a", [4]),
                       ("rowdelta", True)):
        bad = copy.deepcopy(g)
        bad[key] = value
        with pytest.raises(ArtifactError):
            check_group(bad, 6, 63)
    with pytest.raises(ArtifactError, match="group keys"):  # a v6 group read as v4
        check_group(g, 4, 63)
    for cm in (0, 1):  # version 5's embedding coder is gone: refused, naming why (not misread)
        with pytest.raises(ArtifactError, match="earlier embedding coder"):
            check_group({**g, "cm": cm}, 5, 63)
    assert check_group({**g, "cm": -1}, 5, 63)["cm"] == -1  # a v5 rANS group still reads
    plain = {k: v for k, v in g.items() if k != "cm"}
    assert check_group(plain, 4, 63)["cm"] == -1


def test_a_shape_the_coder_cannot_hold_is_an_artifact_error():
    from golf_fast.artifact.rans.codec import _decode_context_mixing

    g = {"qmax": 63, "cm": 1, "slice_rows": 8}
    with pytest.raises(ArtifactError, match="corrupt code stream"):
        _decode_context_mixing(g, [b"\0" * 8], [(0, 4)], [np.zeros(0, np.int64)], ["tok_emb.weight"])
    with pytest.raises(ArtifactError, match="one stream per matrix"):
        _decode_context_mixing(g, [b"\0" * 8], [(9, 4)], [np.arange(9)], ["tok_emb.weight"])


@pytest.mark.parametrize("r,c", [(1, 1), (2, 17), (9, 1), (23, 16), (31, 37)])
@pytest.mark.parametrize("lam", [0, 16, 256, 1 << 20])
def test_chain_order_is_the_greedy_chain_of_its_reference(r, c, lam):
    rng = np.random.default_rng(r * 7 + c)
    q = np.clip(np.rint(rng.standard_normal((r, c)) * 3), -7, 7).astype(np.int8)
    if r > 3:
        q[r // 2] = q[1]  # a tie: the lowest index goes first
        q[r // 3, : c // 2] = q[0, : c // 2]
    order = embcm.chain_order(q, lam)
    np.testing.assert_array_equal(order, chain_order_ref(q, lam))
    assert order[0] == 0 and sorted(order.tolist()) == list(range(r))


def test_chain_order_checks_its_arguments():
    for q, lam, what in ((np.zeros((2, 2), np.int16), 0, "q: expected"), (np.zeros((0, 2), np.int8), 0, "q: expected"),
                         (np.zeros((2, 2), np.int8), -1, "lam"), (np.zeros((2, 2), np.int8), True, "lam"),
                         (np.zeros((2, 2), np.int8), (1 << 20) + 1, "lam")):
        with pytest.raises(ValueError, match=what):
            embcm.chain_order(q, lam)


def test_the_codec_keeps_the_smallest_row_order_and_binarization():
    from golf_fast.artifact.rans.codec import _context_mixing_alternative

    mats = [near_copy_rows(11, r=64, c=20), _codes(np.random.default_rng(3), 40, 20, 63, "heavy")]
    for q in mats:
        sizes = {(lam, flag): len(embcm.encode(np.ascontiguousarray(q[embcm.chain_order(q, lam)]), 63, flag))
                 for lam in (0, 256) for flag in (0, 2)}
        model, streams, flag, perms = _context_mixing_alternative([q], 63, (0, 256), (0, 2))
        assert len(streams[0]) == min(sizes.values())
        assert any(sizes[(lam, flag)] == len(streams[0]) and np.array_equal(perms[0], embcm.chain_order(q, lam))
                   for lam in (0, 256))
        np.testing.assert_array_equal(embcm.decode(streams[0], *q.shape, 63, flag), q[perms[0]])
