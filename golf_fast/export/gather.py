"""Which package modules an entry point needs, found by walking imports in the source (AST).

``gather(entry)`` starts from one ``golf_fast`` module and follows, transitively:

* ``import golf_fast.x`` / ``from golf_fast.x import y`` / relative ``from .x import y``, at any
  depth of the syntax tree (function-local imports included); when ``golf_fast.x.y`` is itself a
  module it is followed too;
* string constants that name an existing package module (``importlib.import_module("golf_fast.x")``,
  ``_need("golf_fast.quant.hessian", ...)``): dynamic imports are found the same way;
* the parent packages of every module (importing ``golf_fast.a.b`` runs ``golf_fast/__init__.py``
  and ``golf_fast/a/__init__.py``).

Data files: every file whose suffix is in ``DATA_SUFFIXES`` (C sources a module compiles at run
time) directly inside the folder of a gathered package travels too, in ``Gathered.data``
(``"golf_fast/artifact/rans/x.c"`` → bytes). A module reads one with
``pkgutil.get_data(__package__, "x.c")`` (or ``__name__`` in a package's ``__init__``): the
normal loader reads the file, the exported script's loader serves the bundled bytes.

Compiled modules (``golf_fast._C``) have no Python source: they are reported in ``compiled`` and
left out; the exported code must not need them (the package has pure torch/numpy paths).

``gather`` follows every import it sees, reachable or not; the exporter gathers twice: once from
the files, then from the tree-shaken sources (``sources=``, :mod:`golf_fast.export.shake`), so a
module that only dropped code imported is no longer bundled.

The result lists the modules in dependency order (a module after everything it imports, parents
before children where there is no cycle), each with its source text.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import golf_fast

PACKAGE = "golf_fast"
DATA_SUFFIXES = (".c", ".h")


@dataclass(frozen=True)
class Module:
    """One gathered module: dotted ``name``, its ``path``, whether it is a package, its source."""

    name: str
    path: Path
    is_package: bool
    source: str


@dataclass
class Gathered:
    """Modules in dependency order, the edges found, and referenced modules without source."""

    entry: str
    modules: list[Module]
    imports: dict[str, set[str]] = field(default_factory=dict)
    compiled: set[str] = field(default_factory=set)
    data: dict[str, bytes] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modules]

    def raw_bytes(self) -> int:
        return sum(len(m.source.encode("utf-8")) for m in self.modules) + sum(len(b) for b in self.data.values())


def package_root() -> Path:
    return Path(golf_fast.__file__).resolve().parent


def module_file(name: str, root: Optional[Path] = None) -> Optional[tuple[Path, bool]]:
    """(source path, is_package) of a ``golf_fast`` module, or None if there is no ``.py`` for it."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    root = root or package_root()
    parts = name.split(".")[1:]
    base = root.joinpath(*parts) if parts else root
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if parts and base.is_dir() and any(base.glob("*.py")):
        return base, True  # a namespace package (no __init__.py): an empty module
    f = base.with_suffix(".py") if parts else None
    if f is not None and f.is_file():
        return f, False
    return None


def _compiled_exists(name: str, root: Path) -> bool:
    parts = name.split(".")[1:]
    if not parts:
        return False
    parent = root.joinpath(*parts[:-1])
    return any(parent.glob(parts[-1] + ".*.so")) or any(parent.glob(parts[-1] + ".*.pyd")) or \
        name == PACKAGE + "._C"


def resolve_relative(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_in(name: str, source: str, is_package: bool, root: Optional[Path] = None) -> tuple[set[str], set[str]]:
    """(package modules ``source`` imports, referenced modules that exist only compiled)."""
    root = root or package_root()
    tree = ast.parse(source, filename=name)
    found: set[str] = set()
    candidates: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                candidates.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            mod = node.module if node.level == 0 else resolve_relative(name, is_package, node.level, node.module)
            if mod is None:
                continue
            candidates.add(mod)
            for a in node.names:
                if a.name != "*":
                    candidates.add(f"{mod}.{a.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v.startswith(PACKAGE) and v.replace(".", "").replace("_", "").isalnum():
                candidates.add(v)
    compiled: set[str] = set()
    for c in candidates:
        if c != PACKAGE and not c.startswith(PACKAGE + "."):
            continue
        if module_file(c, root) is not None:
            found.add(c)
        elif _compiled_exists(c, root):
            compiled.add(c)
    return found, compiled


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def gather(entry: str, root: Optional[Path] = None, sources: Optional[dict[str, str]] = None) -> Gathered:
    """Every package module ``entry`` needs (see the module docstring), in dependency order.
    ``sources``: name → source text used instead of the file's (the shaken modules)."""
    if not isinstance(entry, str) or module_file(entry, root) is None:
        raise ValueError(f"entry: expected the dotted name of a golf_fast module with source, got {entry!r}")
    root = root or package_root()
    info: dict[str, Module] = {}
    edges: dict[str, set[str]] = {}
    compiled: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in info:
            continue
        path, is_pkg = module_file(name, root)  # type: ignore[misc]
        if sources is not None and name in sources:
            source = sources[name]
        else:
            source = path.read_text(encoding="utf-8") if path.is_file() else ""
        info[name] = Module(name, path, is_pkg, source)
        deps, comp = imports_in(name, source, is_pkg, root)
        deps |= set(_parents(name))
        deps.discard(name)
        edges[name] = deps
        compiled |= comp
        todo.extend(d for d in deps if d not in info)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(n: str) -> None:  # iterative-enough DFS; a cycle is broken where it is met
        state[n] = 1
        for d in sorted(edges[n], key=lambda x: (x.count("."), x)):
            if state.get(d, 0) == 0:
                visit(d)
        state[n] = 2
        order.append(n)

    visit(entry)
    for n in sorted(info):
        if state.get(n, 0) == 0:
            visit(n)
    data = {}
    for n in order:
        m = info[n]
        if m.is_package:
            folder = m.path.parent if m.path.is_file() else m.path
            for f in sorted(folder.iterdir()):
                if f.is_file() and f.suffix in DATA_SUFFIXES:
                    data["/".join(n.split(".") + [f.name])] = f.read_bytes()
    return Gathered(entry, [info[n] for n in order], edges, compiled, data)
