"""Row orders as Lehmer ranks (``rans.permcode``, side information v6): a bijection between the
permutations of n and the integers below n!, in exactly ceil(log2(n!)/8) bytes; hostile bytes are
refused; a v6 artifact stores its embedding's row order that way and reads it back."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import embcm, permcode
from golf_fast.artifact.rans.codec import RansCodec, _row_order_bytes
from golf_fast.artifact.rans.coder import table_bytes
from rans_items import code_items, near_copy_rows, side_header


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6])
def test_every_permutation_has_its_own_code_and_reads_back(n):
    seen = set()
    for p in itertools.permutations(range(n)):
        b = permcode.pack(np.array(p, dtype=np.int64))
        assert len(b) == permcode.packed_size(n)
        seen.add(b)
        assert permcode.unpack(b, n).tolist() == list(p)
    assert len(seen) == math.factorial(n)  # a bijection onto 0..n!-1


@pytest.mark.parametrize("n", [7, 255, 256, 1000, 8192])
def test_large_permutations_round_trip_in_log2_factorial_bytes(n):
    p = np.random.default_rng(n).permutation(n)
    b = permcode.pack(p)
    assert len(b) == math.ceil(math.log2(math.factorial(n)) / 8) == permcode.packed_size(n)
    np.testing.assert_array_equal(permcode.unpack(b, n), p)
    for q in (np.arange(n), np.arange(n)[::-1].copy()):  # the extremes: rank 0 and rank n!-1
        np.testing.assert_array_equal(permcode.unpack(permcode.pack(q), n), q)
    assert int.from_bytes(permcode.pack(np.arange(n)[::-1].copy()), "little") == math.factorial(n) - 1


def test_hostile_bytes_are_refused():
    n = 10
    with pytest.raises(ArtifactError, match="must be"):
        permcode.unpack(b"\0" * (permcode.packed_size(n) - 1), n)
    with pytest.raises(ArtifactError, match="must be"):
        permcode.unpack(b"\0" * (permcode.packed_size(n) + 1), n)
    with pytest.raises(ArtifactError, match="not a permutation code"):
        permcode.unpack(math.factorial(n).to_bytes(permcode.packed_size(n), "little"), n)
    with pytest.raises(ArtifactError, match="not a permutation code"):
        permcode.unpack(b"\xff" * permcode.packed_size(n), n)


def test_bad_arguments_name_the_argument():
    for p in (np.array([0, 0]), np.array([1, 2]), np.array([0.0, 1.0]), [0, 1], np.zeros((2, 2), np.int64),
              np.arange(permcode.MAX_ROWS + 1)):
        with pytest.raises(ValueError, match="p: expected"):
            permcode.pack(p)
    for n in (-1, True, 1.0, permcode.MAX_ROWS + 1):
        with pytest.raises(ValueError, match="n: expected"):
            permcode.packed_size(n)


@pytest.mark.skipif(embcm.library() is None, reason="the embedding coder needs a C compiler to encode")
def test_a_v6_artifact_stores_its_row_orders_packed():
    items = code_items([near_copy_rows(5, r=300, c=24)], 7, name="tok_emb{i}.weight")
    payload, params = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)]).encode(items)
    _, side, hlen, header = side_header(payload)
    assert header["v"] == 6 and header["groups"][0]["cm"] >= 0
    zero_table = table_bytes(np.zeros((1, 2 * header["groups"][0]["qmax"] + 1), dtype=np.int32))
    assert len(side) == 4 + hlen + len(zero_table) + permcode.packed_size(300)  # 256 B, not 600
    back = RansCodec().decode(payload, [it.spec for it in items], params)
    np.testing.assert_array_equal(back[0].codes, items[0].codes)
    p = np.random.default_rng(0).permutation(300)
    assert len(_row_order_bytes(p, 6)) == permcode.packed_size(300)
    np.testing.assert_array_equal(np.frombuffer(_row_order_bytes(p, 5), "<u2"), p)  # older versions: uint16
