"""Source-to-source steps of the export that shrink a module without changing what it computes.

* :func:`strip_annotations` — parameter and return annotations of functions nothing reads. Kept
  where something reads them: every class body (dataclass fields; ``typing.get_type_hints`` in
  ``golf_fast.model.typed_config``), module-level variable annotations, functions with a
  decorator (Triton reads ``tl.constexpr`` of ``@triton_kernel``/``@triton_helper`` parameters;
  ``torch.library`` decorators read signatures), and every function whose name is used as a value
  anywhere in the module (passed on, e.g. the reference given to ``KernelOp`` becomes a
  ``torch.library.custom_op`` and its schema is inferred from the annotations).
* :func:`strip_messages` — export-only, off by default: the message arguments of ``raise
  <builtin exception>(...)`` and of ``assert``. The checks stay (same condition, same exception
  type); only the text explaining a failure is gone. Exceptions of golf_fast's own classes keep
  their arguments (their constructors may need them).
"""

from __future__ import annotations

import ast
import builtins

_BUILTIN_EXCEPTIONS = frozenset(n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                                and issubclass(getattr(builtins, n), BaseException))


def _value_names(tree: ast.AST) -> set[str]:
    """Names loaded anywhere other than as the callee of a call."""
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and id(n) not in callees}


def strip_annotations(source: str, name: str = "<module>") -> str:
    """``source`` without the function annotations nothing reads (see the module docstring)."""
    if not isinstance(source, str):
        raise TypeError(f"source: expected str, got {type(source).__name__}")
    tree = ast.parse(source, filename=name)
    used = _value_names(tree)
    changed = False
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if node.decorator_list or node.name in used:
            continue
        a = node.args
        for arg in a.posonlyargs + a.args + a.kwonlyargs + [x for x in (a.vararg, a.kwarg) if x]:
            if arg.annotation is not None:
                arg.annotation = None
                changed = True
        if node.returns is not None:
            node.returns = None
            changed = True
    return ast.unparse(tree) if changed else source


def strip_messages(source: str, name: str = "<module>") -> str:
    """``source`` with ``raise <builtin exception>(msg)`` → ``raise <builtin exception>`` and
    ``assert c, msg`` → ``assert c`` (see the module docstring)."""
    if not isinstance(source, str):
        raise TypeError(f"source: expected str, got {type(source).__name__}")
    tree = ast.parse(source, filename=name)
    changed = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name) \
                and node.exc.func.id in _BUILTIN_EXCEPTIONS and not node.exc.keywords and node.exc.args:
            node.exc = node.exc.func
            changed = True
        elif isinstance(node, ast.Assert) and node.msg is not None:
            node.msg = None
            changed = True
    return ast.unparse(tree) if changed else source
