"""Payload codecs of the artifact: one interface, selected by name, recorded in the manifest.

A codec turns the tensors of a quantized state into one byte string and back. It sees
``TensorData`` items in manifest order: a quantized matrix is ``codes`` (R, C) int8 numpy plus
``scales`` (R,) float16 numpy; a passthrough tensor is its raw little-endian bytes ``raw``
(uint8 numpy; any torch dtype, bfloat16 included). Decoding gets the ``TensorSpec`` list from the
manifest and must return every tensor with exactly the spec's size, or raise ``ArtifactError``
naming the tensor.

Codecs (``CODECS``):

* ``brotli-11`` — the records' baseline (parameter_golf.md §5.4): all bytes concatenated in
  manifest order (codes, then scales, per quantized tensor), byte-shuffled with stride 2 (all even
  offsets, then all odd), brotli quality 11.
* ``lzma-9`` — the same bytes and shuffle, ``lzma`` preset 9 (xz container).
* ``golf-rans`` — the package's own: int codes as symbols, per-role context-modelled static rANS
  (``golf_fast.artifact.rans``).
"""

from __future__ import annotations

import lzma
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


class ArtifactError(ValueError):
    """A malformed, corrupted or inconsistent artifact (the message says what and where)."""


@dataclass(frozen=True)
class TensorSpec:
    """What the manifest says about one tensor.

    kind ``quantized``: shape (R, C), codes int8 in [−qmax(bits), qmax(bits)], scales (R,) fp16.
    kind ``passthrough``: any shape, ``dtype`` a torch dtype name (e.g. ``float16``), raw bytes.
    """

    name: str
    kind: str
    shape: tuple
    dtype: str
    bits: Optional[int] = None
    itemsize: int = 1

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n

    @property
    def raw_nbytes(self) -> int:
        """Bytes the baseline layout spends on it: codes + scales, or the raw tensor."""
        if self.kind == "quantized":
            return self.numel + 2 * int(self.shape[0])
        return self.numel * self.itemsize


@dataclass
class TensorData:
    """One tensor's content as a codec sees it (see the module docstring)."""

    spec: TensorSpec
    codes: Optional[np.ndarray] = None
    scales: Optional[np.ndarray] = None
    raw: Optional[np.ndarray] = None


class Codec(ABC):
    """Interface: ``encode(items) -> (payload, params)``; ``decode(payload, specs, params) -> items``.

    ``params`` is a small JSON-able dict stored in the manifest next to the codec name.
    """

    name: str = ""

    @abstractmethod
    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        """Compress ``items`` (manifest order) into one payload."""

    @abstractmethod
    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        """Inverse of ``encode``; raises ``ArtifactError`` naming the tensor on any mismatch."""


# --------------------------------------------------------------------------- shared helpers


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """The records' byte shuffle: bytes at offsets ≡ 0 (mod stride), then ≡ 1, ... ."""
    if stride <= 1 or not data:
        return bytes(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    return b"".join(arr[k::stride].tobytes() for k in range(stride))


def byte_unshuffle(data: bytes, stride: int) -> bytes:
    """Inverse of ``byte_shuffle``."""
    if stride <= 1 or not data:
        return bytes(data)
    arr = np.frombuffer(data, dtype=np.uint8)
    n = arr.size
    out = np.empty(n, dtype=np.uint8)
    pos = 0
    for k in range(stride):
        cnt = len(range(k, n, stride))
        out[k::stride] = arr[pos:pos + cnt]
        pos += cnt
    return out.tobytes()


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


def _brotli():
    try:
        import brotli
    except ImportError as exc:  # a declared dependency; say how to get it
        raise ImportError("the brotli codec needs the `brotli` package: pip install brotli") from exc
    return brotli


def brotli_compress(data: bytes, quality: int = 11, lgwin: int = 22) -> bytes:
    return _brotli().compress(data, quality=quality, lgwin=lgwin)


def brotli_decompress(data: bytes, what: str) -> bytes:
    try:
        return _brotli().decompress(data)
    except _brotli().error as exc:
        raise ArtifactError(f"{what}: brotli stream is corrupt ({exc})") from exc


def lzma_compress(data: bytes, preset: int = 9) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=preset)


def lzma_decompress(data: bytes, what: str) -> bytes:
    try:
        return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as exc:
        raise ArtifactError(f"{what}: lzma stream is corrupt ({exc})") from exc


# --------------------------------------------------------------------------- baseline codecs


class BrotliCodec(Codec):
    """Byte-shuffle (stride 2) + brotli quality 11: the records' artifact compression."""

    name = "brotli-11"

    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        return brotli_compress(byte_shuffle(concat_items(items), 2), quality=11), {"shuffle": 2, "quality": 11}

    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        raw = byte_unshuffle(brotli_decompress(payload, "payload"), int(params.get("shuffle", 2)))
        return split_items(raw, specs)


class LzmaCodec(Codec):
    """Byte-shuffle (stride 2) + lzma preset 9 (xz container)."""

    name = "lzma-9"

    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        return lzma_compress(byte_shuffle(concat_items(items), 2), preset=9), {"shuffle": 2, "preset": 9}

    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        raw = byte_unshuffle(lzma_decompress(payload, "payload"), int(params.get("shuffle", 2)))
        return split_items(raw, specs)


def _registry() -> dict[str, type]:
    from golf_fast.artifact.rans_codec import RansCodec

    return {"brotli-11": BrotliCodec, "lzma-9": LzmaCodec, "golf-rans": RansCodec}


CODEC_NAMES = ("golf-rans", "brotli-11", "lzma-9")
DEFAULT_CODEC = "golf-rans"


def get_codec(name: str) -> Codec:
    """The codec registered under ``name`` (one of ``CODEC_NAMES``)."""
    reg = _registry()
    if not isinstance(name, str) or name not in reg:
        raise ValueError(f"codec: expected one of {sorted(reg)}, got {name!r}")
    return reg[name]()
