"""Hand-made hostile artifacts (checksums recomputed): each attack of issue 13 gets a clear
``ArtifactError`` naming the field, before any big allocation; loading and saving paths."""

from __future__ import annotations

import copy
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import golf_fast
from golf_fast.artifact import ArtifactError, decode_artifact, encode_artifact, load_artifact, save_artifact
from golf_fast.artifact.atomic import TMP_SUFFIX
from golf_fast.artifact.compressors import brotli_compress, brotli_decompress, lzma_compress, lzma_decompress
from golf_fast.artifact.untrusted import json_depth, parse_json

from fuzz_harness import run_cases
from test_artifact_fuzz import fuzz_state, join_manifest, rans_payload, rans_side, split

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
requires_ext = pytest.mark.skipif(not golf_fast.HAS_EXT, reason="needs golf_fast._C (the C++ rANS decoder)")


def _rans_codec():
    from golf_fast.artifact.rans.codec import RansCodec

    return RansCodec() if golf_fast.HAS_EXT else RansCodec(backend="reference")


def _opts():
    return None if golf_fast.HAS_EXT else {"backend": "reference"}


@pytest.fixture(scope="module")
def artifacts():
    state = fuzz_state(1311)
    return {name: encode_artifact(state, {"vocab_size": 64}, codec=_rans_codec() if name == "golf-rans" else name)
            for name in ("golf-rans", "brotli-11", "lzma-9")}


def _side_edit(data: bytes, key: str, value) -> bytes:
    man, payload = split(data)
    header, tables, rest = rans_side(payload)
    header["groups"][0][key] = value
    return join_manifest(man, rans_payload(header, tables, rest))


@pytest.mark.parametrize("key,value,match", [
    ("ainit", -(2 ** 31), "ainit"), ("ainit", -1, "ainit"), ("ainit", 2 ** 40, "ainit"), ("rinit", -5, "rinit"),
    ("cs", 9, "cs"), ("rs", 1.5, "rs"), ("thr_a", [3, 1], "thr_a"), ("thr_b", list(range(100)), "thr_b"),
    ("ck", 99, "ck"), ("slice_rows", 0, "slice_rows"), ("prob_bits", 30, "prob_bits"), ("transpose", "no", "transpose"),
    ("qmax", 3, "qmax"), ("tensors", [0.0, 1.0], "tensors"),
])
def test_side_information_fields_are_checked(artifacts, key, value, match):
    with pytest.raises(ArtifactError, match=match):
        decode_artifact(_side_edit(artifacts["golf-rans"], key, value), codec_options=_opts())


@requires_ext
@pytest.mark.parametrize("ainit,rinit", [(-(2 ** 31), 0), (-1, 0), (0, -1), (2 ** 40, 0)])
def test_cpp_decoder_refuses_out_of_range_accumulators(ainit, rinit):
    """The C++ op checks the values it indexes with, whatever the Python side passed."""
    luta = torch.zeros(8, dtype=torch.uint8)
    lutc = torch.zeros(3, dtype=torch.uint8)
    freq = torch.tensor([[1 << 13, 1 << 13, 0]], dtype=torch.int32)
    cum = torch.tensor([[0, 1 << 13, 1 << 14]], dtype=torch.int32)
    stream = torch.tensor([0, 0, 1, 0], dtype=torch.uint8)
    args = dict(streams=[stream], rows=[1], cols=[4], slice_rows=256, luta=luta, lutb=luta, lutc=lutc, nb=1, nc=1,
                freq=freq, cum=cum, prob_bits=14, qmax=1, cs=4, rs=3, ainit=ainit, rinit=rinit)
    op = torch.ops.golf_fast._rans_decode_cpp
    names = [a.name for a in op.default._schema.arguments]
    extra = {n: 0 for n in names if n not in args}  # settings a newer context model added (e.g. rmode 0)
    with pytest.raises(RuntimeError, match="ainit|rinit"):
        op(*[{**args, **extra}[n] for n in names])
    with pytest.raises(RuntimeError, match="ainit|rinit"):  # the encoder side checks them too
        torch.ops.golf_fast._rans_encode_cpp(*[{**args, **extra, "codes": [torch.zeros(1, 4, dtype=torch.int8)]}[a.name]
                                               for a in torch.ops.golf_fast._rans_encode_cpp.default._schema.arguments])


