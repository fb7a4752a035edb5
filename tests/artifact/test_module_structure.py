"""Import direction inside artifact/ and quant/: leaves import nothing of the package, concrete
codecs never import the registry, and no golf_fast import hides inside a function."""

from __future__ import annotations

import ast
import pathlib

import pytest

import golf_fast

PKG = pathlib.Path(golf_fast.__file__).resolve().parent
LEAVES = ("artifact/errors.py", "artifact/codec_base.py")
CONCRETE_CODECS = ("artifact/baseline_codecs.py", "artifact/rans/coder.py", "artifact/rans/codec.py",
                   "artifact/rans/fit.py", "artifact/rans/side.py", "artifact/rans/numpy_coder.py",
                   "artifact/compressors.py")


def golf_fast_imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(module, at module level?) for every ``golf_fast`` import of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("golf_fast"):
            out.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            out.extend((a.name, id(node) in top) for a in node.names if a.name.startswith("golf_fast"))
    return out


@pytest.mark.parametrize("rel", LEAVES)
def test_leaves_import_nothing_of_the_package(rel):
    assert golf_fast_imports(PKG / rel) == []


@pytest.mark.parametrize("rel", CONCRETE_CODECS)
def test_concrete_codecs_do_not_import_the_registry_or_the_file_format(rel):
    mods = {m for m, _ in golf_fast_imports(PKG / rel)}
    assert not mods & {"golf_fast.artifact", "golf_fast.artifact.codecs", "golf_fast.artifact.format"}, mods


def test_no_function_local_package_imports_in_artifact_and_quant():
    files = sorted((PKG / "artifact").glob("*.py")) + sorted((PKG / "quant").glob("*.py"))
    assert len(files) >= 10
    local = [(f.name, m) for f in files for m, at_top in golf_fast_imports(f) if not at_top]
    assert local == []
