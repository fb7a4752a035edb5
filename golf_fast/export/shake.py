"""Function-level tree shaking of the gathered modules: keep only the code a baked config can reach.

``shake(g, tables)`` walks the gathered sources (AST, no execution of the sources it prunes) from
``g.entry`` and keeps, per module, the top-level bindings (functions, classes, assignments,
imported names) and the methods that kept code can reach. Everything else is dropped from the
bundled source; a module no kept code imports is no longer gathered.

What is kept, conservatively (over-keeping costs bytes, under-keeping breaks a run):

* every **root** statement of a kept module, scanned for what it references: statements that run
  at import for their effect (``OP.add_backend(...)``, ``try: import triton ...``, assignments
  whose value calls anything not in :data:`PURE_CALLS` or a dataclass), top-level dunders
  (``__getattr__``), functions and classes whose decorator is not in :data:`PURE_DECORATORS`
  (registrations such as ``torch.library.custom_op``), ``from __future__`` imports;
* a **binding** (``def f``, ``class C``, ``X = <pure value>``, ``from m import y``) when kept code
  of the same module names it (``ast.Name``, annotations included, names inside a string that
  parses as an expression too: string annotations), or another module imports it
  by name (``from m import y``), or reaches it as an attribute of a module alias
  (``import golf_fast.m as mm; mm.y``, ``golf_fast.m.y``);
* in a module that **escapes** (its dotted name passed to a call, ``importlib.import_module(
  "golf_fast.x")``, except :data:`NON_IMPORTING_CALLS`; or its alias used as a value: passed,
  stored, compared), every binding whose name is in the attribute set below (a string naming a
  module anywhere else still bundles that module, as :func:`golf_fast.export.gather.gather` does);
* an unreferenced ``from golf_fast.m import y`` when ``m`` has import-time effects becomes
  ``import golf_fast.m`` (the import still runs them, ``y`` need not exist);
* in a kept class: every statement of the class body except methods; a method when it is a dunder,
  when its name is in the **attribute set** — every ``.attr`` in kept code plus every identifier
  inside a whitespace-free string constant of kept code (``getattr(self, name)`` with names from a
  table, ``__all__``-style lists) and of the baked configuration's values — when it is in
  :data:`PROTOCOL_METHODS` (``write`` of a file-like object), or when it overrides an attribute of a base class defined outside
  golf_fast (``forward`` of ``nn.Module``, ``backward`` of ``autograd.Function``, ``step`` of
  ``Optimizer``): bases are resolved statically, following golf_fast classes to their class
  statements and importing only outside modules (torch, builtins); a base that cannot be resolved
  keeps every method of the class.

Docstrings and the literal parts of f-strings are prose, never names.

Config-aware tables (:class:`Table`): a module-level ``NAME = {key: value, ...}`` dict literal
that the baked configuration selects from by one key (``golf_fast.eval.adapt.run.DRIVERS`` by
``eval.adapt.mode``, ``golf_fast.artifact.codecs.CODECS`` by ``quant.codec``) is cut to the entries
the configuration can select before the walk; a table not found in that form is left whole and
the report says so. Config-decided branches (:class:`Branch`): an ``if`` in a named function
whose test the baked configuration fixes is replaced by the branch taken (the caller states why
the value is fixed; a test not found is left alone and reported).

Nothing here touches behaviour of what is kept: a kept function's body is the same AST, unparsed
(comments and formatting are lost; the minifier drops them anyway). The report lists, per module,
what was kept and what was dropped (``golf-fast export --code-bytes --explain``).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Iterable, Optional

from golf_fast.export.gather import PACKAGE, Gathered, resolve_relative, module_file

PURE_DECORATORS = frozenset({
    "dataclass", "triton_kernel", "triton_helper", "lru_cache", "cache", "contextmanager", "no_grad",
    "inference_mode", "jit", "staticmethod", "classmethod", "property", "setter", "getter", "deleter",
    "cached_property", "wraps", "total_ordering", "overload", "abstractmethod"})
"""Decorators (last name of the decorator expression) that wrap a function without registering it anywhere."""

PURE_CALLS = frozenset({
    "getLogger", "set", "tuple", "frozenset", "dict", "list", "float", "int", "str", "bool", "sum", "min", "max",
    "sorted", "TypeVar", "compile", "Struct", "OrderedDict", "get_args", "finfo", "iinfo", "object", "RLock",
    "Lock", "ContextVar", "field", "namedtuple", "dtype", "range", "len", "zip", "enumerate"})
"""Calls (last name of the callee) whose result can be dropped with the assignment that holds it."""

PROTOCOL_METHODS = frozenset({
    "write", "writelines", "flush", "read", "readline", "readinto", "seek", "tell", "close", "fileno", "isatty",
    "keys", "items", "values", "get", "run", "start", "join", "emit", "format", "filter", "default",
    "find_spec", "exec_module", "create_module", "get_source", "get_data", "get_filename", "is_package"})
"""Methods outside code calls by name without a base class to say so (file-like objects, mappings
unpacked with ``**``, threads, logging handlers, import loaders): always kept in a kept class."""

NON_IMPORTING_CALLS = frozenset({"getLogger"})
"""Calls that take a module's dotted name without importing it (a logger's name)."""

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Table:
    """A config-selected table: ``module.name`` is a dict literal; only ``keys`` stay."""

    module: str
    name: str
    keys: frozenset


@dataclass(frozen=True)
class Branch:
    """A config-decided branch: in ``module``'s function ``function`` (``"name"`` or
    ``"Class.method"``), every ``if <test>:`` whose test is ``test`` (compared as parsed code) is
    replaced by its body (``value`` True) or its ``else`` part (False). The caller states why the
    baked configuration fixes the test's value for every run of the script."""

    module: str
    function: str
    test: str
    value: bool


