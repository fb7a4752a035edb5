"""What every payload codec shares: the tensor description, the tensor content, the interface.

A codec turns the tensors of a quantized state into one byte string and back. It sees
``TensorData`` items in manifest order: a quantized matrix is ``codes`` (R, C) int8 numpy plus
``scales`` (R,) float16 numpy; a passthrough tensor is its raw little-endian bytes ``raw``
(uint8 numpy; any torch dtype, bfloat16 included). Decoding gets the ``TensorSpec`` list from the
manifest and must return every tensor with exactly the spec's size, or raise ``ArtifactError``
(``golf_fast.artifact.errors``) naming the tensor.

A leaf module: concrete codecs import it, the registry (``golf_fast.artifact.codecs``) imports
the concrete codecs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


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

    def check_ready(self) -> None:
        """Raise ``RuntimeError`` saying why if this codec cannot encode on this machine (called
        before a training run, so a missing requirement is found before the run, not after it)."""

    @abstractmethod
    def encode(self, items: list[TensorData]) -> tuple[bytes, dict[str, Any]]:
        """Compress ``items`` (manifest order) into one payload."""

    @abstractmethod
    def decode(self, payload: bytes, specs: list[TensorSpec], params: dict[str, Any]) -> list[TensorData]:
        """Inverse of ``encode``; raises ``ArtifactError`` naming the tensor on any mismatch."""
