"""The artifact: a safe file format (no pickle), payload codecs, code-byte accounting, size fitting.

* ``save_artifact(path, quantized_state, config, codec=...)`` / ``load_artifact(path)`` (format)
* codecs by name: ``golf-rans`` (default, the package's own), ``brotli-11`` (the records'), ``lzma-9``
* ``code_bytes(path, wrapper=...)``: a submission script's counted bytes (code_bytes)
* ``fit_clip_scale(...)``: bisection of one clip-sigma scale so the artifact fits the budget (fit)
"""

from golf_fast.artifact.code_bytes import CodeBytes, code_bytes
from golf_fast.artifact.codec_base import Codec
from golf_fast.artifact.codecs import CODEC_NAMES, DEFAULT_CODEC, get_codec, resolve_codec
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.fit import FitResult, FitTry, budget_bytes, fit_clip_scale
from golf_fast.artifact.format import (
    Artifact,
    decode_artifact,
    dequantize_state,
    encode_artifact,
    load_artifact,
    save_artifact,
)

__all__ = [
    "Artifact", "ArtifactError", "CODEC_NAMES", "Codec", "CodeBytes", "DEFAULT_CODEC", "FitResult", "FitTry",
    "budget_bytes", "code_bytes", "decode_artifact", "dequantize_state", "encode_artifact", "fit_clip_scale",
    "get_codec", "load_artifact", "resolve_codec", "save_artifact",
]
