"""The portable golf-rans decoder (plain C compiled at load, ctypes): the same codes as the numpy
and C++ decoders, corrupt streams rejected, an atomic compile cache, the numpy fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import requires_ext
from golf_fast.artifact import encode_artifact, load_artifact
from golf_fast.artifact.codec_base import TensorData, TensorSpec
from golf_fast.artifact.errors import ArtifactError
from golf_fast.artifact.rans import portable
from golf_fast.artifact.rans.codec import RansCodec
from golf_fast.artifact.rans.fit import fit_group
from golf_fast.artifact.rans.numpy_coder import decode_slices_numpy, encode_np
from golf_fast.quant.formats import QuantizedTensor

needs_cc = pytest.mark.skipif(portable.find_compiler() is None, reason="needs a C compiler (cc/gcc/clang)")
CANDS = [(False, 4, 3, 1, 1, 0, False), (True, 4, 6, 3, 4, 2, False), (False, 3, 2, 4, 3, 5, True, 1),
         (True, 5, 1, 2, 2, 3, True)]


def codes(seed, r, c, qmax):
    rng = np.random.default_rng(seed)
    w = rng.standard_t(4, size=(r, c)) * (rng.random(c) * 2 + 0.2) * (qmax / 8)
    return np.clip(np.rint(w), -qmax, qmax).astype(np.int8)


@needs_cc
@pytest.mark.parametrize("cand", CANDS)
@pytest.mark.parametrize("slice_rows,qmax", [(1, 15), (3, 31), (16, 127), (64, 63)])
def test_portable_decodes_what_numpy_decodes(cand, slice_rows, qmax):
    mats = [codes(7 + k, 21 + 9 * k, 13 + k, qmax) for k in range(3)]  # mixed shapes: lanes of 1..4
    model, perms, _ = fit_group(mats, qmax, candidates=[cand], slice_rows=slice_rows, backend="numpy")
    oriented = [np.ascontiguousarray(q.T) if model.transpose else q for q in mats]
    if model.reorder:
        oriented = [np.ascontiguousarray(q[p]) for q, p in zip(oriented, perms)]
    streams = [s for q in oriented for s in encode_np(model, [q])]
    dims = [q.shape for q in oriented]
    got = portable.decode_slices_portable(model, streams, dims)
    ref = decode_slices_numpy(model, streams, dims)
    for g, r, q in zip(got, ref, oriented):
        assert g.dtype == np.int8 and np.array_equal(g, r) and np.array_equal(g, q)


@needs_cc
def test_portable_rejects_corrupt_streams():
    mats = [codes(31, 40, 24, 31), codes(32, 40, 24, 31)]
    model, _, _ = fit_group(mats, 31, candidates=[CANDS[1]], slice_rows=8, backend="numpy")
    oriented = [np.ascontiguousarray(q.T) if model.transpose else q for q in mats]
    streams = [s for q in oriented for s in encode_np(model, [q])]
    dims = [q.shape for q in oriented]
    rng = np.random.default_rng(5)
    for _ in range(12):
        k = int(rng.integers(len(streams)))
        bad = list(streams)
        b = bytearray(bad[k])
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        bad[k] = bytes(b)
        with pytest.raises(ArtifactError):
            portable.decode_slices_portable(model, bad, dims)
    for bad in ([streams[0][:-2]] + streams[1:], [streams[0] + b"\0\0"] + streams[1:], [b"\1\2\3"] + streams[1:]):
        with pytest.raises(ArtifactError, match="stream|rANS"):
            portable.decode_slices_portable(model, bad, dims)
    with pytest.raises(ArtifactError, match="slice streams"):
        portable.decode_slices_portable(model, streams[:-1], dims)


@needs_cc
def test_compile_cache_is_reused_and_complete(tmp_path):
    a = portable.build(tmp_path)
    stamp = a.stat().st_mtime_ns
    b = portable.build(tmp_path)
    assert a == b and b.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [a.name]  # no temporary leftovers


def test_missing_compiler_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot run the C compiler"):
        portable.build(tmp_path, compiler=str(tmp_path / "no-such-cc"))
    bad = tmp_path / "false-cc"
    bad.write_text("#!/bin/sh\necho broken >&2\nexit 1\n")
    bad.chmod(0o755)
    with pytest.raises(RuntimeError, match="failed to compile the portable decoder: broken"):
        portable.build(tmp_path, compiler=str(bad))


def _state():
    rng = np.random.default_rng(3)
    st = {}
    for i in range(2):
        st[f"blocks.{i}.mlp.fc.weight"] = QuantizedTensor(torch.from_numpy(codes(i, 24, 20, 31)),
                                                          torch.from_numpy(rng.random(24).astype(np.float16) + 0.5), 6)
    st["norm.weight"] = torch.ones(5)
    return st


@needs_cc
def test_load_artifact_portable_and_numpy_fallback(tmp_path, monkeypatch):
    st = _state()
    path = tmp_path / "m.gfa"
    path.write_bytes(encode_artifact(st, {}, codec=RansCodec(backend="numpy")))
    for dec in ("portable", "numpy", "auto"):
        art = load_artifact(path, decoder=dec)
        for k, v in st.items():
            w = art.state[k]
            assert torch.equal(v.codes, w.codes) if isinstance(v, QuantizedTensor) else torch.equal(v, w)
    with pytest.raises(ValueError, match="decoder"):
        load_artifact(path, decoder="fast")
    # no working compiler: the portable path falls back to numpy and still decodes
    monkeypatch.setattr(portable, "_STATE", {"lib": None, "why": "test: no compiler"})
    art = load_artifact(path, decoder="portable")
    assert torch.equal(art.state["blocks.1.mlp.fc.weight"].codes, st["blocks.1.mlp.fc.weight"].codes)
    # a codec other than golf-rans ignores the decoder choice
    path2 = tmp_path / "b.gfa"
    path2.write_bytes(encode_artifact(st, {}, codec="brotli-11"))
    assert torch.equal(load_artifact(path2, decoder="portable").state["norm.weight"], st["norm.weight"])


@requires_ext
@needs_cc
def test_portable_matches_cpp_on_a_record_shaped_group():
    mats = [codes(90 + k, 512, 128, 31) for k in range(2)]
    items = [TensorData(TensorSpec(f"blocks.{k}.attn.c_q.weight", "quantized", (512, 128), "int8", 6),
                        codes=q, scales=np.ones(512, np.float16)) for k, q in enumerate(mats)]
    payload, params = RansCodec(backend="cpp").encode(items)
    specs = [it.spec for it in items]
    a = RansCodec(backend="cpp").decode(payload, specs, params)
    b = RansCodec(backend="portable").decode(payload, specs, params)
    for x, y, q in zip(a, b, mats):
        assert np.array_equal(x.codes, y.codes) and np.array_equal(y.codes, q)


@needs_cc
def test_auto_decodes_with_the_portable_decoder_when_the_extension_is_missing(monkeypatch):
    """What an exported train_gpt.py runs (no golf_fast._C): ``auto`` decoding takes the portable C
    decoder, not the ~100x slower numpy one; encoding without the extension stays numpy."""
    from golf_fast.artifact.rans import codec as rans_codec

    monkeypatch.setattr(rans_codec, "load_extension", lambda: (False, "test: no extension"))
    assert rans_codec._resolve_backend("auto", decoding=True) == "portable"
    assert rans_codec._resolve_backend("auto", decoding=False) == "numpy"
    monkeypatch.setattr(portable, "_STATE", {"lib": None, "why": "test: no compiler"})
    assert rans_codec._resolve_backend("auto", decoding=True) == "numpy"
