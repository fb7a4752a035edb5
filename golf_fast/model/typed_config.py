"""Validation of typed config dataclasses: every field checked against its annotation and ranges.

A config field is checked by what it declares, so a field added later is checked too:

* its type annotation: ``bool``, ``int`` (not a bool), ``float`` (an int is accepted; always
  finite unless the field's metadata says ``finite=False``), ``str``, or ``Literal[...]`` (the
  value must be one of the choices), or a nested config dataclass (checked recursively);
* its range, if any: ``field(default=..., metadata=bounds(lo, hi))`` — inclusive bounds, either
  may be ``None``; ``bounds(0, 1, hi_open=True)`` for [0, 1).

``check_config(obj, "section")`` raises ``ValueError`` naming the key (``optim.beta1: expected a
number in [0, 1), got 5.0``); ``parse_field(key, typ, text)`` parses a command-line string by the
annotation; ``build_config(cls, mapping, key)`` rebuilds a config (nested ones included) from its
``dataclasses.asdict`` form, an unknown key being an error. Used by ``ModelConfig`` (model layer) and ``TrainConfig`` (train layer).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal, Optional

_MISSING = object()


def bounds(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False, hi_open: bool = False,
           finite: bool = True) -> dict[str, Any]:
    """Field metadata: the value must lie in [lo, hi] (``lo_open``/``hi_open`` exclude the end)."""
    return {"range": (lo, hi, lo_open, hi_open), "finite": finite}


def is_literal(typ: Any) -> bool:
    return typing.get_origin(typ) is Literal


def type_name(typ: Any) -> str:
    if is_literal(typ):
        return "|".join(str(a) for a in typing.get_args(typ))
    return getattr(typ, "__name__", str(typ))


def _range_text(lo, hi, lo_open, hi_open) -> str:
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    return f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def check_value(key: str, typ: Any, value: Any, metadata: Optional[dict] = None) -> Any:
    """Check one value against its annotation and metadata; return it (ints widened for float)."""
    metadata = metadata or {}
    if is_literal(typ):
        choices = typing.get_args(typ)
        if not isinstance(value, str if all(isinstance(c, str) for c in choices) else object) or value not in choices:
            raise ValueError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected a boolean (true/false), got {value!r}")
        return value
    if typ is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{key}: expected an int, got {value!r}")
    elif typ is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if metadata.get("finite", True) and not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")
    elif typ is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
    if "range" in metadata and typ in (int, float):
        lo, hi, lo_open, hi_open = metadata["range"]
        ok = (lo is None or (value > lo if lo_open else value >= lo)) and \
             (hi is None or (value < hi if hi_open else value <= hi))
        if not ok:
            what = "an int" if typ is int else "a number"
            raise ValueError(f"{key}: expected {what} in {_range_text(lo, hi, lo_open, hi_open)}, got {value!r}")
    return value


def field_types(cls: type) -> dict[str, Any]:
    """``{field name: resolved annotation}`` of a dataclass."""
    return typing.get_type_hints(cls, include_extras=False)


def check_config(obj: Any, prefix: str) -> None:
    """Check every field of the dataclass instance ``obj`` (recursively); keys read ``prefix.field``."""
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}.{f.name}" if prefix else f.name
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, typ):
                raise ValueError(f"{key}: expected a {typ.__name__}, got {type(value).__name__}")
            check_config(value, key)
            continue
        checked = check_value(key, typ, value, dict(f.metadata))
        if checked is not value and type(checked) is not type(value):
            object.__setattr__(obj, f.name, checked)


def build_config(cls: type, d: Any, key: str) -> Any:
    """``cls(**d)`` with every nested config field built from its mapping too; keys missing from
    ``d`` keep their defaults; an unknown key is a ``ValueError`` naming it (``key.field``). Not
    validated (call :func:`check_config` or the config's ``validate``)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls: expected a config dataclass, got {cls!r}")
    if not isinstance(d, typing.Mapping):
        raise ValueError(f"{key}: expected a mapping of {cls.__name__} fields, got {type(d).__name__}")
    hints = field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{key}: unknown fields {unknown}")
    kwargs = {}
    for name, value in d.items():
        typ = hints[name]
        sub = f"{key}.{name}" if key else name
        kwargs[name] = build_config(typ, value, sub) if dataclasses.is_dataclass(typ) else value
    return cls(**kwargs)


def parse_field(key: str, typ: Any, text: str) -> Any:
    """Parse a command-line string as the annotation ``typ`` (bool words, int, float, str, Literal)."""
    if is_literal(typ):
        return check_value(key, typ, text)
    if typ is bool:
        low = str(text).lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a boolean (true/false), got {text!r}")
    if typ is int:
        try:
            return int(text)
        except (TypeError, ValueError):
            pass
        try:  # "1e6" → 1000000 when it is an exact integer
            v = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected int, got {text!r}") from None
        if math.isfinite(v) and v == int(v):
            return int(v)
        raise ValueError(f"{key}: expected int, got {text!r}")
    try:
        return typ(text)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {type_name(typ)}, got {text!r}") from None
