"""The experimental context-mixing coder (golf-cm): exact round trips over bit widths and shapes,
deterministic bytes, short or trailing streams rejected, inputs checked."""

from __future__ import annotations

import numpy as np
import pytest

from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import cm, portable

pytestmark = pytest.mark.skipif(portable.find_compiler() is None, reason="needs a C compiler (cc/gcc/clang)")


def mats_for(seed: int, qmax: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        r, c = int(rng.integers(1, 50)), int(rng.integers(1, 50))
        w = rng.standard_t(3, size=(r, c)) * (rng.random(c) + 0.05) * qmax / float(rng.choice([2, 6, 20]))
        out.append(np.clip(np.rint(w), -qmax, qmax).astype(np.int8))
    return out


@pytest.mark.parametrize("qmax", [1, 3, 15, 20, 21, 22, 31, 63, 127])
@pytest.mark.parametrize("seed", range(3))
def test_round_trip_and_deterministic(qmax, seed):
    mats = mats_for(seed * 131 + qmax, qmax)
    if seed == 2:
        mats.append(np.full((3, 5), qmax, dtype=np.int8))  # saturated: the raw-bit escape past U unary steps
        mats.append(-np.full((2, 2), qmax, dtype=np.int8))
    z = cm.encode(mats, qmax)
    assert z == cm.encode(mats, qmax)
    back = cm.decode(z, [q.shape for q in mats], qmax)
    assert all(np.array_equal(a, b) and b.dtype == np.int8 for a, b in zip(mats, back))


def test_adapts_to_structure():
    """Rows that repeat the row above cost far fewer bytes than independent rows."""
    rng = np.random.default_rng(0)
    row = np.clip(np.rint(rng.standard_normal(256) * 3), -31, 31).astype(np.int8)
    same = np.tile(row, (64, 1))
    indep = np.clip(np.rint(rng.standard_normal((64, 256)) * 3), -31, 31).astype(np.int8)
    assert len(cm.encode([same], 31)) * 5 < len(cm.encode([indep], 31))


def test_corrupt_streams_are_errors():
    mats = mats_for(7, 31)
    shapes = [q.shape for q in mats]
    z = cm.encode(mats, 31)
    for bad in (z[:-1], z[: len(z) // 2], z + b"\0"):
        with pytest.raises(ArtifactError, match="golf-cm"):
            cm.decode(bad, shapes, 31)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="qmax"):
        cm.encode([np.zeros((2, 2), np.int8)], 0)
    with pytest.raises(ValueError, match=r"mats\[0\]"):
        cm.encode([np.zeros((2, 2), np.int16)], 3)
    with pytest.raises(ValueError, match="outside"):
        cm.encode([np.full((2, 2), 9, np.int8)], 3)
