"""Round-trip properties of the golf-rans writer over its parameters: whatever it writes, the
loader reads back bit for bit (slice rows, table precision, context modes, group mixes, tiny
shapes), and what it cannot write it refuses at write time, never at load time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golf_fast.artifact import decode_artifact, encode_artifact
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import DEFAULT_CANDIDATES, _quantile_thresholds
from golf_fast.artifact.rans.side import MAX_ACC
from golf_fast.quant.formats import QuantizedTensor, qmax

ROLES = ("blocks.{}.mlp.fc.weight", "blocks.{}.attn.c_q.weight", "tok_emb.weight", "blocks.{}.attn.proj.weight")


def random_state(rng: np.random.Generator) -> dict:
    """A random mix of groups: roles, bit widths 2..8, shapes from 1×1 up, code statistics from
    constant to heavy tailed, fp16/fp32/int passthrough tensors."""
    st: dict = {}
    for g in range(int(rng.integers(1, 4))):
        role, bits = ROLES[int(rng.integers(len(ROLES)))], int(rng.integers(2, 9))
        q = qmax(bits)
        for layer in range(int(rng.integers(1, 4))):
            r, c = int(rng.integers(1, 40)), int(rng.integers(1, 40))
            kind = int(rng.integers(4))
            if kind == 0:  # constant
                codes = np.full((r, c), int(rng.integers(-q, q + 1)), dtype=np.int8)
            elif kind == 1:  # saturated extremes
                codes = rng.choice([-q, q], size=(r, c)).astype(np.int8)
            else:
                w = rng.standard_t(3, size=(r, c)) * (rng.random(c) + 0.1) * q / (2 + 4 * kind)
                codes = np.clip(np.rint(w), -q, q).astype(np.int8)
            name = role.format(layer) if "{}" in role else role
            name = name if name not in st else f"x{g}.{layer}.{name}"
            st[name] = QuantizedTensor(torch.from_numpy(codes), torch.from_numpy((rng.random(r) + 0.1).astype(np.float16)),
                                       bits)
    st["final_norm.weight"] = torch.from_numpy(rng.random(int(rng.integers(1, 9))).astype(np.float32))
    st["skip"] = torch.from_numpy(rng.integers(-5, 5, size=(2, 3)))
    return st


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k, v in a.items():
        w = b[k]
        if isinstance(v, QuantizedTensor):
            assert torch.equal(v.codes, w.codes) and torch.equal(v.scales, w.scales) and v.bits == w.bits, k
        else:
            assert v.dtype == w.dtype and torch.equal(v, w), k


@pytest.mark.parametrize("seed", range(12))
def test_random_states_round_trip_over_encoder_parameters(seed):
    rng = np.random.default_rng(1000 + seed)
    st = random_state(rng)
    cands = [DEFAULT_CANDIDATES[int(i)] for i in rng.choice(len(DEFAULT_CANDIDATES), size=3, replace=False)]
    codec = RansCodec(backend="numpy", slice_rows=int(rng.choice([1, 2, 3, 7, 16, 64, 256])),
                      prob_bits=int(rng.integers(8, 16)), candidates=cands)
    data = encode_artifact(st, {"seed": seed}, codec=codec)
    for dec in ("portable", "numpy") + (("auto",) if seed % 3 == 0 else ()):
        assert_same(st, decode_artifact(data, decoder=dec).state)


@pytest.mark.parametrize("slice_rows", [1, 4, 16])
def test_short_slices_write_what_the_loader_reads(slice_rows):
    """The 16-row-slice writer bug: a near-constant column accumulator gave equal quantile
    thresholds ([31, 31, …]) that the loader rejects as not strictly increasing."""
    rng = np.random.default_rng(slice_rows)
    codes = np.clip(np.rint(rng.standard_normal((64, 48)) * 3), -31, 31).astype(np.int8)
    st = {f"blocks.{i}.mlp.fc.weight": QuantizedTensor(torch.from_numpy(codes[:, i:i + 40].copy()),
                                                        torch.ones(64, dtype=torch.float16), 6) for i in range(3)}
    codec = RansCodec(backend="numpy", slice_rows=slice_rows, candidates=[(False, 4, 6, 32, 32, 0, False)])
    assert_same(st, decode_artifact(encode_artifact(st, {}, codec=codec)).state)


def test_thresholds_are_strictly_increasing_and_bounded():
    assert _quantile_thresholds(np.full(1000, 30), 8) == [31]
    assert _quantile_thresholds(np.array([0, 0, 0, 5, 5, 9]), 4) == [1, 6]
    assert _quantile_thresholds(np.full(10, 5 << 20), 3) == [MAX_ACC]
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.integers(0, rng.integers(1, 200), size=int(rng.integers(1, 500)))
        t = _quantile_thresholds(v, int(rng.integers(1, 65)))
        assert all(1 <= a < b <= MAX_ACC for a, b in zip(t, t[1:])) and all(1 <= a <= MAX_ACC for a in t)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0)])
def test_empty_quantized_tensors_are_refused_at_write_time(shape):
    st = {"a.weight": QuantizedTensor(torch.zeros(shape, dtype=torch.int8), torch.ones(shape[0], dtype=torch.float16), 6)}
    with pytest.raises(TypeError, match="non-empty"):
        encode_artifact(st, {}, codec=RansCodec(backend="numpy"))


def test_tiny_tensors_and_empty_passthrough_round_trip():
    st = {"a.weight": QuantizedTensor(torch.tensor([[3]], dtype=torch.int8), torch.ones(1, dtype=torch.float16), 6),
          "b.weight": QuantizedTensor(torch.tensor([[-1, 0, 1, 127]], dtype=torch.int8),
                                      torch.ones(1, dtype=torch.float16), 8),
          "c.weight": QuantizedTensor(torch.tensor([[1], [-1]], dtype=torch.int8), torch.ones(2, dtype=torch.float16), 2),
          "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5)}
    for sr in (1, 256):
        data = encode_artifact(st, {}, codec=RansCodec(backend="numpy", slice_rows=sr))
        for dec in ("portable", "numpy", "reference"):
            assert_same(st, decode_artifact(data, decoder=dec).state)


def near_copy_state(rng: np.random.Generator) -> dict:
    """Groups whose rows are near-copies of a few family rows (what row deltas are for), over bit
    widths 2..8 and shapes from one row or one column up, saturated codes included."""
    st: dict = {}
    for g in range(int(rng.integers(1, 3))):
        bits = int(rng.integers(2, 9))
        q = qmax(bits)
        for layer in range(int(rng.integers(1, 3))):
            r, c = int(rng.integers(1, 60)), int(rng.integers(1, 30))
            fam = np.clip(np.rint(rng.standard_normal((3, c)) * q * 0.6), -q, q)
            rows = fam[rng.integers(0, 3, r)] + (rng.random((r, c)) < 0.15) * rng.integers(-2, 3, (r, c))
            codes = np.clip(rows, -q, q).astype(np.int8)
            st[f"g{g}.blocks.{layer}.mlp.fc.weight" if g else f"tok_emb{layer}.weight"] = QuantizedTensor(
                torch.from_numpy(codes), torch.from_numpy((rng.random(r) + 0.1).astype(np.float16)), bits)
    return st


def test_row_delta_groups_round_trip_over_encoder_parameters():
    """Whatever the writer writes with row deltas on (side information v4 where a group uses them),
    every decoder reads back bit for bit; the sweep must produce row-delta groups to count."""
    used = 0
    for seed in range(10):
        rng = np.random.default_rng(2000 + seed)
        st = near_copy_state(rng)
        codec = RansCodec(backend="numpy", slice_rows=int(rng.choice([1, 2, 5, 16, 256])),
                          prob_bits=int(rng.integers(8, 16)),
                          candidates=[(False, 4, 4, 4, 4, 8, True, 1), (False, 4, 4, 4, 4, 8, True, 3)])
        data = encode_artifact(st, {"seed": seed}, codec=codec)
        used += sum(bool(g.get("rowdelta")) for g in codec.last_report["groups"])
        for dec in ("portable", "numpy") + (("auto",) if seed % 3 == 0 else ()):
            assert_same(st, decode_artifact(data, decoder=dec).state)
    print(f"row-delta groups written: {used}")
    assert used >= 3, used
