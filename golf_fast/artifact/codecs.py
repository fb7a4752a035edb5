"""The codec registry: payload codecs selected by name, the name recorded in the manifest.

Codecs (``CODEC_NAMES``; the interface is ``golf_fast.artifact.codec_base.Codec``):

* ``golf-rans`` (``DEFAULT_CODEC``) — the package's own: int codes as symbols, per-role
  context-modelled static rANS (``golf_fast.artifact.rans.codec``, ``golf_fast.artifact.rans.coder``);
* ``brotli-11`` — the records' baseline: byte-shuffled records' layout, brotli quality 11;
* ``lzma-9`` — the same bytes, ``lzma`` preset 9 (both in ``golf_fast.artifact.baseline_codecs``).
"""

from __future__ import annotations

from golf_fast.artifact.baseline_codecs import BrotliCodec, LzmaCodec
from golf_fast.artifact.codec_base import Codec
from golf_fast.artifact.rans.codec import RansCodec

CODECS: dict[str, type[Codec]] = {"golf-rans": RansCodec, "brotli-11": BrotliCodec, "lzma-9": LzmaCodec}
CODEC_NAMES = tuple(CODECS)
DEFAULT_CODEC = "golf-rans"


def get_codec(name: str) -> Codec:
    """A new instance of the codec registered under ``name`` (one of ``CODEC_NAMES``)."""
    if not isinstance(name, str) or name not in CODECS:
        raise ValueError(f"codec: expected one of {sorted(CODECS)}, got {name!r}")
    return CODECS[name]()


def resolve_codec(name: str) -> Codec:
    """``get_codec(name or DEFAULT_CODEC)``, checked usable here (``Codec.check_ready``); errors are
    ``ValueError`` naming ``codec``."""
    codec = get_codec(name or DEFAULT_CODEC)
    try:
        codec.check_ready()
    except RuntimeError as exc:
        raise ValueError(f"codec: {codec.name!r} cannot be used here: {exc}") from None
    return codec
