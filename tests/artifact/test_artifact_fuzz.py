"""Fuzzing the artifact loader: hundreds of hostile edits, each with a valid (recomputed) checksum.

Edits: every manifest field and every golf-rans side-information field replaced by hostile values
(negative, huge, ±2^31, floats, strings, null, bools, empty and nested containers) or removed;
random byte flips and truncations in the compressed sections; hand-made attacks (a brotli bomb,
deep JSON nesting, huge shapes). Loads run in forked children under an address-space limit and an
alarm (tests/artifact/fuzz_harness.py): the test fails on any crash, hang, memory blow-up or
exception other than ``ArtifactError``, and prints the figures.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import struct

import pytest
import torch

import golf_fast
from golf_fast.artifact import ArtifactError, decode_artifact, encode_artifact
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress
from golf_fast.artifact.format import MAGIC
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.quant.formats import QuantizedTensor, quantize_rtn

from fuzz_harness import run_cases, summary
from rans_items import near_copy_rows

HOSTILE = [-1, -(2 ** 31), 2 ** 31, 2 ** 63, 10 ** 30, 0, 1, 7, 255, 65537, 1.5, -0.0, 1e308, "x", "", None, True,
           False, [], {}, [0], [-1], [2 ** 40], [[[[1]]]], {"a": 1}, "blocks.0.mlp.fc.weight", "float16", "int8"]


def fuzz_state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(2):
        col = torch.rand(23, generator=g) * 2 + 0.1
        state[f"blocks.{i}.mlp.fc.weight"] = quantize_rtn(torch.randn(19, 23, generator=g) * col, 6, 11.5)
    state["tok_emb.weight"] = quantize_rtn(torch.randn(300, 12, generator=g), 8, 14.0)
    state["blocks.0.attn_scale"] = torch.randn(23, generator=g).half()
    state["lambdas"] = torch.randn(2, 3, generator=g)
    return state


def split(data: bytes) -> tuple[dict, bytes]:
    _, _, mlen, plen = struct.unpack_from("<8sHIQ", data)
    manifest = json.loads(brotli_decompress(data[22:22 + mlen], "m", 1 << 24))
    return manifest, data[22 + mlen:22 + mlen + plen]


def join(manifest_bytes: bytes, payload: bytes, version: int = 1) -> bytes:
    body = struct.pack("<8sHIQ", MAGIC, version, len(manifest_bytes), len(payload)) + manifest_bytes + payload
    return body + hashlib.sha256(body).digest()


def join_manifest(manifest, payload: bytes) -> bytes:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest, sort_keys=True).encode()
    return join(brotli_compress(raw, quality=5), payload)


def paths(obj, prefix=()):
    """Every path (tuple of keys / indices) into a JSON value, containers included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # the first few entries of long lists (tables, stream lengths)
            yield from paths(v, prefix + (i,))


def edited(obj, path, value, remove=False):
    out = copy.deepcopy(obj)
    if not path:
        return value
    parent = out
    for k in path[:-1]:
        parent = parent[k]
    if remove:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def field_edits(obj, rng: random.Random, per_path: int):
    """(edited object) for every path: ``per_path`` hostile values, plus its removal."""
    for p in list(paths(obj)):
        if not p:
            continue
        for v in rng.sample(HOSTILE, per_path):
            yield edited(obj, p, v)
        yield edited(obj, p, None, remove=True)


def rans_side(payload: bytes) -> tuple[dict, bytes, bytes]:
    (side_len,) = struct.unpack_from("<I", payload)
    side = brotli_decompress(payload[4:4 + side_len], "s", 1 << 26)
    (hlen,) = struct.unpack_from("<I", side)
    return json.loads(side[4:4 + hlen]), side[4 + hlen:], payload[4 + side_len:]


def rans_payload(header, tables: bytes, rest: bytes) -> bytes:
    hjson = header if isinstance(header, bytes) else json.dumps(header, sort_keys=True).encode()
    side = brotli_compress(struct.pack("<I", len(hjson)) + hjson + tables, quality=5)
    return struct.pack("<I", len(side)) + side + rest


def byte_edits(data: bytes, rng: random.Random, n: int):
    _, _, mlen, plen = struct.unpack_from("<8sHIQ", data)
    body = bytearray(data[:-32])
    for _ in range(n):
        b = bytearray(body)
        kind = rng.randrange(3)
        if kind == 0:  # flip bytes in the manifest or the payload
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(22, len(b))] ^= 1 << rng.randrange(8)
            yield bytes(b) + hashlib.sha256(b).digest()
        elif kind == 1:  # cut the payload, header lengths fixed up
            payload = bytes(b[22 + mlen:])
            cut = payload[:rng.randrange(len(payload))]
            yield join(bytes(b[22:22 + mlen]), cut)
        else:  # overwrite a run of payload bytes with 0x00 / 0xff
            pos = rng.randrange(22 + mlen, len(b))
            b[pos:pos + rng.randint(1, 16)] = bytes([rng.choice((0, 255))]) * len(b[pos:pos + 16])
            yield bytes(b[:len(body)]) + hashlib.sha256(bytes(b[:len(body)])).digest()


