"""The artifact file: round trip, corruption cases, atomic writes, determinism."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from golf_fast.artifact import (
    ArtifactError,
    decode_artifact,
    dequantize_state,
    encode_artifact,
    load_artifact,
    save_artifact,
)
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress
from golf_fast.artifact.format import MAGIC, read_manifest
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.quant.formats import QuantizedTensor, quantize_rtn

import golf_fast

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODECS = ["golf-rans", "brotli-11", "lzma-9"]


def small_state(seed: int) -> dict:
    """Quantized matrices of three roles and bit widths (odd shapes, column structure) plus
    passthrough tensors of several dtypes, a 0-d one included."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(2):
        col = torch.rand(29, generator=g) * 2 + 0.1
        state[f"blocks.{i}.mlp.fc.weight"] = quantize_rtn(torch.randn(37, 29, generator=g) * col, 6, 11.5)
        state[f"blocks.{i}.attn.c_k.weight"] = quantize_rtn(torch.randn(1, 29, generator=g), 6, 13.0)
        state[f"blocks.{i}.attn_scale"] = torch.randn(29, generator=g).half()
    state["tok_emb.weight"] = quantize_rtn(torch.randn(53, 29, generator=g), 7, 14.0)
    state["head_bias.weight"] = quantize_rtn(torch.randn(5, 9, generator=g), 8, 20.0)
    state["skip_gates"] = torch.randn(3, 4, generator=g).bfloat16()
    state["lambdas"] = torch.randn(2, 2, 2, generator=g)
    state["step"] = torch.tensor(7, dtype=torch.int64)
    return state


def assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k, v in a.items():
        w = b[k]
        if isinstance(v, QuantizedTensor):
            assert isinstance(w, QuantizedTensor) and w.bits == v.bits, k
            assert torch.equal(w.codes, v.codes) and w.codes.dtype == torch.int8, k
            assert torch.equal(w.scales.view(torch.int16), v.scales.view(torch.int16)), k
        else:
            assert w.dtype == v.dtype and w.shape == v.shape, k
            assert torch.equal(w.reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8)), k


def rans_codec():
    return RansCodec() if golf_fast.HAS_EXT else RansCodec(backend="reference")


def codec_for(name):
    return rans_codec() if name == "golf-rans" else name


def opts_for(name):
    return None if name != "golf-rans" or golf_fast.HAS_EXT else {"backend": "reference"}


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_bit_identical(tmp_path, codec):
    state = small_state(1)
    config = {"num_layers": 2, "model_dim": 29, "name": "tiny"}
    path = tmp_path / "m.gfa"
    n = save_artifact(path, state, config, codec=codec_for(codec), metadata={"seed": 1})
    assert n == os.path.getsize(path)
    art = load_artifact(path, codec_options=opts_for(codec))
    assert_same_state(state, art.state)
    assert art.config == config and art.codec == codec and art.metadata == {"seed": 1}
    kinds = {e["name"]: (e["kind"], e.get("bits")) for e in art.manifest["tensors"]}
    assert kinds["tok_emb.weight"] == ("quantized", 7) and kinds["step"] == ("passthrough", None)
    dense = dequantize_state(art.state)
    w = state["tok_emb.weight"]
    assert torch.equal(dense["tok_emb.weight"], w.codes.float() * w.scales.float()[:, None])


