"""Code bytes: raw counting, self-extracting wrappers that really run, loud failures."""

from __future__ import annotations

import builtins
import subprocess
import sys

import pytest

from golf_fast.artifact import code_bytes
from golf_fast.artifact.code_bytes import CodeBytesError

SCRIPT = '''"""A tiny submission script."""
import math


def area(r):
    """Circle area."""
    assert r >= 0
    return math.pi * r * r


if __name__ == "__main__":
    total = sum(area(r) for r in range(10))
    print(f"total={total:.6f}")
'''


@pytest.fixture
def script(tmp_path):
    p = tmp_path / "train_gpt.py"
    p.write_text(SCRIPT * 1 + "\n# padding so compression pays off\n" + "x = 1\n" * 200)
    return p


def test_raw_count_is_file_size(script):
    cb = code_bytes(script)
    assert cb.counted == cb.raw == script.stat().st_size and cb.wrapper is None and cb.minified is None
    assert cb.counted_source == script.read_bytes()


@pytest.mark.parametrize("wrapper", ["lzma", "minify-brotli", "minify-lzma"])
def test_wrapped_script_runs_and_is_smaller(script, tmp_path, wrapper):
    cb = code_bytes(script, wrapper=wrapper)
    assert cb.counted == len(cb.counted_source) < cb.raw
    if wrapper.startswith("minify"):
        assert cb.minified is not None and cb.minified < cb.raw
    wrapped = tmp_path / "wrapped.py"
    wrapped.write_bytes(cb.counted_source)
    want = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    got = subprocess.run([sys.executable, str(wrapped)], capture_output=True, text=True, timeout=60)
    assert want.returncode == 0 and got.returncode == 0, got.stderr
    assert got.stdout == want.stdout == "total=895.353906\n"
    assert cb.wrapper in cb.describe()


def test_fails_loudly(tmp_path, script, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    with pytest.raises(CodeBytesError, match="not valid Python"):
        code_bytes(bad, wrapper="lzma")
    assert code_bytes(bad).counted == bad.stat().st_size  # raw counting does not parse
    with pytest.raises(ValueError, match="wrapper"):
        code_bytes(script, wrapper="zip")
    with pytest.raises(FileNotFoundError, match="path"):
        code_bytes(tmp_path / "nope.py")
    real_import = builtins.__import__

    def no_minifier(name, *a, **k):
        if name == "python_minifier":
            raise ImportError("simulated: not installed")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_minifier)
    with pytest.raises(CodeBytesError, match="python-minifier"):
        code_bytes(script, wrapper="minify-brotli")


def test_latin1_literal_round_trips_every_byte(tmp_path):
    import random
    import subprocess
    import sys

    from golf_fast.artifact.code_bytes import _LATIN1_HEAD, latin1_literal

    rng = random.Random(1717)
    blob = bytes(range(256)) * 3 + bytes(rng.randrange(256) for _ in range(4000)) + b"\\\\\"\r\n\x00" + b"\x001"
    f = tmp_path / "lit.py"
    f.write_bytes(_LATIN1_HEAD + b'x = "' + latin1_literal(blob) + b'"\nimport sys\n'
                  b'sys.stdout.buffer.write(x.encode("latin-1"))\n')
    out = subprocess.run([sys.executable, str(f)], capture_output=True, timeout=60).stdout
    assert out == blob
    assert len(latin1_literal(blob)) < 1.05 * len(blob)  # vs 1.25 for base85


@pytest.mark.parametrize("wrapper", ["minify-brotli-latin1", "minify-lzma-latin1"])
def test_latin1_wrappers_run_and_beat_base85(tmp_path, wrapper):
    import subprocess
    import sys

    src = "\n".join(f"def f{i}(x):\n    '''doc {i}'''\n    return x * {i} + {i * 7 % 13}" for i in range(300))
    src += "\nprint(sum(f(2) for f in [" + ",".join(f"f{i}" for i in range(300)) + "]))\n"
    p = tmp_path / "s.py"
    p.write_text(src)
    cb = code_bytes(p, wrapper=wrapper)
    b85 = code_bytes(p, wrapper=wrapper[:-len("-latin1")])
    assert cb.counted < b85.counted
    w = tmp_path / "w.py"
    w.write_bytes(cb.counted_source)
    expect = str(sum(i * 2 + i * 7 % 13 for i in range(300)))
    assert subprocess.run([sys.executable, str(w)], capture_output=True, text=True, timeout=60).stdout.strip() == expect