def attacks(base: dict[str, bytes]) -> list[bytes]:
    out = []
    man, payload = split(base["brotli-11"])
    bomb = brotli_compress(bytes(1 << 28), quality=5)  # a few hundred bytes inflating to 256 MiB
    out.append(join_manifest(man, bomb))
    huge = copy.deepcopy(man)
    huge["tensors"].append({"name": "big", "kind": "passthrough", "shape": [1 << 20, 1 << 20], "dtype": "float32"})
    out.append(join_manifest(huge, payload))
    deep = b'{"format":"golf_fast.artifact","x":' + b"[" * 100000 + b"]" * 100000 + b"}"
    out.append(join_manifest(deep, payload))
    out.append(join(brotli_compress(bytes(1 << 26), quality=5), payload))  # manifest: 64 MiB of zeros
    man_r, payload_r = split(base["golf-rans"])
    header, tables, rest = rans_side(payload_r)
    for key, v in (("ainit", -(2 ** 31)), ("ainit", -1), ("rinit", 2 ** 40), ("cs", 60), ("slice_rows", 0),
                   ("thr_a", list(range(300))), ("ck", 10 ** 6)):
        h = copy.deepcopy(header)
        h["groups"][0][key] = v
        out.append(join_manifest(man_r, rans_payload(h, tables, rest)))
    shuffle = copy.deepcopy(man)
    shuffle["codec"]["params"]["shuffle"] = 10 ** 9
    out.append(join_manifest(shuffle, payload))
    return out


def build_cases(seed: int) -> tuple[list[bytes], dict[str, bytes]]:
    rng = random.Random(seed)
    state = fuzz_state(seed)
    rans = RansCodec() if golf_fast.HAS_EXT else RansCodec(backend="reference")
    base = {name: encode_artifact(state, {"vocab_size": 64}, codec=rans if name == "golf-rans" else name)
            for name in ("golf-rans", "brotli-11", "lzma-9")}
    cases: list[bytes] = []
    for name, data in base.items():
        man, payload = split(data)
        cases += [join_manifest(m, payload) for m in field_edits(man, rng, 2 if name == "golf-rans" else 1)]
        cases += list(byte_edits(data, rng, 30))
    man_r, payload_r = split(base["golf-rans"])
    header, tables, rest = rans_side(payload_r)
    cases += [join_manifest(man_r, rans_payload(h, tables, rest)) for h in field_edits(header, rng, 3)]
    side_bytes = bytearray(tables)
    for _ in range(20):  # corrupt frequency tables / row orders inside the side information
        t = bytearray(side_bytes)
        for _ in range(rng.randint(1, 6)):
            t[rng.randrange(len(t))] = rng.randrange(256)
        cases.append(join_manifest(man_r, rans_payload(header, bytes(t), rest)))
    cases += attacks(base)
    return cases, base


def rans_cases(seed: int) -> list[bytes]:
    """golf-rans side-information edits and byte edits only (for the pure-Python decoder)."""
    rng = random.Random(seed)
    data = encode_artifact(fuzz_state(seed), {"vocab_size": 64}, codec=RansCodec(backend="reference"))
    man, payload = split(data)
    header, tables, rest = rans_side(payload)
    cases = [join_manifest(man, rans_payload(h, tables, rest)) for h in field_edits(header, rng, 2)]
    for _ in range(15):
        t = bytearray(tables)
        t[rng.randrange(len(t))] = rng.randrange(256)
        cases.append(join_manifest(man, rans_payload(header, bytes(t), rest)))
    return cases + list(byte_edits(data, rng, 20))


def _load(data: bytes):
    opts = None if golf_fast.HAS_EXT else {"backend": "reference"}
    return decode_artifact(data, codec_options=opts)


def test_fuzz_artifact_loader_only_raises_artifact_error():
    cases, base = build_cases(1301)
    for name, data in base.items():  # the unmutated artifacts load
        _load(data)
    assert len(cases) >= 300
    results = run_cases(cases, _load, ArtifactError, batch=48, extra_bytes=256 << 20)  # 256 MiB over the fork
    counts = summary(results)
    print(f"\nfuzz: {len(cases)} mutations: {dict(counts)}")
    bad = [r for r in results if r["kind"] not in ("clean", "accepted")]
    assert not bad, [(r["case"], r["kind"], r["what"]) for r in bad[:10]]
    assert counts["clean"] >= 0.8 * len(cases)  # most edits must be caught, not silently accepted


def test_harness_detects_crash_hang_and_foreign_errors():
    """The harness itself: a segfault, a hang and a foreign exception are each reported."""
    import ctypes
    import time

    def load(data: bytes):
        if data == b"segv":
            ctypes.string_at(0)
        if data == b"hang":
            time.sleep(60)
        if data == b"type":
            raise TypeError("foreign")
        if data == b"mem":
            bytearray(1 << 34)
        raise ArtifactError("clean")

    cases = [b"ok"] * 5 + [b"segv"] + [b"ok"] * 3 + [b"type", b"mem", b"hang"]
    results = run_cases(cases, load, ArtifactError, batch=8, alarm_s=2)
    kinds = [r["kind"] for r in results]
    assert kinds[5] == "crash" and kinds[9] == "foreign" and kinds[10] == "blowup" and kinds[11] == "hang"
    assert all(k == "clean" for i, k in enumerate(kinds) if i not in (5, 9, 10, 11))


