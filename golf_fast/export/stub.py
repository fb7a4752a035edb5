"""One self-contained ``train_gpt.py`` from the gathered modules: bundle, minify, wrap, verify.

Layout of the bundle (before the outer wrapper)::

    _M = {"golf_fast": (1, "<minified source>"), "golf_fast.ops.dispatch": (0, "..."), ...}
    class _B(MetaPathFinder, Loader): ...   # serves _M: each module is its source string executed
    sys.meta_path.insert(0, _B())           # into its own module object under its own name
    if __name__ == "__main__":
        from golf_fast.export.entry import main; raise SystemExit(main(<baked config JSON>))

plus ``_F = {"golf_fast/artifact/rans/x.c": b"...", ...}``, the data files
(:data:`golf_fast.export.gather.DATA_SUFFIXES`) served by the loader's ``get_data`` (what
``pkgutil.get_data`` calls); so ``from golf_fast.x import y`` and relative imports keep their normal semantics (one module
object per name in ``sys.modules``, packages with ``__path__``); the bundled copy takes priority
over any installed ``golf_fast``, and a ``golf_fast`` module that is not bundled (the compiled
``golf_fast._C``) is not importable even where the package is installed. Each module's source is registered in ``linecache`` under a
``.py`` file name, so ``inspect.getsource`` works (Triton's ``@jit`` and tracebacks need it).
Modules are listed in dependency order.

What is bundled (:func:`build_script`): the modules :func:`golf_fast.export.gather.gather` finds
from :data:`ENTRY`, tree-shaken for the baked configuration (:func:`shaken_gather`,
:mod:`golf_fast.export.shake`: only the functions, classes, methods and assignments the script's
``main`` can reach, the adaptation driver of ``eval.adapt.mode`` and the codec of ``quant.codec``,
the ``if`` statements :func:`config_branches` decides); modules no kept code imports are gone.
``golf-fast export --code-bytes --explain`` lists what was kept and dropped.

Then per module (:func:`lean_source`, the default :class:`Lean`): function annotations nothing
reads are dropped (:func:`golf_fast.export.lean.strip_annotations`; kept in class bodies, on
decorated functions and on functions passed as values, which ``torch.library.custom_op``,
Triton's ``tl.constexpr`` and dataclasses read), and python-minifier removes docstrings and
comments and renames locals (never globals, class attributes or keyword-passable parameters;
never in a module with Triton kernels, :func:`has_triton_kernels`); no literal hoisting, asserts
and error messages kept. The bundle is then wrapped by ``golf_fast.artifact.code_bytes.wrap_source`` in its brotli and lzma
forms, with the payload as a latin-1 str literal or base85 (each verified to compile and to
decompress to its source), and the smallest is kept. ``Lean(messages=False)`` (measurement only:
``golf-fast export --code-bytes --strip-messages``) also drops the messages of builtin exceptions
and asserts; no written script uses it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from typing import Optional

from golf_fast.artifact.code_bytes import CodeBytesError, wrap_source
from golf_fast.export.gather import Gathered, gather
from golf_fast.export.lean import strip_annotations, strip_messages
from golf_fast.export.shake import Branch, Shaken, Table, shake
from golf_fast.train.config import TrainConfig

ENTRY = "golf_fast.export.entry"
WRAPPERS = ("minify-brotli-latin1", "minify-lzma-latin1", "minify-brotli", "minify-lzma")

_BOOT = '''import sys as _s,importlib.abc as _a,importlib.util as _u,linecache as _l,os as _o
_D=_o.path.dirname(_o.path.abspath(_s.argv[0] if _s.argv and _s.argv[0] else "."))
_R=_o.path.join(_D,"_bundled")
def _f(n):return _o.path.join(_R,*n.split("."),"__init__.py") if _M[n][0] else _o.path.join(_R,*n.split("."))+".py"
class _B(_a.MetaPathFinder,_a.Loader):
 def find_spec(self,n,p=None,t=None):
  if n in _M:return _u.spec_from_loader(n,self,origin=_f(n),is_package=bool(_M[n][0]))
  if n.split(".")[0]=="golf_fast":raise ModuleNotFoundError(f"{n} is not part of this script",name=n)
 def create_module(self,s):return None
 def get_source(self,n):return _M[n][1]
 def get_data(self,p):
  k=_o.path.relpath(p,_R).replace(_o.sep,"/")
  if k not in _F:raise OSError(f"{p} is not part of this script")
  return _F[k]
 def exec_module(self,m):
  n=m.__name__;f=_f(n);c=_M[n][1];m.__file__=f
  _l.cache[f]=(len(c),None,c.splitlines(True),f)
  exec(compile(c,f,"exec",dont_inherit=True),m.__dict__)
_s.meta_path.insert(0,_B())
'''
_MAIN = '''if __name__=="__main__":
 from golf_fast.export.entry import main
 raise SystemExit(main(_C))
'''
PREPARE_MAIN = '''if __name__=="__main__":
 import argparse
 from golf_fast.cli.data import add_arguments,run
 p=argparse.ArgumentParser(prog="prepare_caseops_data.py",description="golf-fast data: CaseOps text, tokenizer shards, byte sidecars")
 add_arguments(p)
 raise SystemExit(run(p.parse_args()))
'''


class ExportError(RuntimeError):
    """The script could not be built or did not verify."""


@dataclass(frozen=True)
class ModuleBytes:
    """One bundled module's (or data file's) share: raw source, minified, and minified alone
    compressed with brotli-11 (an indication: the script compresses all modules as one stream,
    so the counted total is less than the sum of these)."""

    name: str
    raw: int
    minified: int
    compressed_alone: int


@dataclass(frozen=True)
class ExportedScript:
    """The file to write (``text``) and its sizes: raw sources, minified bundle, counted file."""

    text: bytes
    wrapper: str
    modules: list[str]
    raw_bytes: int
    bundle_bytes: int
    minified_bytes: int
    counted: int
    compiled_left_out: list[str]
    per_module: tuple = ()
    shaken: Optional[Shaken] = None


@dataclass(frozen=True)
class Lean:
    """How far the exporter shrinks each module: ``rename_locals`` (:func:`minify_module`),
    ``annotations`` False drops the function annotations nothing reads
    (:func:`golf_fast.export.lean.strip_annotations`), ``messages`` False drops the messages of
    builtin exceptions and asserts (:func:`golf_fast.export.lean.strip_messages`; off by default:
    the checks stay, their explanations go)."""

    rename_locals: bool = True
    annotations: bool = False
    messages: bool = True


FULL = Lean(rename_locals=False, annotations=True, messages=True)
"""No source-level shrinking beyond minification (the sources as tested, docstrings dropped)."""


KERNEL_DECORATORS = frozenset({"triton_kernel", "triton_helper", "jit", "autotune", "heuristics"})


def has_triton_kernels(source: str, name: str = "<module>") -> bool:
    """True when a function of ``source`` is decorated as a Triton kernel or device function. Such a
    module is never renamed: python-minifier's ``rename_locals`` also binds a parameter used
    several times to a short local (``A=BLOCK_R``), and a ``tl.constexpr`` parameter copied to a
    local is no longer a constexpr (``tl.arange(0, A)`` fails to compile)."""
    import ast

    for n in ast.walk(ast.parse(source, filename=name)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in n.decorator_list:
                while isinstance(d, ast.Call):
                    d = d.func
                last = d.attr if isinstance(d, ast.Attribute) else d.id if isinstance(d, ast.Name) else ""
                if last in KERNEL_DECORATORS:
                    return True
    return False


def lean_source(source: str, name: str, lean: Lean = Lean()) -> str:
    """One module's source as the exported script carries it: the :class:`Lean` steps, then minified
    (a module with Triton kernels is not renamed: :func:`has_triton_kernels`)."""
    if not isinstance(lean, Lean):
        raise TypeError(f"lean: expected a Lean, got {type(lean).__name__}")
    if not source.strip():
        return ""
    rename = lean.rename_locals and not has_triton_kernels(source, name)
    if not lean.annotations:
        source = strip_annotations(source, name)
    if not lean.messages:
        source = strip_messages(source, name)
    return minify_module(source, name, rename)


def bake_config(cfg: TrainConfig) -> TrainConfig:
    """The configuration as baked into a script: seed, run name and data paths come from the
    challenge's environment at run time, so they are normalized (the script's bytes then do not
    depend on which seed or machine produced them)."""
    data = cfg.data
    dd = f"./data/datasets/{os.path.basename(data.data_dir.rstrip('/'))}" if data.data_dir else ""
    tok = f"./data/tokenizers/{os.path.basename(data.tokenizer)}" if data.tokenizer else ""
    return dataclasses.replace(
        cfg, data=dataclasses.replace(data, data_dir=dd, tokenizer=tok, cache_dir=""),
        run=dataclasses.replace(cfg.run, name="", seed=1337, out_dir="runs"))


def minify_module(source: str, name: str, rename_locals: bool = False) -> str:
    """One module's source minified without changing behaviour (see the module docstring).
    ``rename_locals``: shorten local names (never a global, a class attribute or a parameter a
    caller can pass by keyword: only locals, ``*args``/``**kwargs`` and ``self``/``cls``)."""
    if not isinstance(source, str) or not isinstance(name, str):
        raise TypeError(f"source, name: expected str, got {type(source).__name__}, {type(name).__name__}")
    try:
        import python_minifier
    except ImportError as exc:
        raise ExportError("export needs python-minifier (pip install python-minifier)") from exc
    keep = python_minifier.RemoveAnnotationsOptions(remove_variable_annotations=False, remove_return_annotations=False,
                                                    remove_argument_annotations=False,
                                                    remove_class_attribute_annotations=False)
    try:
        return python_minifier.minify(source, filename=name, remove_annotations=keep, remove_pass=True,
                                      remove_literal_statements=True, combine_imports=True, hoist_literals=False,
                                      rename_locals=bool(rename_locals), rename_globals=False, remove_object_base=True,
                                      convert_posargs_to_args=False, remove_asserts=False, remove_debug=False,
                                      remove_explicit_return_none=True, remove_builtin_exception_brackets=False,
                                      constant_folding=False, prefer_single_line=True, remove_dead_branches=False)
    except Exception as exc:  # python-minifier raises many types
        raise ExportError(f"python-minifier failed on {name}: {exc!r}") from exc


def module_bytes(g: Gathered, lean: Lean = FULL) -> list[ModuleBytes]:
    """Per module and data file of ``g``: raw, minified and alone-compressed bytes, largest first."""
    import brotli

    rows = []
    for m in g.modules:
        src = lean_source(m.source, m.name, lean)
        rows.append(ModuleBytes(m.name, len(m.source.encode("utf-8")), len(src.encode("utf-8")),
                                len(brotli.compress(src.encode("utf-8"), quality=11)) if src else 0))
    for k, v in g.data.items():
        rows.append(ModuleBytes(k, len(v), len(v), len(brotli.compress(v, quality=11))))
    return sorted(rows, key=lambda r: (-r.compressed_alone, r.name))


def bundle(g: Gathered, config_json: str, header: str = "", main: str = _MAIN, minify: bool = True,
           lean: Lean = FULL) -> str:
    """The bundle's Python source (before the outer wrapper). ``main``: the ``__main__`` block
    (default: the training program of :data:`ENTRY` with the baked ``config_json``); ``minify``:
    minify each module (False: the sources as they are, docstrings included) after the
    :class:`Lean` steps ``lean``."""
    if not isinstance(config_json, str):
        raise TypeError(f"config_json: expected a JSON str, got {type(config_json).__name__}")
    if main == _MAIN and g.entry != ENTRY:
        raise ValueError(f"g: expected modules gathered from {ENTRY}, got {g.entry!r}")
    lines = [f"# {ln}" for ln in header.splitlines()]
    lines.append("_M={")
    for m in g.modules:
        src = lean_source(m.source, m.name, lean) if minify else m.source
        lines.append(f"{m.name!r}:({int(m.is_package)},{src!r}),")
    lines.append("}")
    lines.append("_F={" + "".join(f"{k!r}:{v!r}," for k, v in sorted(g.data.items())) + "}")
    lines.append(f"_C={config_json!r}")
    return "\n".join(lines) + "\n" + _BOOT + main


@functools.lru_cache(maxsize=2)
def prepare_script(header: str = "") -> bytes:
    """``prepare_caseops_data.py`` of a records folder: the package's ``golf-fast data`` command
    (``build --caseops``: CaseOps text, SentencePiece shards, validation byte sidecars) bundled
    the same way as ``train_gpt.py`` (sources not minified: its bytes are not counted) and wrapped
    in LZMA. Cached per process (the package's sources do not change while it runs)."""
    g = gather("golf_fast.cli.data")
    return wrap_source(bundle(g, "null", header, main=PREPARE_MAIN, minify=False).encode("utf-8"), "lzma",
                       "prepare_caseops_data.py")[0]


def config_tables(cfg: TrainConfig) -> tuple[Table, ...]:
    """The tables ``cfg`` selects from by one value (see :class:`golf_fast.export.shake.Table`): the
    adaptation driver of ``eval.adapt.mode`` and the codec of ``quant.codec``."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    from golf_fast.artifact.codecs import DEFAULT_CODEC

    return (Table("golf_fast.eval.adapt.run", "DRIVERS", frozenset({cfg.eval.adapt.mode})),
            Table("golf_fast.artifact.codecs", "CODECS", frozenset({cfg.quant.codec or DEFAULT_CODEC})))


def config_branches(cfg: TrainConfig) -> tuple[Branch, ...]:
    """The ``if`` statements the baked ``cfg`` decides for every run of the script
    (see :class:`golf_fast.export.shake.Branch`):

    * ``train.loop.run``: ``adapt.research == "prequant"`` (``adapt = cfg.eval.adapt``; the
      challenge's environment never sets ``eval.adapt``);
    * ``train.batches.resolve_data``: ``cfg.data.data_dir`` when the baked folder is set (the
      environment's ``DATA_PATH`` can only replace it by another non-empty path), so the embedded
      corpus builder is not needed."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    out = [Branch("golf_fast.train.loop", "run", "adapt.research == 'prequant'", cfg.eval.adapt.research == "prequant")]
    if bake_config(cfg).data.data_dir:
        out.append(Branch("golf_fast.train.batches", "resolve_data", "cfg.data.data_dir", True))
    return tuple(out)


def _strings(d) -> list[str]:
    if isinstance(d, str):
        return [d]
    if isinstance(d, dict):
        return [s for k, v in d.items() for s in _strings(k) + _strings(v)]
    if isinstance(d, (list, tuple)):
        return [s for v in d for s in _strings(v)]
    return []


def shaken_gather(cfg: TrainConfig) -> tuple[Gathered, Shaken]:
    """The modules of :data:`ENTRY` after function-level tree shaking for ``cfg``
    (:func:`golf_fast.export.shake.shake`), gathered again from the shaken sources (a module no
    kept code imports is gone), and the shaker's report."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    sh = shake(gather(ENTRY), config_tables(cfg), entry_names=("main",), data_strings=_strings(cfg.to_dict()),
               branches=config_branches(cfg))
    g = gather(ENTRY, sources=sh.sources)
    extra = set(g.names) - sh.modules
    if extra:  # the walk and the gather disagree: never ship a module whose code was not walked
        raise ExportError(f"tree shaking missed modules the shaken sources import: {sorted(extra)}")
    return g, sh


def build_script(cfg: TrainConfig, header: str = "", wrappers: tuple = WRAPPERS,
                 per_module: bool = False, shaken: bool = True, lean: Lean = Lean()) -> ExportedScript:
    """Gather (and tree-shake for ``cfg`` unless ``shaken`` is False), bundle and wrap ``cfg``'s
    script; the smallest verified wrapper wins. ``per_module``: also fill
    ``ExportedScript.per_module`` (:func:`module_bytes`); ``lean``: the source steps (:class:`Lean`)."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg: expected a TrainConfig, got {type(cfg).__name__}")
    if not isinstance(wrappers, tuple) or not wrappers:
        raise ValueError(f"wrappers: expected a non-empty tuple of wrapper names, got {wrappers!r}")
    if shaken:
        g, sh = shaken_gather(cfg)
    else:
        g, sh = gather(ENTRY), None
    baked = bake_config(cfg)
    text = bundle(g, json.dumps(baked.to_dict(), separators=(",", ":"), sort_keys=True), header, lean=lean)
    src = text.encode("utf-8")
    best: Optional[tuple[bytes, str, int]] = None
    errors = []
    for w in wrappers:
        try:
            wrapped, minified = wrap_source(src, w, "train_gpt.py")
        except CodeBytesError as exc:
            errors.append(f"{w}: {exc}")
            continue
        if best is None or len(wrapped) < len(best[0]):
            best = (wrapped, w, int(minified or len(src)))
    if best is None:
        raise ExportError("no wrapper could be built: " + "; ".join(errors))
    return ExportedScript(best[0], best[1], g.names, g.raw_bytes(), len(src), best[2], len(best[0]),
                          sorted(g.compiled), tuple(module_bytes(g, lean)) if per_module else (), sh)