@dataclass
class ModuleReport:
    """What the shaker kept and dropped in one module (top-level names, ``Class.method`` for methods)."""

    name: str
    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Shaken:
    """Shaken sources (only modules where something was dropped), the modules reached, the report."""

    sources: dict[str, str]
    modules: set[str]
    report: dict[str, ModuleReport]
    attributes: set[str]
    why: dict = field(default_factory=dict)


def _last_name(node: ast.AST) -> str:
    while isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _dotted(node: ast.AST) -> Optional[list[str]]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _is_golf(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _Binding:
    """One top-level binding of a module: ``kind`` def|class|assign|import; ``node`` the statement
    (for imports the alias), ``target`` for golf imports: (module, attribute or None)."""

    __slots__ = ("name", "kind", "node", "stmt", "target", "kept", "effect")

    def __init__(self, name, kind, node, stmt, target=None):
        self.name, self.kind, self.node, self.stmt, self.target, self.kept = name, kind, node, stmt, target, False
        self.effect: Optional[str] = None  # an unreferenced golf import kept as `import <this module>`


class _Mod:
    def __init__(self, name: str, source: str, is_package: bool):
        self.name, self.is_package = name, is_package
        self.tree = ast.parse(source, filename=name) if source.strip() else ast.Module(body=[], type_ignores=[])
        self.bindings: dict[str, list[_Binding]] = {}
        self.roots: list[ast.AST] = []
        self.classes: dict[str, ast.ClassDef] = {}
        self.kept_methods: dict[str, set[str]] = {}
        self.aliases: dict[str, list[str]] = {}  # local name → golf module(s) it is bound to
        self.effects = False
        self.escaped = False
        self.modified = False  # a table or branch was cut

    def bind(self, b: _Binding) -> None:
        self.bindings.setdefault(b.name, []).append(b)


def _pure_value(node: Optional[ast.AST], dataclasses_: set[str]) -> bool:
    if node is None:
        return True
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            callee = _last_name(n.func)
            if callee not in PURE_CALLS and callee not in dataclasses_:
                return False
        elif isinstance(n, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
    return True


def _pure_decorators(decos: Iterable[ast.AST]) -> bool:
    return all(_last_name(d) in PURE_DECORATORS for d in decos)


def _dataclass_names(mods: Iterable[_Mod]) -> set[str]:
    out = set()
    for m in mods:
        for s in m.tree.body:
            if isinstance(s, ast.ClassDef) and any(_last_name(d) == "dataclass" for d in s.decorator_list):
                if not any(isinstance(b, ast.FunctionDef) and b.name == "__post_init__" for b in s.body):
                    out.add(s.name)
    return out


def _apply_tables(mods: dict[str, _Mod], tables: Iterable[Table], report: dict[str, ModuleReport]) -> None:
    for t in tables:
        m = mods.get(t.module)
        if m is None:
            continue
        found = False
        for s in m.tree.body:
            targets = s.targets if isinstance(s, ast.Assign) else [s.target] if isinstance(s, ast.AnnAssign) else []
            if not any(isinstance(x, ast.Name) and x.id == t.name for x in targets):
                continue
            if isinstance(s.value, ast.Dict) and all(isinstance(k, ast.Constant) for k in s.value.keys):
                pairs = [(k, v) for k, v in zip(s.value.keys, s.value.values) if k.value in t.keys]
                dropped = [k.value for k in s.value.keys if k.value not in t.keys]
                s.value.keys, s.value.values = [k for k, _ in pairs], [v for _, v in pairs]
                report[t.module].notes.append(f"{t.name}: kept {sorted(t.keys)}, dropped entries {dropped}")
                found = m.modified = True
        if not found:
            report[t.module].notes.append(f"{t.name}: not a dict literal with constant keys here; kept whole")


def _find_function(tree: ast.Module, path: str) -> Optional[ast.AST]:
    scope: list = tree.body
    node = None
    for part in path.split("."):
        node = next((x for x in scope if isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and x.name == part), None)
        if node is None:
            return None
        scope = node.body
    return node


def _apply_branches(mods: dict[str, _Mod], branches: Iterable[Branch], report: dict[str, ModuleReport]) -> None:
    for b in branches:
        m = mods.get(b.module)
        if m is None:
            continue
        fn = _find_function(m.tree, b.function)
        want = ast.unparse(ast.parse(b.test, mode="eval").body)
        hits = 0

        class Cut(ast.NodeTransformer):
            def visit_If(self, node):
                self.generic_visit(node)
                if ast.unparse(node.test) != want:
                    return node
                nonlocal hits
                hits += 1
                kept = node.body if b.value else node.orelse
                return kept or ast.Pass()

        if fn is not None:
            Cut().visit(fn)
        if hits:
            m.modified = True
            report[b.module].notes.append(f"{b.function}: `if {want}` is {b.value} for this config ({hits}x)")
        else:
            report[b.module].notes.append(f"{b.function}: no `if {want}` found; kept as is")


def _index(m: _Mod, dataclasses_: set[str]) -> None:
    for s in m.tree.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if (s.name.startswith("__") and s.name.endswith("__")) or not _pure_decorators(s.decorator_list):
                m.roots.append(s)
                m.effects = m.effects or not _pure_decorators(s.decorator_list)
            else:
                m.bind(_Binding(s.name, "def", s, s))
        elif isinstance(s, ast.ClassDef):
            if _pure_decorators(s.decorator_list):
                m.bind(_Binding(s.name, "class", s, s))
                m.classes[s.name] = s
            else:
                m.roots.append(s)
                m.effects = True
        elif isinstance(s, ast.ImportFrom) and s.module == "__future__":
            m.roots.append(s)
        elif isinstance(s, ast.Import):
            for a in s.names:
                local = a.asname or a.name.split(".")[0]
                target = (a.name, None) if _is_golf(a.name) else None
                m.bind(_Binding(local, "import", a, s, target))
                if target:
                    m.aliases.setdefault(local, []).append(a.name if a.asname else a.name.split(".")[0])
        elif isinstance(s, ast.ImportFrom):
            mod = s.module if s.level == 0 else resolve_relative(m.name, m.is_package, s.level, s.module)
            for a in s.names:
                if a.name == "*":
                    m.roots.append(s)
                    continue
                local = a.asname or a.name
                target = (mod, a.name) if mod and _is_golf(mod) else None
                m.bind(_Binding(local, "import", a, s, target))
                if target and module_file(f"{mod}.{a.name}") is not None:
                    m.aliases.setdefault(local, []).append(f"{mod}.{a.name}")
        elif isinstance(s, (ast.Assign, ast.AnnAssign)):
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]
            if all(isinstance(x, ast.Name) for x in targets) and _pure_value(s.value, dataclasses_):
                for x in targets:
                    m.bind(_Binding(x.id, "assign", s, s))
            else:
                m.roots.append(s)
                m.effects = True
        elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
            continue  # a docstring
        else:
            m.roots.append(s)
            m.effects = True


class _Shaker:
    def __init__(self, g: Gathered, tables: Iterable[Table], branches: Iterable[Branch] = ()):
        self.report = {m.name: ModuleReport(m.name) for m in g.modules}
        self.mods = {m.name: _Mod(m.name, m.source, m.is_package) for m in g.modules}
        _apply_tables(self.mods, tables, self.report)
        _apply_branches(self.mods, branches, self.report)
        dcs = _dataclass_names(self.mods.values())
        for m in self.mods.values():
            _index(m, dcs)
        self.needed: set[str] = set()
        self.attrs: set[str] = set()
        self.todo: list[tuple[str, ast.AST]] = []
        self.scanned: set[int] = set()
        self.why: dict[str, str] = {}  # module → the code that first needed it
        self.kept_by: dict[str, str] = {}  # module.name → the code that first referenced it
        self.cur = ""

    # -- marking -------------------------------------------------------------------------------
    def need(self, name: str, escaped: bool = False) -> None:
        if name not in self.mods:
            return  # not gathered (compiled, or outside the package)
        m = self.mods[name]
        if escaped and not m.escaped:
            m.escaped = True
        if name in self.needed:
            return
        self.needed.add(name)
        self.why[name] = self.cur
        parts = name.split(".")
        for k in range(1, len(parts)):
            self.need(".".join(parts[:k]))
        for s in m.roots:
            self.scan(name, s)

    def ref(self, mod: str, name: str) -> None:
        """Kept code of ``mod`` (or an importer of it) refers to its top-level ``name``."""
        m = self.mods.get(mod)
        if m is None:
            return
        self.need(mod)
        bs = m.bindings.get(name)
        if bs:
            for b in bs:
                self.keep(m, b)
        elif f"{mod}.{name}" in self.mods:
            self.need(f"{mod}.{name}")

    def keep(self, m: _Mod, b: _Binding) -> None:
        if b.kept:
            return
        b.kept = True
        self.kept_by[f"{m.name}.{b.name}"] = self.cur
        if b.kind == "import":
            if b.target is not None:
                mod, attr = b.target
                if attr is None:
                    self.need(mod)
                else:
                    self.ref(mod, attr)
            return
        if b.kind == "class":
            c = b.node
            for part in c.decorator_list + c.bases + [k.value for k in c.keywords]:
                self.scan(m.name, part)
            for s in c.body:
                if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self.scan(m.name, s)
            m.kept_methods.setdefault(c.name, set())
            self._methods(m, c)
            return
        self.scan(m.name, b.node)

    def _framework_names(self, m: _Mod, c: ast.ClassDef, depth: int = 0) -> Optional[set[str]]:
        """Attribute names of ``c``'s bases defined outside golf_fast, found statically: a base bound
        in golf_fast is followed to its class statement, an outside one is imported here (torch,
        builtins). None (keep every method) when a base cannot be resolved."""
        if depth > 20:
            return None
        names: set[str] = set()
        for base in c.bases:
            if isinstance(base, ast.Subscript):  # Generic[T]
                base = base.value
            parts = _dotted(base)
            if not parts:
                return None
            got = self._base(m, parts, depth)
            if got is None:
                return None
            names |= got
        return names

    def _base(self, m: _Mod, parts: list[str], depth: int) -> Optional[set[str]]:
        head, rest = parts[0], parts[1:]
        bs = m.bindings.get(head)
        obj = None
        try:
            if not bs:
                import builtins

                if not hasattr(builtins, head):
                    return None
                obj = getattr(builtins, head)
            else:
                b = bs[-1]
                if b.kind == "class" and not rest:
                    return self._framework_names(m, b.node, depth + 1)
                if b.kind != "import":
                    return None
                if b.target is not None:  # a golf_fast class: follow it
                    mod, attr = b.target
                    path = [attr] + rest if attr is not None else rest
                    while path and f"{mod}.{path[0]}" in self.mods:
                        mod, path = f"{mod}.{path[0]}", path[1:]
                    if mod not in self.mods or len(path) != 1:
                        return None
                    return self._base(self.mods[mod], path, depth + 1)
                stmt = b.stmt
                if isinstance(stmt, ast.Import):
                    obj = importlib.import_module(b.node.name if b.node.asname else head)
                else:
                    obj = getattr(importlib.import_module(stmt.module), b.node.name)
            for r in rest:
                obj = getattr(obj, r)
        except Exception:  # noqa: BLE001 - anything unresolvable: keep all methods
            return None
        if not inspect.isclass(obj):
            return None
        return {k for cls in inspect.getmro(obj) for k in vars(cls)}

    def _methods(self, m: _Mod, c: ast.ClassDef) -> None:
        kept = m.kept_methods[c.name]
        if not hasattr(c, "_gf_framework"):
            c._gf_framework = self._framework_names(m, c)  # type: ignore[attr-defined]
        fw = c._gf_framework  # type: ignore[attr-defined]
        for s in c.body:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)) and s.name not in kept:
                dunder = s.name.startswith("__") and s.name.endswith("__")
                if dunder or fw is None or s.name in fw or s.name in self.attrs or s.name in PROTOCOL_METHODS or \
                        not _pure_decorators(s.decorator_list):
                    kept.add(s.name)
                    self.scan(m.name, s)

    def scan(self, mod: str, node: ast.AST) -> None:
        if id(node) in self.scanned:
            return
        self.scanned.add(id(node))
        self.todo.append((mod, node))

    def _scan_now(self, mod: str, node: ast.AST) -> None:
        m = self.mods[mod]
        self.cur = f"{mod}:{getattr(node, 'name', type(node).__name__)}"
        prose = set()  # string statements (docstrings) and the literal parts of f-strings: never a name
        passed = set()  # strings passed to a call (import_module("golf_fast.x")): a module passed so escapes
        aliases = {k: list(v) for k, v in m.aliases.items()}  # + module aliases bound by imports in `node`
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and _last_name(n.func) not in NON_IMPORTING_CALLS:
                passed.update(id(a) for a in n.args)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant):
                prose.add(id(n.value))
            elif isinstance(n, ast.JoinedStr):
                prose.update(id(v) for v in n.values if isinstance(v, ast.Constant))
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if _is_golf(a.name):
                        aliases.setdefault(a.asname or a.name.split(".")[0], []).append(
                            a.name if a.asname else a.name.split(".")[0])
            elif isinstance(n, ast.ImportFrom) and n.module != "__future__":
                target = n.module if n.level == 0 else resolve_relative(mod, m.is_package, n.level, n.module)
                if target and _is_golf(target):
                    for a in n.names:
                        if a.name != "*" and f"{target}.{a.name}" in self.mods:
                            aliases.setdefault(a.asname or a.name, []).append(f"{target}.{a.name}")
        for n in ast.walk(node):  # a module alias used as `alias.x` is not an escape
            if isinstance(n, ast.Attribute):
                parts = _dotted(n)
                if parts and parts[0] in aliases:
                    b = n
                    while isinstance(b, ast.Attribute):
                        b = b.value
                    b._gf_attr_base = True  # type: ignore[attr-defined]
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                if n.id in aliases and not self._under_attribute(n):
                    for target in aliases[n.id]:
                        self.need(target, escaped=True)
                self.ref(mod, n.id)
            elif isinstance(n, ast.Attribute):
                self.attrs.add(n.attr)
                self._attribute_chain(aliases, n)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in prose:
                v = n.value
                if not any(c.isspace() for c in v):  # a name, a dotted path, a comma list; not a message
                    self.attrs.update(_IDENT.findall(v))
                if len(v) < 200:  # a string annotation ("Optional[Foo]") names module-level bindings
                    try:
                        expr = ast.parse(v.strip(), mode="eval")
                    except (SyntaxError, ValueError):
                        expr = None
                    if expr is not None:
                        for x in ast.walk(expr):
                            if isinstance(x, ast.Name):
                                self.ref(mod, x.id)
                if _is_golf(v) and v in self.mods:
                    self.need(v, escaped=id(n) in passed)
            elif isinstance(n, ast.Import):  # a function-local import (its alias is in `aliases`)
                for a in n.names:
                    if _is_golf(a.name):
                        self.need(a.name)
            elif isinstance(n, ast.ImportFrom) and n.module != "__future__":
                target = n.module if n.level == 0 else resolve_relative(mod, m.is_package, n.level, n.module)
                if not target or not _is_golf(target):
                    continue
                self.need(target)
                for a in n.names:
                    if a.name == "*":
                        self.need(target, escaped=True)
                        if target in self.mods:
                            self.attrs.update(self.mods[target].bindings)
                    elif f"{target}.{a.name}" in self.mods:
                        self.need(f"{target}.{a.name}")
                        self.ref(target, a.name)
                    else:
                        self.ref(target, a.name)

    def _under_attribute(self, name_node: ast.Name) -> bool:
        return getattr(name_node, "_gf_attr_base", False)

    def _attribute_chain(self, aliases: dict, n: ast.Attribute) -> None:
        parts = _dotted(n)
        if not parts or parts[0] not in aliases:
            return
        for target in aliases[parts[0]]:
            # `import golf_fast.a.b` binds `golf_fast`; `import golf_fast.a.b as x` / `from golf_fast.a import b` bind the module
            mod = target
            rest = parts[1:]
            while rest and f"{mod}.{rest[0]}" in self.mods and not self.mods[mod].bindings.get(rest[0]):
                mod = f"{mod}.{rest[0]}"
                rest = rest[1:]
            self.need(mod)
            if rest:
                self.ref(mod, rest[0])

    # -- the walk ------------------------------------------------------------------------------
    def run(self, entry: str, names: tuple) -> None:
        self.need(entry)
        for n in names:
            if n not in self.mods[entry].bindings:
                raise ValueError(f"entry_names: {entry} has no top-level {n!r}")
            self.ref(entry, n)
        changed = True
        while changed:
            while self.todo:
                mod, node = self.todo.pop()
                self._scan_now(mod, node)
            changed = False
            before = len(self.scanned)
            for name in sorted(self.needed):
                m = self.mods[name]
                for cname, kept in list(m.kept_methods.items()):
                    self._methods(m, m.classes[cname]) if cname in m.classes else None
                if m.escaped:
                    for bname in list(m.bindings):
                        if bname in self.attrs:
                            self.ref(name, bname)
                for bs in m.bindings.values():  # an unreferenced import of a module with import-time effects
                    for b in bs:
                        if not b.kept and b.kind == "import" and b.target is not None:
                            mod, attr = b.target
                            tgt = mod if attr is None or f"{mod}.{attr}" not in self.mods else f"{mod}.{attr}"
                            if tgt in self.mods and self.mods[tgt].effects and b.effect is None:
                                b.effect = tgt
                                self.need(tgt)
            changed = bool(self.todo) or len(self.scanned) != before

    # -- output --------------------------------------------------------------------------------
    def emit(self, name: str) -> Optional[str]:
        """The shaken source of ``name`` (None when nothing was dropped)."""
        m = self.mods[name]
        rep = self.report[name]
        body, dropped = [], False
        for s in m.tree.body:
            if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
                body.append(s)
                continue
            if s in m.roots:
                body.append(s)
                rep.kept.extend(_names_of(s))
                continue
            if isinstance(s, (ast.Import, ast.ImportFrom)):
                keep = [a for a in s.names if any(b.kept and b.node is a for b in m.bindings.get(
                    a.asname or (a.name.split(".")[0] if isinstance(s, ast.Import) else a.name), []))]
                gone = [a for a in s.names if a not in keep]
                effects = sorted({b.effect for a in gone for b in m.bindings.get(
                    a.asname or (a.name.split(".")[0] if isinstance(s, ast.Import) else a.name), [])
                    if b.node is a and b.effect})
                if gone:
                    dropped = True
                    rep.dropped.extend(f"import {a.asname or a.name}" for a in gone)
                if keep:
                    s.names = keep
                    body.append(s)
                    rep.kept.extend(f"import {a.asname or a.name}" for a in keep)
                if effects:  # the module still runs at this point, for its import-time effects
                    body.append(ast.Import(names=[ast.alias(name=e) for e in effects]))
                    rep.notes.append(f"imported for its import-time effects only: {', '.join(effects)}")
                continue
            names = _names_of(s)
            if any(b.kept for n in names for b in m.bindings.get(n, []) if b.stmt is s):
                if isinstance(s, ast.ClassDef):
                    kept = m.kept_methods.get(s.name, set())
                    new = []
                    for x in s.body:
                        if isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef)) and x.name not in kept:
                            dropped = True
                            rep.dropped.append(f"{s.name}.{x.name}")
                        else:
                            new.append(x)
                    s.body = new or [ast.Pass()]
                body.append(s)
                rep.kept.extend(names)
            else:
                dropped = True
                rep.dropped.extend(names)
        if not dropped and not m.modified:
            return None
        m.tree.body = body
        return ast.unparse(ast.fix_missing_locations(m.tree))