def gib_of_zeros_brotli() -> bytes:
    """~1 KB of brotli that inflates to 1 GiB of zeros (compressed in 16 MiB pieces)."""
    import brotli

    c = brotli.Compressor(quality=5)
    piece = bytes(1 << 24)
    return b"".join(c.process(piece) for _ in range(64)) + c.finish()


def test_brotli_bomb_is_stopped_at_the_declared_size(artifacts):
    man, _ = split(artifacts["brotli-11"])
    bomb = gib_of_zeros_brotli()
    assert len(bomb) < 8192
    data = join_manifest(man, bomb)
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        decode_artifact(data)
    # in a child limited to 256 MiB more address space: the old loader inflated all of it (3.4 GB peak)
    res = run_cases([data], decode_artifact, ArtifactError, extra_bytes=256 << 20, alarm_s=30)
    assert res[0]["kind"] == "clean", res


def test_lzma_and_brotli_limits_exact():
    data = np.random.default_rng(1312).integers(0, 4, 200_000, dtype=np.uint8).tobytes()
    for comp, dec in ((brotli_compress, brotli_decompress), (lzma_compress, lzma_decompress)):
        z = comp(data)
        assert dec(z, "s", len(data)) == data
        with pytest.raises(ArtifactError, match="more than the 199999 bytes"):
            dec(z, "s", len(data) - 1)
        with pytest.raises(ArtifactError, match="corrupt"):
            dec(z[: len(z) // 2], "s", len(data))


def test_manifest_attacks(artifacts):
    man, payload = split(artifacts["brotli-11"])

    def edited(fn):
        m = copy.deepcopy(man)
        fn(m)
        return join_manifest(m, payload)

    cases = [
        (lambda m: m["codec"]["params"].__setitem__("shuffle", 10 ** 9), "shuffle"),
        (lambda m: m["tensors"][0].__setitem__("shape", [1 << 20, 1 << 20]), "declares tensors"),
        (lambda m: m["tensors"][0].__setitem__("shape", [-3, 4]), r"shape\[0\]"),
        (lambda m: m["tensors"][0].__setitem__("name", 5), "name"),
        (lambda m: m["tensors"][0].__setitem__("name", ""), "name"),
        (lambda m: m["tensors"][0].__setitem__("bits", "6"), "bits"),
        (lambda m: m["tensors"][-1].__setitem__("dtype", "Tensor"), "dtype"),
        (lambda m: m.__setitem__("tensors", {}), "tensors"),
        (lambda m: m["codec"].__setitem__("name", ["brotli-11"]), "codec name"),
        (lambda m: m.__setitem__("config", [1]), "config"),
    ]
    for fn, match in cases:
        with pytest.raises(ArtifactError, match=match):
            decode_artifact(edited(fn))


def test_deep_json_and_constants_are_refused():
    assert json_depth(b'{"a": "[[[[", "b": [[1]]}') == 3
    with pytest.raises(ArtifactError, match="nested 100000 levels"):
        parse_json(b"[" * 100000 + b"]" * 100000, "manifest")
    with pytest.raises(ArtifactError, match="NaN"):
        parse_json(b'{"a": NaN}', "manifest")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        parse_json(b'{"a": ' + b"9" * 5000 + b"}", "manifest")  # int too long to parse


def test_decoded_size_cap_is_adjustable(artifacts):
    data = artifacts["lzma-9"]
    with pytest.raises(ArtifactError, match="max_decoded_bytes"):
        decode_artifact(data, max_decoded_bytes=100)
    assert decode_artifact(data, max_decoded_bytes=1 << 20).state
    with pytest.raises(TypeError, match="max_decoded_bytes"):
        decode_artifact(data, max_decoded_bytes=-1)


def test_load_paths_give_artifact_errors(tmp_path):
    with pytest.raises(ArtifactError, match="is a folder"):
        load_artifact(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ArtifactError, match="not a regular file"):
            load_artifact("/dev/zero")
    with pytest.raises(ArtifactError, match="no artifact file"):
        load_artifact(tmp_path / "absent.gfa")


def test_save_respects_umask_and_refuses_folders(tmp_path):
    state = fuzz_state(1313)
    old = os.umask(0o022)
    try:
        save_artifact(tmp_path / "a.gfa", state, codec="lzma-9")
        os.umask(0o077)
        save_artifact(tmp_path / "b.gfa", state, codec="lzma-9")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.gfa").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.gfa").stat().st_mode) == 0o600
    (tmp_path / "dir.gfa").mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder"):
        save_artifact(tmp_path / "dir.gfa", state, codec="lzma-9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gfa", "b.gfa", "dir.gfa"]