def test_dataclass_config_and_default_codec(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        num_layers: int = 2
        rope_base: float = 1e4

    state = small_state(2)
    data = encode_artifact(state, Cfg(), codec=rans_codec())
    art = decode_artifact(data, codec_options=opts_for("golf-rans"))
    assert art.config == {"num_layers": 2, "rope_base": 1e4}
    assert_same_state(state, art.state)


@pytest.mark.parametrize("codec", CODECS)
def test_deterministic_bytes(codec):
    a = encode_artifact(small_state(3), {"x": 1}, codec=codec_for(codec))
    b = encode_artifact(small_state(3), {"x": 1}, codec=codec_for(codec))
    assert a == b
    c = encode_artifact(small_state(4), {"x": 1}, codec=codec_for(codec))
    assert a != c


@pytest.fixture(scope="module")
def good_bytes():
    return encode_artifact(small_state(5), {"a": 1}, codec="brotli-11")


def test_truncated_file_is_a_clear_error(good_bytes):
    n = len(good_bytes)
    for cut in (0, 5, 21, 40, n // 2, n - 33, n - 1):
        with pytest.raises(ArtifactError, match="truncated"):
            decode_artifact(good_bytes[:cut])


def test_every_flipped_byte_is_detected(good_bytes):
    rng = np.random.default_rng(0)
    positions = sorted(set(range(0, 22)) | set(rng.integers(22, len(good_bytes), 60).tolist()) |
                       {len(good_bytes) - 1})
    for pos in positions:
        bad = bytearray(good_bytes)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ArtifactError) as info:
            decode_artifact(bytes(bad))
        msg = str(info.value)
        assert any(w in msg for w in ("checksum", "magic", "version", "truncated", "trailing")), (pos, msg)
    decode_artifact(good_bytes)  # the original still loads


def _rebuild(data: bytes, manifest_edit=None, version=None) -> bytes:
    """Re-pack an artifact after editing its manifest / version, with a valid checksum."""
    _, ver, mlen, plen = struct.unpack_from("<8sHIQ", data)
    manifest = json.loads(brotli_decompress(data[22:22 + mlen], "m", 1 << 24))
    if manifest_edit:
        manifest_edit(manifest)
    mb = brotli_compress(json.dumps(manifest, sort_keys=True).encode())
    payload = data[22 + mlen:22 + mlen + plen]
    body = struct.pack("<8sHIQ", MAGIC, ver if version is None else version, len(mb), len(payload)) + mb + payload
    return body + hashlib.sha256(body).digest()


def test_unknown_version(good_bytes):
    with pytest.raises(ArtifactError, match="unknown artifact version 2"):
        decode_artifact(_rebuild(good_bytes, version=2))


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="magic"):
        decode_artifact(b"\x80\x04" + b"pickle-ish bytes " * 10)
    with pytest.raises(ArtifactError, match="path: no artifact file"):
        load_artifact(tmp_path / "absent.gfa")


@pytest.mark.parametrize("codec", CODECS)
def test_missing_tensor_in_payload(codec):
    data = encode_artifact(small_state(6), codec=codec_for(codec))

    def add_entry(m):
        m["tensors"].append({"name": "blocks.9.mlp.fc.weight", "kind": "quantized", "shape": [8, 29], "bits": 6,
                             "scheme": "sdclip-rows", "codes_dtype": "int8", "scales_dtype": "float16"})

    with pytest.raises(ArtifactError, match=r"blocks\.9\.mlp\.fc\.weight"):
        decode_artifact(_rebuild(data, add_entry), codec_options=opts_for(codec))

    def drop_entry(m):
        m["tensors"] = [t for t in m["tensors"] if t["name"] != "tok_emb.weight"]

    with pytest.raises(ArtifactError):
        decode_artifact(_rebuild(data, drop_entry), codec_options=opts_for(codec))


def test_expected_names(good_bytes):
    art = decode_artifact(good_bytes, expected_names=["tok_emb.weight", "step"])
    assert "tok_emb.weight" in art.state
    with pytest.raises(ArtifactError, match=r"missing tensor.*blocks\.7\.mlp\.fc\.weight"):
        decode_artifact(good_bytes, expected_names=["tok_emb.weight", "blocks.7.mlp.fc.weight"])


def test_manifest_is_plain_json_no_pickle(good_bytes):
    manifest, payload = read_manifest(good_bytes)
    assert manifest["format"] == "golf_fast.artifact" and manifest["codec"]["name"] == "brotli-11"
    assert len(manifest["tensors"]) == len(small_state(5))
    assert b"\x80\x04" not in good_bytes[:4]


