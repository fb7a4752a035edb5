"""The artifact file: a safe, checksummed container for a quantized model. No pickle anywhere.

Layout (all integers little-endian)::

    offset 0   magic            8 bytes  b"\\x89GFART\\r\\n"
    8          version          u16      FORMAT_VERSION (1)
    10         manifest_len     u32
    14         payload_len      u64
    22         manifest         brotli-compressed UTF-8 JSON (sorted keys)
    22+m       payload          the codec's bytes
    22+m+p     checksum         32 bytes, SHA-256 of every byte before it

The manifest holds the format name, the codec name and its parameters, the model config, user
metadata, and one entry per tensor in order: ``name``, ``kind`` (``quantized``: ``shape`` (R, C),
``bits``, ``scheme`` ``sdclip-rows``, codes int8 + scales float16 per row; ``passthrough``:
``shape``, ``dtype``). Loading checks, in order: size, magic, version, section lengths against
the file size (truncation), checksum (any flipped byte), manifest, then each tensor's data, and
fails with ``ArtifactError`` saying what is wrong. Writing is atomic: a temporary file in the
target's folder, fsync, rename, fsync of the folder; an interrupted write leaves the old file.

Same state + config + codec → the same bytes (no timestamps; JSON with sorted keys).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch

from golf_fast.artifact.codec_base import Codec, TensorData, TensorSpec
from golf_fast.artifact.codecs import DEFAULT_CODEC, get_codec
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress
from golf_fast.artifact.errors import ArtifactError
from golf_fast.quant.formats import QuantizedTensor, qmax
from golf_fast.quant.lqer import fold_lqer, pop_state_entries

MAGIC = b"\x89GFART\r\n"
FORMAT_VERSION = 1
FORMAT_NAME = "golf_fast.artifact"
_HEADER = struct.Struct("<8sHIQ")
_DIGEST = 32

StateValue = Union[QuantizedTensor, torch.Tensor]


@dataclass
class Artifact:
    """A loaded artifact: ``state`` (name → QuantizedTensor or tensor), ``config``, ``codec``,
    ``metadata``, ``manifest`` (the parsed JSON) and ``file_bytes``."""

    state: dict[str, StateValue]
    config: dict[str, Any]
    codec: str
    metadata: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    file_bytes: int = 0


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _dtype_from_name(name: str, tensor: str) -> torch.dtype:
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype) or dt.is_complex:
        raise ArtifactError(f"tensor {tensor!r}: unknown dtype {name!r} in the manifest")
    return dt


def _config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a dataclass instance, a dict or None, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(dict(config), sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"config: expected JSON-serializable values ({exc})") from exc


def _check_code_range(codes: np.ndarray, bits: int, what: str, exc: type) -> None:
    m = qmax(bits)
    if int(codes.min()) < -m or int(codes.max()) > m:
        raise exc(f"{what}: codes outside [-{m}, {m}] for {bits} bits")


def _quantized(codes: np.ndarray, scales: np.ndarray, bits: int) -> QuantizedTensor:
    """A QuantizedTensor from checked arrays (the range was checked with numpy, which is much
    faster on int8 than the constructor's torch check, so the constructor's check is skipped)."""
    qt = object.__new__(QuantizedTensor)
    qt.codes = torch.from_numpy(np.ascontiguousarray(codes))
    qt.scales = torch.from_numpy(np.ascontiguousarray(scales))
    qt.bits = bits
    return qt


def _items_from_state(state: Mapping[str, StateValue]) -> list[TensorData]:
    if not isinstance(state, Mapping) or not state:
        raise TypeError("quantized_state: expected a non-empty dict name → QuantizedTensor or torch.Tensor")
    items = []
    for name, v in state.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"quantized_state: keys must be non-empty strings, got {name!r}")
        if isinstance(v, QuantizedTensor):
            codes = v.codes.detach().cpu().contiguous().numpy() if isinstance(v.codes, torch.Tensor) else None
            if codes is None or codes.dtype != np.int8 or codes.ndim != 2 or 0 in codes.shape:
                raise TypeError(f"quantized_state[{name!r}].codes: expected a non-empty 2-D int8 tensor")
            if (not isinstance(v.scales, torch.Tensor) or v.scales.dtype != torch.float16
                    or tuple(v.scales.shape) != (codes.shape[0],)):
                raise TypeError(f"quantized_state[{name!r}].scales: expected float16 of shape ({codes.shape[0]},)")
            _check_code_range(codes, int(v.bits), f"quantized_state[{name!r}].codes", ValueError)
            spec = TensorSpec(name, "quantized", tuple(codes.shape), "int8", int(v.bits), 1)
            items.append(TensorData(spec, codes=codes, scales=v.scales.detach().cpu().contiguous().numpy()))
        elif isinstance(v, torch.Tensor):
            if v.is_complex() or v.is_sparse or v.layout != torch.strided:
                raise TypeError(f"quantized_state[{name!r}]: expected a dense real tensor, got {v.dtype} {v.layout}")
            t = v.detach().cpu().contiguous()
            spec = TensorSpec(name, "passthrough", tuple(t.shape), _dtype_name(t.dtype), None, t.element_size())
            raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0, dtype=np.uint8)
            items.append(TensorData(spec, raw=raw))
        else:
            raise TypeError(f"quantized_state[{name!r}]: expected a QuantizedTensor or torch.Tensor, "
                            f"got {type(v).__name__}")
    return items


def _spec_entry(spec: TensorSpec) -> dict[str, Any]:
    if spec.kind == "quantized":
        return {"name": spec.name, "kind": "quantized", "shape": list(spec.shape), "bits": spec.bits,
                "scheme": "sdclip-rows", "codes_dtype": "int8", "scales_dtype": "float16"}
    return {"name": spec.name, "kind": "passthrough", "shape": list(spec.shape), "dtype": spec.dtype}


def _spec_from_entry(e: Any, k: int) -> TensorSpec:
    try:
        name, kind, shape = e["name"], e["kind"], tuple(int(d) for d in e["shape"])
    except (TypeError, KeyError, ValueError) as exc:
        raise ArtifactError(f"manifest tensor entry {k} is malformed ({exc!r})") from exc
    if any(d < 0 for d in shape):
        raise ArtifactError(f"tensor {name!r}: negative dimension in {shape}")
    if kind == "quantized":
        bits = e.get("bits")
        if len(shape) != 2 or not isinstance(bits, int) or not 2 <= bits <= 8:
            raise ArtifactError(f"tensor {name!r}: quantized entry needs a 2-D shape and bits in 2..8")
        if e.get("scheme") != "sdclip-rows":
            raise ArtifactError(f"tensor {name!r}: unknown quantization scheme {e.get('scheme')!r}")
        return TensorSpec(name, "quantized", shape, "int8", bits, 1)
    if kind == "passthrough":
        dt = _dtype_from_name(e.get("dtype"), name)
        return TensorSpec(name, "passthrough", shape, _dtype_name(dt), None, torch.empty(0, dtype=dt).element_size())
    raise ArtifactError(f"tensor {name!r}: unknown kind {kind!r}")


def encode_artifact(quantized_state: Mapping[str, StateValue], config: Any = None, *,
                    codec: Union[str, Codec] = DEFAULT_CODEC, metadata: Optional[Mapping] = None) -> bytes:
    """The artifact's bytes (what ``save_artifact`` writes)."""
    items = _items_from_state(quantized_state)
    c = get_codec(codec) if isinstance(codec, str) else codec
    if not isinstance(c, Codec):
        raise TypeError(f"codec: expected a codec name or a Codec, got {type(codec).__name__}")
    payload, params = c.encode(items)
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "codec": {"name": c.name, "params": params},
                "config": _config_dict(config), "metadata": _config_dict(metadata),
                "tensors": [_spec_entry(it.spec) for it in items]}
    mjson = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    mbytes = brotli_compress(mjson, quality=11)
    body = _HEADER.pack(MAGIC, FORMAT_VERSION, len(mbytes), len(payload)) + mbytes + payload
    return body + hashlib.sha256(body).digest()


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename, fsync dir."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            view = memoryview(data)
            for off in range(0, len(view), 1 << 24):
                f.write(view[off:off + (1 << 24)])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a folder; the rename is done anyway
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_artifact(path: Union[str, os.PathLike], quantized_state: Mapping[str, StateValue], config: Any = None, *,
                  codec: Union[str, Codec] = DEFAULT_CODEC, metadata: Optional[Mapping] = None) -> int:
    """Write the artifact atomically; return its size in bytes.

    ``quantized_state``: name → ``QuantizedTensor`` (codes int8, scales fp16, bits) or a plain
    tensor (passthrough, stored bit-exactly in its dtype). ``config``: the model config (dataclass
    or JSON-able dict). ``codec``: a name from ``CODEC_NAMES`` or a ``Codec`` instance.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    data = encode_artifact(quantized_state, config, codec=codec, metadata=metadata)
    atomic_write_bytes(path, data)
    return len(data)


def read_manifest(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Check size, magic, version, lengths and checksum; return (manifest, payload)."""
    n = len(data)
    if n < _HEADER.size + _DIGEST:
        raise ArtifactError(f"file is truncated: {n} bytes, shorter than the {_HEADER.size + _DIGEST}-byte minimum")
    magic, version, mlen, plen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ArtifactError(f"not a golf_fast artifact: magic is {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"unknown artifact version {version} (this golf_fast reads version {FORMAT_VERSION})")
    want = _HEADER.size + mlen + plen + _DIGEST
    if n < want:
        raise ArtifactError(f"file is truncated: header says {want} bytes, file has {n}")
    if n > want:
        raise ArtifactError(f"file has {n - want} unexpected trailing bytes (header says {want} bytes)")
    body = data[:-_DIGEST]
    if hashlib.sha256(body).digest() != data[-_DIGEST:]:
        raise ArtifactError("checksum mismatch: the file is corrupted (a byte was changed since it was written)")
    mstart = _HEADER.size
    try:
        manifest = json.loads(brotli_decompress(data[mstart:mstart + mlen], "manifest").decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArtifactError("manifest does not describe a golf_fast artifact")
    return manifest, data[mstart + mlen:mstart + mlen + plen]


def decode_artifact(data: bytes, *, expected_names: Optional[list] = None, codec_options: Optional[dict] = None
                    ) -> Artifact:
    """Parse artifact bytes (see ``load_artifact``)."""
    manifest, payload = read_manifest(bytes(data))
    entries = manifest.get("tensors")
    if not isinstance(entries, list) or not entries:
        raise ArtifactError("manifest lists no tensors")
    specs = [_spec_from_entry(e, k) for k, e in enumerate(entries)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ArtifactError("manifest lists a tensor name twice")
    if expected_names is not None:
        missing = [n for n in expected_names if n not in set(names)]
        if missing:
            raise ArtifactError(f"missing tensor(s) the caller expects: {missing[:8]}"
                                + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    cinfo = manifest.get("codec") or {}
    try:
        codec = get_codec(cinfo.get("name"))
    except ValueError as exc:
        raise ArtifactError(f"manifest names an unknown codec {cinfo.get('name')!r}") from exc
    if codec_options:
        codec = type(codec)(**codec_options)
    items = codec.decode(payload, specs, cinfo.get("params") or {})
    state: dict[str, StateValue] = {}
    for it in items:
        s = it.spec
        if s.kind == "quantized":
            if it.codes is None or it.scales is None or it.codes.shape != tuple(s.shape):
                raise ArtifactError(f"tensor {s.name!r} has no (or wrongly shaped) data in the payload")
            if it.scales.shape != (s.shape[0],):
                raise ArtifactError(f"tensor {s.name!r} has {it.scales.size} scales in the payload, expected {s.shape[0]}")
            _check_code_range(it.codes, int(s.bits), f"tensor {s.name!r}", ArtifactError)
            state[s.name] = _quantized(it.codes, it.scales, int(s.bits))
        else:
            dt = _dtype_from_name(s.dtype, s.name)
            raw = it.raw if it.raw is not None else np.zeros(0, dtype=np.uint8)
            if raw.size != s.raw_nbytes:
                raise ArtifactError(f"tensor {s.name!r} has {raw.size} bytes in the payload, expected {s.raw_nbytes}")
            t = torch.from_numpy(raw.copy()).view(dt).reshape(s.shape) if raw.size else torch.empty(s.shape, dtype=dt)
            state[s.name] = t
    return Artifact(state=state, config=manifest.get("config") or {}, codec=codec.name,
                    metadata=manifest.get("metadata") or {}, manifest=manifest, file_bytes=len(data))


def load_artifact(path: Union[str, os.PathLike], *, expected_names: Optional[list] = None,
                  codec_options: Optional[dict] = None) -> Artifact:
    """Read and verify an artifact; never executes code from the file.

    ``expected_names``: tensor names the caller needs (e.g. a model's quantized weights); any
    missing one is an ``ArtifactError`` naming it. ``codec_options``: passed to the codec (for
    ``golf-rans``: ``{"backend": "reference"}`` decodes without the compiled extension).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no artifact file at {os.fspath(path)!r}")
    with open(path, "rb") as f:
        data = f.read()
    return decode_artifact(data, expected_names=expected_names, codec_options=codec_options)


def dequantize_state(state: Mapping[str, StateValue], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """name → dense tensor for ``model.load_state_dict``: ``q · s`` for quantized entries (in
    ``dtype``), passthrough tensors cast to ``dtype`` when floating point. LQER entries
    (``<matrix>.lqer.*``, :mod:`golf_fast.quant.lqer`) are folded into their matrix,
    ``W = q·s + (qA·sA) @ (qB·sB)`` computed in fp32, and do not appear in the result."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state: expected a mapping name → QuantizedTensor or tensor, got {type(state).__name__}")
    state = dict(state)
    factors = pop_state_entries(state)
    out = {}
    for name, v in state.items():
        if isinstance(v, QuantizedTensor):
            out[name] = v.dequantize(dtype)
        elif isinstance(v, torch.Tensor):
            out[name] = v.to(dtype) if v.is_floating_point() else v.clone()
        else:
            raise TypeError(f"state[{name!r}]: expected a QuantizedTensor or torch.Tensor, got {type(v).__name__}")
    if factors:  # fold in fp32, then cast once (the record's order of operations)
        missing = sorted(set(factors) - set(out))
        if missing:
            raise ArtifactError(f"LQER factors for {missing[:3]} but the state has no such matrix")
        folded = fold_lqer({n: state[n].dequantize(torch.float32) if isinstance(state[n], QuantizedTensor)
                            else out[n].float() for n in factors}, factors)
        out.update({n: w.to(dtype) for n, w in folded.items()})
    return out
