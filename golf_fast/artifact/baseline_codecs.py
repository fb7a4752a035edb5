"""The baseline codecs: the records' byte layout, byte-shuffled, then brotli or lzma.

* ``brotli-11`` — the records' baseline (parameter_golf.md §5.4): all bytes concatenated in
  manifest order (codes, then scales, per quantized tensor), byte-shuffled with stride 2 (all even
  offsets, then all odd), brotli quality 11.
* ``lzma-9`` — the same bytes and shuffle, ``lzma`` preset 9 (xz container).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from golf_fast.artifact.codec_base import Codec, TensorData, TensorSpec
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress, byte_shuffle, byte_unshuffle
from golf_fast.artifact.compressors import lzma_compress, lzma_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.untrusted import check_params

MAX_SHUFFLE = 16


def _shuffle_param(params: dict[str, Any], codec: str, level: str, top: int) -> int:
    """The byte-shuffle stride from checked parameters (``shuffle`` 1..16, ``level`` 0..top)."""
    return check_params(params, {"shuffle": (1, MAX_SHUFFLE), level: (0, top)}, codec).get("shuffle", 2)


def _need_bytes(specs: list[TensorSpec]) -> int:
    return sum(s.raw_nbytes for s in specs)


def concat_items(items: list[TensorData]) -> bytes:
    """Baseline byte layout: per tensor in order, codes then scales, or the raw bytes."""
    parts = []
    for it in items:
        if it.spec.kind == "quantized":
            parts.append(np.ascontiguousarray(it.codes, dtype=np.int8).tobytes())
            parts.append(np.ascontiguousarray(it.scales, dtype=np.float16).astype("<f2").tobytes())
        else:
            parts.append(np.ascontiguousarray(it.raw, dtype=np.uint8).tobytes())
    return b"".join(parts)


def split_items(data: bytes, specs: list[TensorSpec]) -> list[TensorData]:
    """Inverse of ``concat_items``; a size mismatch names the first tensor that does not fit."""
    out, pos = [], 0
    buf = memoryview(data)
    for spec in specs:
        need = spec.raw_nbytes
        if pos + need > len(buf):
            raise ArtifactError(f"tensor {spec.name!r} listed in the manifest has no (or incomplete) data in the "
                                f"payload: needs {need} bytes at offset {pos}, payload has {len(buf)}")
        if spec.kind == "quantized":
            r, c = int(spec.shape[0]), int(spec.shape[1])
            codes = np.frombuffer(buf[pos:pos + r * c], dtype=np.int8).reshape(r, c).copy()
            scales = np.frombuffer(buf[pos + r * c:pos + need], dtype="<f2").astype(np.float16)
            out.append(TensorData(spec, codes=codes, scales=scales))
        else:
            out.append(TensorData(spec, raw=np.frombuffer(buf[pos:pos + need], dtype=np.uint8).copy()))
        pos += need
    if pos != len(buf):
        raise ArtifactError(f"payload has {len(buf) - pos} bytes more than the manifest's tensors need")
    return out


class BrotliCodec(Codec):
    """Byte-shuffle (stride 2) + brotli quality 11: the records' artifact compression."""

    name = "brotli-11"

    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        return brotli_compress(byte_shuffle(concat_items(items), 2), quality=11), {"shuffle": 2, "quality": 11}

    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        shuffle = _shuffle_param(params, self.name, "quality", 11)
        raw = byte_unshuffle(brotli_decompress(payload, "payload", _need_bytes(specs)), shuffle)
        return split_items(raw, specs)


class LzmaCodec(Codec):
    """Byte-shuffle (stride 2) + lzma preset 9 (xz container)."""

    name = "lzma-9"

    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        return lzma_compress(byte_shuffle(concat_items(items), 2), preset=9), {"shuffle": 2, "preset": 9}

    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        shuffle = _shuffle_param(params, self.name, "preset", 9)
        raw = byte_unshuffle(lzma_decompress(payload, "payload", _need_bytes(specs)), shuffle)
        return split_items(raw, specs)