@pytest.mark.parametrize("anonymous", [True, False])
def test_killed_writer_leaves_no_temp_file(tmp_path, anonymous):
    """SIGKILL between the data write and the rename. With O_TMPFILE nothing has a name yet; without
    it the named temp file is removed by the next writer to the folder (its owner pid is dead)."""
    path = tmp_path / "m.gfa"
    save_artifact(path, fuzz_state(1314), codec="lzma-9")
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {REPO!r})
        sys.path.insert(0, {os.path.join(REPO, "tests", "artifact")!r})
        import golf_fast.artifact.atomic as atomic
        from golf_fast.artifact import save_artifact
        from test_artifact_fuzz import fuzz_state
        if not {anonymous!r}:
            atomic._open_anonymous = lambda folder: -1
        real_fsync = os.fsync
        def fsync_then_die(fd):
            real_fsync(fd)
            os.kill(os.getpid(), signal.SIGKILL)
        os.fsync = fsync_then_die
        save_artifact({str(path)!r}, fuzz_state(1315), codec="lzma-9")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert path.read_bytes() == before
    left = [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)]
    if anonymous:
        assert left == []
        return
    assert len(left) == 1 and left[0].stat().st_size > 0  # the fallback's named temp file, owner dead
    save_artifact(tmp_path / "other.gfa", fuzz_state(1316), codec="lzma-9")  # the next writer cleans up
    assert [p for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)] == []
    load_artifact(path)


def test_a_live_writers_temp_file_is_kept(tmp_path):
    live = tmp_path / f".x.gfa.{os.getpid()}.abc{TMP_SUFFIX}"
    live.write_bytes(b"in progress")
    save_artifact(tmp_path / "y.gfa", fuzz_state(1317), codec="lzma-9")
    assert live.exists()


def test_missing_extension_decodes_in_numpy_and_asking_for_cpp_is_an_artifact_error(artifacts, monkeypatch):
    import golf_fast.artifact.rans.codec as rc

    want = decode_artifact(artifacts["golf-rans"], codec_options=_opts())
    monkeypatch.setattr(rc, "load_extension", lambda: (False, "golf_fast._C is not built (simulated)"))
    got = decode_artifact(artifacts["golf-rans"])  # backend auto: the numpy coder (an exported submission's path)
    assert set(got.state) == set(want.state)
    for name, v in want.state.items():
        w = got.state[name]
        if hasattr(v, "codes"):
            assert torch.equal(v.codes, w.codes) and torch.equal(v.scales, w.scales), name
        else:
            assert torch.equal(v, w), name
    with pytest.raises(ArtifactError, match="golf-rans: golf-rans needs the compiled extension.*simulated"):
        decode_artifact(artifacts["golf-rans"], codec_options={"backend": "cpp"})


def test_codec_parameters_are_checked(artifacts):
    for name, key, value in (("golf-rans", "prob_bits", 2 ** 63), ("brotli-11", "quality", [0]),
                             ("lzma-9", "preset", ""), ("lzma-9", "shuffle", 0), ("brotli-11", "evil", 1)):
        man, payload = split(artifacts[name])
        man["codec"]["params"][key] = value
        with pytest.raises(ArtifactError, match=f"{name}: (codec parameter {key}|unknown codec parameter)"):
            decode_artifact(join_manifest(man, payload), codec_options=_opts() if name == "golf-rans" else None)


def test_brotli_without_output_limit_still_stops_a_bomb(monkeypatch):
    """brotli < 1.2 has no ``output_buffer_limit``: input is fed in small pieces instead."""
    import golf_fast.artifact.compressors as comp

    monkeypatch.setattr(comp, "_has_output_limit", lambda: False)
    data = np.random.default_rng(1318).integers(0, 3, 100_000, dtype=np.uint8).tobytes()
    z = brotli_compress(data)
    assert comp.brotli_decompress(z, "s", len(data)) == data
    with pytest.raises(ArtifactError, match="corrupt"):
        comp.brotli_decompress(z[:-3], "s", len(data))
    with pytest.raises(ArtifactError, match="decompresses to more than"):
        comp.brotli_decompress(gib_of_zeros_brotli(), "s", 1 << 20)
