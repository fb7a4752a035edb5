"""Byte-stream tools the codecs share: the records' byte shuffle, brotli and lzma with clear errors.

Decompression is streamed with an output limit (``limit`` bytes, what the manifest's tensors
need): a small payload that would inflate past it is stopped as soon as the output passes the
limit, so a decompression bomb costs at most ``limit`` plus one step of output, never its full
inflated size. Every failure is an ``ArtifactError`` naming the stream.
"""

from __future__ import annotations

import functools
import lzma

import brotli
import numpy as np

from golf_fast.artifact.errors import ArtifactError

STEP_BYTES = 1 << 20
"""Output produced per decompression step (brotli, lzma) before the limit is checked again."""
BROTLI_FALLBACK_INPUT = 64
"""Input bytes fed per step to a brotli without ``output_buffer_limit`` (brotli < 1.2)."""


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


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit: expected an int >= 0 (bytes), got {limit!r}")


def _too_big(what: str, limit: int) -> ArtifactError:
    return ArtifactError(f"{what}: decompresses to more than the {limit} bytes the manifest allows "
                         "(corrupt, or a decompression bomb)")


@functools.lru_cache(maxsize=None)
def _has_output_limit() -> bool:
    """Whether the installed brotli's Decompressor.process takes ``output_buffer_limit`` (probed on
    first use, not at import)."""
    try:
        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:
        return False
    except brotli.error:
        return True
    return True



def brotli_decompress(data: bytes, what: str, limit: int) -> bytes:
    """Decompress a brotli stream that must inflate to at most ``limit`` bytes.

    With brotli >= 1.2 the decompressor's ``output_buffer_limit`` bounds each step's output;
    older versions are fed ``BROTLI_FALLBACK_INPUT`` input bytes per step and stopped as soon as
    the output passes the limit.
    """
    _check_limit(limit)
    d = brotli.Decompressor()
    out, total = [], 0
    view = memoryview(bytes(data))
    try:
        if _has_output_limit():
            step = min(STEP_BYTES, limit + 1)
            chunk = d.process(view, output_buffer_limit=step)
            while True:
                out.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise _too_big(what, limit)
                if d.is_finished():
                    break
                chunk = d.process(b"", output_buffer_limit=step)
                if not chunk and not d.is_finished():
                    break  # input used up, no more output: the stream ends early
        else:
            for off in range(0, len(view), BROTLI_FALLBACK_INPUT):
                chunk = d.process(view[off:off + BROTLI_FALLBACK_INPUT])
                out.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise _too_big(what, limit)
    except brotli.error as exc:
        raise ArtifactError(f"{what}: brotli stream is corrupt ({exc})") from exc
    if not d.is_finished():
        raise ArtifactError(f"{what}: brotli stream is corrupt (it ends early)")
    return b"".join(out)


def lzma_compress(data: bytes, preset: int = 9) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, preset=preset)


def lzma_decompress(data: bytes, what: str, limit: int) -> bytes:
    """Decompress an xz stream that must inflate to at most ``limit`` bytes (``max_length`` steps)."""
    _check_limit(limit)
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=1 << 28)
    out, total = [], 0
    try:
        chunk = d.decompress(bytes(data), max_length=min(STEP_BYTES, limit + 1))
        while True:
            out.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_big(what, limit)
            if d.eof or d.needs_input:
                break
            chunk = d.decompress(b"", max_length=min(STEP_BYTES, limit + 1 - total))
    except lzma.LZMAError as exc:
        raise ArtifactError(f"{what}: lzma stream is corrupt ({exc})") from exc
    if not d.eof:
        raise ArtifactError(f"{what}: lzma stream is corrupt (it ends early)")
    if d.unused_data:
        raise ArtifactError(f"{what}: {len(d.unused_data)} bytes after the end of the lzma stream")
    return b"".join(out)