def _names_of(s: ast.AST) -> list[str]:
    if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [s.name]
    if isinstance(s, ast.Assign):
        return [x.id for x in s.targets if isinstance(x, ast.Name)] or [ast.unparse(s)[:40]]
    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
        return [s.target.id]
    return [type(s).__name__.lower()]


def shake(g: Gathered, tables: Iterable[Table] = (), entry_names: Iterable[str] = ("main",),
          data_strings: Iterable[str] = (), branches: Iterable[Branch] = ()) -> Shaken:
    """Shake ``g`` (see the module docstring). ``tables``: config-selected tables to cut first;
    ``entry_names``: the names of ``g.entry`` the script calls (its ``__main__`` block);
    ``branches``: config-decided ``if`` statements to resolve first (:class:`Branch`);
    ``data_strings``: strings the running code reads from data (the baked configuration's values):
    their identifiers join the attribute set, as a string constant of kept code would."""
    if not isinstance(g, Gathered):
        raise TypeError(f"g: expected a Gathered, got {type(g).__name__}")
    tables = tuple(tables)
    for t in tables:
        if not isinstance(t, Table):
            raise TypeError(f"tables: expected Table items, got {type(t).__name__}")
    branches = tuple(branches)
    for b in branches:
        if not isinstance(b, Branch):
            raise TypeError(f"branches: expected Branch items, got {type(b).__name__}")
    sh = _Shaker(g, tables, branches)
    for v in data_strings:
        if not isinstance(v, str):
            raise TypeError(f"data_strings: expected str items, got {type(v).__name__}")
        sh.attrs.update(_IDENT.findall(v))
    sh.run(g.entry, tuple(entry_names))

    sources = {}
    for name in sorted(sh.needed):
        src = sh.emit(name)
        if src is not None:
            sources[name] = src
    return Shaken(sources, set(sh.needed), {n: sh.report[n] for n in sorted(sh.needed)}, sh.attrs,
                  {**sh.why, **sh.kept_by})