def _python_backends() -> list[str]:
    """The decoders that need no extension: ``reference``, and ``numpy`` where the codec has it."""
    from golf_fast.artifact.rans.codec import _resolve_backend

    out = []
    for b in ("reference", "numpy"):
        try:
            _resolve_backend(b)
            out.append(b)
        except ValueError:
            pass
    return out


def test_fuzz_python_decoders_only_raise_artifact_error():
    """The same for the golf-rans decoders written in Python (``reference``, ``numpy`` if present)."""
    cases = rans_cases(1302)
    for backend in _python_backends():
        results = run_cases(cases, lambda d: decode_artifact(d, codec_options={"backend": backend}), ArtifactError,
                            batch=64, extra_bytes=256 << 20)
        counts = summary(results)
        print(f"\nfuzz ({backend} decoder): {len(cases)} mutations: {dict(counts)}")
        bad = [r for r in results if r["kind"] not in ("clean", "accepted")]
        assert not bad, (backend, [(r["case"], r["kind"], r["what"]) for r in bad[:10]])


def near_copy_cases(seed: int, codec: RansCodec, rows: int = 96, cols: int = 24, per_path: int = 3,
                    n_tables: int = 20) -> tuple[list[bytes], bytes, dict]:
    """Hostile edits of an artifact whose embedding has near-copy rows (``codec`` decides how it is
    coded): every side-information header field, the tables and row orders, bytes; also the unmutated
    artifact and its header."""
    rng = random.Random(seed)
    state = fuzz_state(seed)
    codes = torch.from_numpy(near_copy_rows(seed, r=rows, c=cols))
    state["tok_emb.weight"] = QuantizedTensor(codes, torch.full((rows,), 0.01, dtype=torch.float16), 7)
    data = encode_artifact(state, {"vocab_size": 64}, codec=codec)
    man, payload = split(data)
    header, tables, rest = rans_side(payload)
    cases = [join_manifest(man, rans_payload(h, tables, rest)) for h in field_edits(header, rng, per_path)]
    for _ in range(n_tables):
        t = bytearray(tables)
        for _ in range(rng.randint(1, 4)):
            t[rng.randrange(len(t))] = rng.randrange(256)
        cases.append(join_manifest(man, rans_payload(header, bytes(t), rest)))
    return cases + list(byte_edits(data, rng, 30)), data, header


def assert_only_artifact_errors(cases: list[bytes], data: bytes, label: str, extra_bytes: int) -> None:
    """The unmutated artifact loads and every case loads or raises ArtifactError (mostly the latter),
    with the default and the portable decoder."""
    for dec in ("auto", "portable"):
        decode_artifact(data, decoder=dec)
        results = run_cases(cases, lambda d: decode_artifact(d, decoder=dec), ArtifactError, batch=64,
                            extra_bytes=extra_bytes)
        counts = summary(results)
        print(f"\nfuzz ({label}, decoder={dec}): {len(cases)} mutations: {dict(counts)}")
        bad = [r for r in results if r["kind"] not in ("clean", "accepted")]
        assert not bad, (dec, [(r["case"], r["kind"], r["what"]) for r in bad[:10]])
        assert counts["clean"] >= 0.7 * len(cases)


def test_fuzz_row_delta_artifacts_only_raise_artifact_error():
    """Side information version 4: a row-delta group (``rowdelta``, its row orders)."""
    codec = RansCodec(backend="auto" if golf_fast.HAS_EXT else "reference",
                      candidates=[(False, 4, 4, 4, 4, 8, True, 1)], context_mixing=False)
    cases, data, header = near_copy_cases(1303, codec)
    assert header["v"] == 4 and any(g["rowdelta"] for g in header["groups"])  # the format under test
    assert_only_artifact_errors(cases, data, "row deltas", 256 << 20)


@pytest.mark.parametrize("flag", [0, 2])
def test_fuzz_embedding_coder_artifacts_only_raise_artifact_error(flag):
    """Side information version 6: an embedding-coder group (the ``cm`` field, its row orders, the
    trivial table, the stream bytes), in each binarization the encoder writes."""
    from golf_fast.artifact.rans import embcm

    if embcm.library() is None:
        pytest.skip("the embedding coder needs a C compiler to encode")
    codec = RansCodec(candidates=[(False, 4, 4, 4, 4, 8, True, 1)])
    codec.CM_FLAGS = (flag,)
    cases, data, header = near_copy_cases(1304 + flag, codec, rows=64, cols=16, per_path=2, n_tables=10)
    assert header["v"] == 6 and any(g["cm"] == flag for g in header["groups"])  # the format under test
    assert_only_artifact_errors(cases, data, "embedding coder", 512 << 20)
