"""Byte-stream tools the codecs share: the records' byte shuffle, brotli and lzma with clear errors."""

from __future__ import annotations

import lzma

import brotli
import numpy as np

from golf_fast.artifact.errors import ArtifactError


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


def brotli_compress(data: bytes, quality: int = 11, lgwin: int = 22) -> bytes:
    return brotli.compress(data, quality=quality, lgwin=lgwin)


def brotli_decompress(data: bytes, what: str) -> bytes:
    try:
        return brotli.decompress(data)
    except brotli.error as exc:
        raise ArtifactError(f"{what}: brotli stream is corrupt ({exc})") from exc


def lzma_compress(data: bytes, preset: int = 9) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=preset)


def lzma_decompress(data: bytes, what: str) -> bytes:
    try:
        return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except lzma.LZMAError as exc:
        raise ArtifactError(f"{what}: lzma stream is corrupt ({exc})") from exc