def test_bad_inputs_name_the_argument(tmp_path):
    with pytest.raises(TypeError, match="quantized_state"):
        encode_artifact({})
    with pytest.raises(TypeError, match="quantized_state"):
        encode_artifact({"w": np.zeros(3)})
    with pytest.raises(ValueError, match="codec"):
        encode_artifact(small_state(1), codec="zip")
    with pytest.raises(TypeError, match="config"):
        encode_artifact(small_state(1), config=object())
    with pytest.raises(FileNotFoundError, match="path"):
        save_artifact(tmp_path / "no" / "dir.gfa", small_state(1), codec="lzma-9")
    q = quantize_rtn(torch.randn(4, 8, generator=torch.Generator().manual_seed(501)), 6, 12.0)
    q.codes[0, 0] = 40  # mutated after construction: out of the int6 range
    with pytest.raises(ValueError, match="codes outside"):
        encode_artifact({"w": q}, codec="lzma-9")


def test_interrupted_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.gfa"
    old = small_state(7)
    save_artifact(path, old, codec="brotli-11")
    before = path.read_bytes()

    def boom(*_a, **_k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="simulated"):
        save_artifact(path, small_state(8), codec="brotli-11")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gfa"]  # no temp file left behind
    assert_same_state(old, load_artifact(path).state)


def test_killed_writer_keeps_old_file(tmp_path):
    """A writer process killed mid-write (after the temp file has data, before the rename)."""
    path = tmp_path / "m.gfa"
    save_artifact(path, small_state(9), codec="lzma-9")
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        import golf_fast.artifact.format as fmt
        from tests_state import small_state
        real_fsync = os.fsync
        def fsync_then_die(fd):
            real_fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)  # crash between the data write and the rename
        os.fsync = fsync_then_die
        fmt.save_artifact({str(path)!r}, small_state(10), codec="lzma-9")
    """)
    helper = tmp_path / "tests_state.py"
    helper.write_text("import torch\nfrom golf_fast.quant.formats import quantize_rtn\n" +
                      textwrap.dedent(_small_state_source()))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left
    assert path.read_bytes() == before
    load_artifact(path)


def _small_state_source() -> str:
    import inspect

    return inspect.getsource(small_state)


@pytest.mark.parametrize("codec", ["golf-rans", "lzma-9"])
def test_load_under_an_address_space_limit(tmp_path, codec):
    """Reading a file reserves its size, not the format's maximum (MAX_FILE_BYTES = 16 GiB): a
    valid artifact loads in a process whose address space is capped 1 GiB above what it uses
    (``ulimit -v``, common in evaluation sandboxes), and the decoded state is the saved one."""
    path = tmp_path / "m.gfa"
    state = small_state(11)
    save_artifact(path, state, codec=codec_for(codec))
    ref = tmp_path / "ref.gfa"
    save_artifact(ref, state, codec="lzma-9")
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {REPO!r})
        import torch
        from golf_fast.artifact import load_artifact
        from golf_fast.artifact.format import MAX_FILE_BYTES
        opts = {opts_for(codec)!r}
        load_artifact({str(ref)!r})  # warm every lazy import before the cap
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
        cap = vm + (1 << 30)
        assert cap < MAX_FILE_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
            bytearray(MAX_FILE_BYTES)  # the cap is real: the old reservation fails under it
            raise SystemExit("the address-space cap did not hold")
        except MemoryError:
            pass
        art = load_artifact({str(path)!r}, codec_options=opts)
        want = load_artifact({str(ref)!r})
        for k, v in want.state.items():
            w = art.state[k]
            a = v.codes if hasattr(v, "codes") else v
            b = w.codes if hasattr(w, "codes") else w
            assert torch.equal(a, b), k
        print("ok", len(art.state))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", str(len(state))]
