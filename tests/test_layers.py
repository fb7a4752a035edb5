"""The package's import structure: no cycles between modules, imports only go down the layers.

The layer order is the one in the README's "Layout" section (lowest first):

0. ``golf_fast._availability``, ``golf_fast.distributed``, ``golf_fast.ops`` (kernels, dispatch)
1. ``golf_fast.quant``, ``golf_fast.optim``, ``golf_fast.nn``
2. ``golf_fast.artifact``
3. ``golf_fast.model``, ``golf_fast.data``
4. ``golf_fast.eval``, ``golf_fast.train``
5. ``golf_fast.export``, ``golf_fast.bench``, ``golf_fast.tools``
6. ``golf_fast.cli`` (the one front door: one module per subcommand; nothing imports it)

Every ``import`` statement counts, wherever it is (module level, inside a function, under
``TYPE_CHECKING``): a function-local import hides a cycle from Python, not from this test.
``golf_fast/__init__.py`` is the public facade: it re-exports layers 0-1 (kernels, quantizer,
optimizers, modules), so it sits between layers 1 and 2: a module of layer 2 or above may import it,
a module of layers 0-1 may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / "golf_fast"

LAYERS: list[tuple[str, ...]] = [
    ("_availability", "distributed", "ops"),
    ("quant", "optim", "nn"),
    ("artifact",),
    ("model", "data"),
    ("eval", "train"),
    ("export", "bench", "tools"),
    ("cli",),
]


def _layer_of(module: str) -> int:
    parts = module.split(".")
    assert parts[0] == "golf_fast", module
    top = parts[1] if len(parts) > 1 else ""
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module {module} is in no layer: add its top-level name to LAYERS "
                         f"and to the README's layout section")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG_DIR.rglob("*.py"))}


def _resolve(node: ast.ImportFrom, module: str, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the golf_fast modules it imports (``from a import b`` counts ``a.b`` when that
    is a module, else ``a``)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for t in targets:
                if t == "golf_fast" or t.startswith("golf_fast."):
                    # the longest prefix that is a module of ours
                    while t not in modules and "." in t:
                        t = t.rsplit(".", 1)[0]
                    if t != name:
                        deps.add(t)
        graph[name] = deps
    return graph


def _package_inits(module: str, modules: dict[str, Path]) -> set[str]:
    """The package __init__ modules Python runs before ``module`` (excluding the facade)."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules}


GRAPH = _imports(_modules())


def test_the_graph_is_not_empty():
    # guard against a walker that silently finds nothing
    assert len(GRAPH) > 40
    assert "golf_fast.ops.dispatch" in GRAPH["golf_fast.quant.gptq"] or any(
        d.startswith("golf_fast.ops") for d in GRAPH["golf_fast.quant.gptq"])


def test_every_module_is_in_a_layer():
    for m in GRAPH:
        if m != "golf_fast":
            _layer_of(m)


def test_no_import_goes_up_the_layers():
    bad = []
    for m, deps in GRAPH.items():
        if m == "golf_fast":
            continue
        for d in deps:
            if d == "golf_fast":
                if _layer_of(m) <= 1:
                    bad.append(f"{m} (layer {_layer_of(m)}) imports the package facade golf_fast, which "
                               f"imports layers 0-1: import the defining module")
            elif _layer_of(d) > _layer_of(m):
                bad.append(f"{m} (layer {_layer_of(m)}) imports {d} (layer {_layer_of(d)})")
    assert not bad, "imports that go up the layer order:\n" + "\n".join(sorted(bad))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    color: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if color.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if color.get(d) is None:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if color.get(n) is None:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycles_between_modules():
    graph = {m: set(d) for m, d in GRAPH.items() if m != "golf_fast"}
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycles_between_top_level_packages():
    top = lambda m: ".".join(m.split(".")[:2])  # noqa: E731
    graph: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        if m == "golf_fast":
            continue
        graph.setdefault(top(m), set()).update(top(d) for d in deps if top(d) != top(m) and d != "golf_fast")
    cycle = _find_cycle(graph)
    assert cycle is None, "cycle between packages: " + " -> ".join(cycle)


def test_no_module_imports_private_names_of_another():
    bad = []
    modules = _modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                if not base.startswith("golf_fast") or base == name:
                    continue
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__") and f"{base}.{a.name}" not in modules:
                        # a module's own kernels (_x_kernel) imported by its family's launcher are the
                        # one allowed case: same family, `<family>_kernels` -> `<family>`
                        fam_ok = base.endswith("_kernels") and name.startswith(base[: -len("_kernels")])
                        if not fam_ok:
                            bad.append(f"{name} imports {base}.{a.name}")
    assert not bad, "private names imported across modules:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("src,expected", [
    ("from golf_fast.train import loop", {"golf_fast.train.loop"}),
    ("def f():\n    from golf_fast.tools.sm90 import KernelConfig", {"golf_fast.tools.sm90"}),
])
def test_the_walker_sees_local_and_submodule_imports(tmp_path, src, expected):
    # the walker must see a function-local import (that is how cycles were hidden)
    mods = {"golf_fast.train.loop": tmp_path / "a.py", "golf_fast.tools.sm90": tmp_path / "b.py",
            "golf_fast.ops.x": tmp_path / "x.py"}
    for p in mods.values():
        p.write_text("")
    mods["golf_fast.ops.x"].write_text(src)
    assert _imports(mods)["golf_fast.ops.x"] == expected
