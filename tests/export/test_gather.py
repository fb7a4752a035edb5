"""The AST import walk and the bundle: what gets gathered, in which order, and that it runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from golf_fast.export.gather import gather, imports_in
from golf_fast.export.stub import ENTRY, bundle, minify_module


def _pkg(root: Path, files: dict[str, str]) -> Path:
    for rel, src in files.items():
        f = root / "golf_fast" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(src)
    return root / "golf_fast"


def test_walk_follows_every_import_form(tmp_path):
    root = _pkg(tmp_path, {
        "__init__.py": "",
        "entry.py": "from golf_fast.a import f\nfrom . import b\n"
                    "def g():\n    import golf_fast.c.d\n    return __import__('golf_fast.e')\n",
        "a.py": "from .sub.leaf import x\ndef f(): return x\n",
        "b.py": "import os\n",
        "c/__init__.py": "",
        "c/d.py": "from golf_fast import _C\n",
        "e.py": "",
        "sub/leaf.py": "x = 1\n",  # a namespace package (no __init__.py)
        "sub/dec.c": "int dec;\n",  # data files of gathered packages travel with them
        "c/dec.h": "#define X 1\n",
        "unused_pkg/__init__.py": "",
        "unused_pkg/no.c": "int no;\n",
        "unused.py": "",
        "_C.cpython-311-x86_64-linux-gnu.so": "",
    })
    g = gather("golf_fast.entry", root)
    assert set(g.names) == {"golf_fast", "golf_fast.entry", "golf_fast.a", "golf_fast.b", "golf_fast.c",
                            "golf_fast.c.d", "golf_fast.e", "golf_fast.sub", "golf_fast.sub.leaf"}
    assert g.compiled == {"golf_fast._C"}
    assert g.data == {"golf_fast/sub/dec.c": b"int dec;\n", "golf_fast/c/dec.h": b"#define X 1\n"}
    pos = {n: i for i, n in enumerate(g.names)}
    assert pos["golf_fast.sub.leaf"] < pos["golf_fast.a"] < pos["golf_fast.entry"]  # dependencies first
    assert pos["golf_fast.c"] < pos["golf_fast.c.d"]
    found, _ = imports_in("golf_fast.a", "from .sub.leaf import x\n", False, root)
    assert found == {"golf_fast.sub.leaf"}  # parents are added by gather()
    with pytest.raises(ValueError, match="entry"):
        gather("golf_fast.missing", root)


def test_real_entry_gathers_the_training_program_and_not_the_clis():
    g = gather(ENTRY)
    names = set(g.names)
    for need in ("golf_fast.train.loop", "golf_fast.quant.hessian", "golf_fast.artifact.rans.numpy_coder",
                 "golf_fast.model.gpt", "golf_fast.eval.evaluate", "golf_fast.ops.newton_schulz"):
        assert need in names, need
    assert not {"golf_fast.cli", "golf_fast.cli.train", "golf_fast.cli.export", "golf_fast.cli.bench"} & names
    assert g.compiled == {"golf_fast._C"}


def test_minify_keeps_annotations_and_drops_docstrings():
    src = 'def f(x: "tl.constexpr") -> int:\n    """doc"""\n    # comment\n    return x\n'
    out = minify_module(src, "m")
    assert "tl.constexpr" in out and "doc" not in out and "comment" not in out


def test_bundle_serves_modules_with_normal_import_semantics(tmp_path):
    g = gather(ENTRY)
    g.data["golf_fast/artifact/rans/probe.c"] = b"int probe;\n"
    text = bundle(g, '{"x": 1}')
    probe = text.replace('if __name__=="__main__":', 'if False:') + (
        "import golf_fast, golf_fast.artifact.rans.numpy_coder as rn, inspect, sys, pkgutil\n"
        "assert pkgutil.get_data('golf_fast.artifact.rans', 'probe.c') == b'int probe;\\n'\n"
        "assert pkgutil.get_data('golf_fast.artifact', 'rans/probe.c') == b'int probe;\\n'\n"
        "try:\n    pkgutil.get_data('golf_fast.artifact.rans', 'other.c'); raise SystemExit('served a missing file')\n"
        "except OSError:\n    pass\n"
        "from golf_fast.artifact.rans.numpy_coder import features_np\n"
        "assert rn.features_np is features_np and sys.modules['golf_fast.artifact.rans.numpy_coder'] is rn\n"
        "assert golf_fast.__path__ == [] and '_bundled' in rn.__file__\n"
        "assert 'def features_np' in inspect.getsource(features_np)\n"
        "print('ok', golf_fast.HAS_EXT)\n")
    f = tmp_path / "probe.py"
    f.write_text(probe)
    # -I: isolated (no cwd, no PYTHONPATH); the bundled golf_fast wins over the installed one
    r = subprocess.run([sys.executable, "-I", str(f)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok False"  # the bundled package has no compiled extension


def test_prepare_script_is_the_data_command_bundled(tmp_path):
    from golf_fast.export.stub import prepare_script

    f = tmp_path / "prepare_caseops_data.py"
    f.write_bytes(prepare_script())
    r = subprocess.run([sys.executable, "-I", str(f), "build", "--help"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage: prepare_caseops_data.py build") and "--caseops" in r.stdout
