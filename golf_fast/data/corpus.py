"""The embedded default corpus: text that ships with every Python installation.

Documents are the docstrings of the standard library's own source files — each module, class and
function docstring is one document, read with :mod:`ast` (the files are parsed, never imported or
executed) — plus the help topics of ``pydoc_data.topics`` (one document per topic). Test packages
and third-party ``site-packages`` are left out. The document order is the sorted file order,
then shuffled with a fixed seed so the first documents (the validation split) are a fair sample.

:func:`default_dataset` builds a tokenizer and shards from it once per (Python build, vocabulary
size, extraction version) under a cache directory and returns the folder; later calls reuse it.
"""

from __future__ import annotations

import ast
import hashlib
import os
import random
import sys
import sysconfig
import warnings
from pathlib import Path
from typing import Callable, Optional

CORPUS_VERSION = 1
"""Bumped whenever the extraction rules change, so stale caches are rebuilt."""


def _skip(rel: tuple[str, ...]) -> bool:
    top = rel[0]
    return (top in ("site-packages", "dist-packages") or top.startswith("test") or "tests" in rel
            or "idle_test" in rel or "__pycache__" in rel)


def stdlib_documents(stdlib_dir: Optional[Path] = None) -> list[str]:
    """All docstrings of the standard library's .py files plus the pydoc topics, in a fixed order."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"stdlib_dir: {str(root)!r} is not a directory")
    docs: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if _skip(path.relative_to(root).parts):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escape sequences in old sources
                tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # e.g. lib2to3 test data written in Python 2
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and doc.strip():
                    docs.append(doc.strip())
    try:
        from pydoc_data.topics import topics  # a plain dict of strings
        docs.extend(topics[k].strip() for k in sorted(topics) if topics[k].strip())
    except ImportError:  # stripped-down Pythons may omit pydoc_data
        pass
    return docs


def default_corpus(seed: int = 0) -> list[str]:
    """:func:`stdlib_documents` shuffled with ``seed`` (the first ones become the val split)."""
    docs = stdlib_documents()
    random.Random(seed).shuffle(docs)
    return docs


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "golf_fast"


def default_dataset(vocab_size: int = 1024, *, cache_dir: Optional[os.PathLike] = None,
                    val_fraction: float = 0.05, caseops: bool = False,
                    progress: Optional[Callable[[str], None]] = None) -> Path:
    """Build (once) and return the folder with ``tokenizer.model`` and shards of the default corpus.

    ``caseops``: the CaseOps variant (transformed text, a tokenizer with the control pieces, and
    validation byte sidecars; :func:`golf_fast.data.build.build_dataset`), cached separately.
    """
    from golf_fast.data.build import build_dataset

    if not isinstance(vocab_size, int) or vocab_size < 300:
        raise ValueError(f"vocab_size: expected an int >= 300 (byte fallback needs 256 + specials), got {vocab_size!r}")
    # The standard library of one Python build never changes, so its version string and location
    # identify the corpus without re-reading it (which takes ~10 s).
    ident = f"{sys.version}|{sysconfig.get_paths()['stdlib']}|{CORPUS_VERSION}"
    key = (f"stdlib-py{sys.version_info[0]}{sys.version_info[1]}-v{vocab_size}-{'caseops-' if caseops else ''}"
           f"{hashlib.sha256(ident.encode()).hexdigest()[:12]}")
    out = Path(cache_dir or default_cache_dir()) / key
    if (out / "COMPLETE").is_file():
        return out
    docs = default_corpus()
    val_docs = max(1, int(round(val_fraction * len(docs))))
    build_dataset(docs, out, vocab_size=vocab_size, val_docs=val_docs, caseops=caseops, progress=progress)
    return out
