"""Test helpers shared by the golf-rans codec tests: code matrices with a trained embedding's
near-copy rows, codec inputs built from code matrices, and the JSON header of an encoded payload."""

from __future__ import annotations

import json
import struct

import numpy as np

from golf_fast.artifact.codec_base import TensorData, TensorSpec
from golf_fast.artifact.compressors import brotli_decompress


def code_items(mats, bits: int, name: str = "blocks.{i}.w", scale_step: float = 0.0) -> list:
    """One quantized ``TensorData`` per int8 matrix of ``mats`` (named ``name.format(i=i)``); row
    scales are 1.0, or ``scale_step·(i+1)`` when ``scale_step`` is set."""
    out = []
    for i, q in enumerate(mats):
        spec = TensorSpec(name.format(i=i), "quantized", q.shape, "int8", bits, 1)
        s = np.full(q.shape[0], scale_step * (i + 1) if scale_step else 1.0, dtype=np.float16)
        out.append(TensorData(spec, codes=q, scales=s))
    return out


def side_header(payload: bytes) -> tuple:
    """(side_len, side bytes, header length, header dict) of a golf-rans payload."""
    (side_len,) = struct.unpack_from("<I", payload)
    side = brotli_decompress(payload[4:4 + side_len], "test", 1 << 26)
    (hlen,) = struct.unpack_from("<I", side)
    return side_len, side, hlen, json.loads(side[4:4 + hlen])


def near_copy_rows(seed: int, r: int = 96, c: int = 24, qmax: int = 63) -> np.ndarray:
    """Wide codes whose rows fall in a few families of near-copies (each row repeats its family's
    row at most positions), shuffled: the structure of a trained embedding's rarely seen tokens."""
    rng = np.random.default_rng(seed)
    fam = np.clip(np.rint(rng.standard_normal((4, c)) * 30), -qmax, qmax)
    rows = fam[rng.integers(0, 4, r)]
    rows = rows + (rng.random((r, c)) < 0.2) * rng.integers(-3, 4, (r, c))
    return np.clip(rows, -qmax, qmax).astype(np.int8)
