"""A fresh virtual environment (for running an exported ``train_gpt.py`` as a submitter would) with torch, numpy, sentencepiece and brotli but not golf_fast.

``python -m venv --without-pip`` (no system site-packages) plus one ``.pth`` file naming a folder
of symlinks: one per top-level file or folder of the wanted distributions and their declared
dependencies (from ``importlib.metadata``: each distribution's RECORD). golf_fast (installed
editable in the development environment) is not among them, so ``import golf_fast`` fails in it;
:func:`make_clean_env` checks that it does.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import venv
from pathlib import Path

WANTED = ("torch", "numpy", "sentencepiece", "brotli")


def _closure(names) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        key = re.sub(r"[-_.]+", "-", n).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(n)
        except md.PackageNotFoundError:
            continue
        seen.add(key)
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)", req)
            if m:
                todo.append(m.group(1))
    return seen


def _top_level(dist_name: str) -> set[Path]:
    dist = md.distribution(dist_name)
    out: set[Path] = set()
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if not parts or parts[0] in ("..", "bin", "__pycache__") or parts[0].endswith(".pth"):
            continue
        out.add(Path(dist.locate_file(parts[0])))
    return out


def make_clean_env(where: os.PathLike, wanted=WANTED) -> Path:
    """Create the environment under ``where``; returns its python. Raises if golf_fast imports there."""
    if not isinstance(where, (str, os.PathLike)):
        raise TypeError(f"where: expected a folder path, got {type(where).__name__}")
    if isinstance(wanted, str) or not all(isinstance(w, str) and w for w in wanted):
        raise ValueError(f"wanted: expected distribution names, got {wanted!r}")
    where = Path(where)
    links = where / "site"
    links.mkdir(parents=True, exist_ok=True)
    for name in sorted(_closure(wanted)):
        if name.startswith("golf"):
            continue
        for top in _top_level(name):
            dst = links / top.name
            if top.exists() and not dst.exists() and not top.name.startswith(("golf_fast", "__editable__")):
                os.symlink(top, dst)
    env_dir = where / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "clean_deps.pth").write_text(str(links) + "\n")
    probe = subprocess.run([str(py), "-c", "import golf_fast"], capture_output=True, text=True, cwd=str(where),
                           env=clean_environ())
    if probe.returncode == 0:
        raise RuntimeError("the clean environment can import golf_fast")
    return py


def clean_environ(extra=None) -> dict[str, str]:
    """os.environ without PYTHONPATH/PYTHONHOME/PYTHONSTARTUP (and with ``extra``)."""
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra: expected a dict of environment variables, got {type(extra).__name__}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(extra or {})
    return env
