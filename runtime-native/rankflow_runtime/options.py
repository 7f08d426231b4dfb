"""The one option mechanism of the runtime: method, procedure and dataset options are dataclasses whose
fields use ``option(default, help=..., choices=..., min=..., max=...)``.

``options_schema(cls)`` is what ``describe`` publishes for each (``{opt: {type, default, help, choices?, min?,
max?}}``; the planner checks recipes against it), and ``parse_options(cls, raw, where)`` validates a spec's
options with one-line errors that name the field and the fix. Types: ``bool`` (boolean), ``int`` (integer),
``float`` (number), ``str`` (string), ``list``/``List[...]`` (list; ``Union[str, List[str]]`` also takes one
string), any of them ``Optional``; a field with ``choices`` is an enum.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import ConfigError, did_you_mean


def option(default: Any, help: str, *, choices: Optional[Sequence[Any]] = None,
           min: Optional[float] = None, max: Optional[float] = None) -> Any:
    """A dataclass field of an options class, with the metadata that `describe` exposes."""
    meta = {"help": help, "choices": list(choices) if choices is not None else None, "min": min, "max": max}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NoOptions:
    """An owner (method, procedure, dataset family) without options."""


_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _is_list(t: Any) -> bool:
    return t in (list, tuple) or typing.get_origin(t) in (list, tuple, List, Tuple)


def _field_type(f: dataclasses.Field, hints: Dict[str, Any]) -> Tuple[str, bool]:
    """The describe type of a field, and whether a list option also takes a single string."""
    if f.metadata.get("choices"):
        return "enum", False
    t = hints.get(f.name, f.type)
    if typing.get_origin(t) is typing.Union:  # Optional[X], Union[str, List[str]]
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 2 and str in args and any(_is_list(a) for a in args):
            return "list", True
        t = args[0] if len(args) == 1 else t
    if t in _SCALARS:
        return _SCALARS[t], False
    if _is_list(t):
        return "list", False
    raise TypeError(f"option {f.name}: unsupported type {t!r}")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


def options_schema(options_cls: type) -> Dict[str, Dict[str, Any]]:
    """The option schema of `describe`: {opt: {type, default, help, choices?, min?, max?}}."""
    hints = typing.get_type_hints(options_cls)
    out: Dict[str, Dict[str, Any]] = {}
    for f in dataclasses.fields(options_cls):
        entry: Dict[str, Any] = {"type": _field_type(f, hints)[0], "default": _default(f),
                                 "help": f.metadata.get("help", "")}
        for k in ("choices", "min", "max"):
            if f.metadata.get(k) is not None:
                entry[k] = f.metadata[k]
        out[f.name] = entry
    return out


_EXPECTED = {"boolean": "boolean (true or false)", "integer": "an integer", "number": "a number",
             "string": "a string", "list": "a list"}


def _type_ok(t: str, value: Any, str_ok: bool) -> bool:
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "list":
        return isinstance(value, (list, tuple)) or (str_ok and isinstance(value, str))
    return True  # enum: checked against its choices


def _check_value(key: str, value: Any, s: Dict[str, Any], str_ok: bool, where: str, error: type) -> Any:
    """The validated (and normalised) value of one option, or a one-line error."""
    t = s["type"]
    if not _type_ok(t, value, str_ok):
        raise error(f"{where}.{key}: expected {_EXPECTED[t]}, got {value!r}",
                    f"{s['help']} (default {s['default']!r})" if s["help"] else f"default is {s['default']!r}")
    if t == "enum" and value not in s["choices"]:
        choices = ", ".join(map(str, s["choices"]))
        raise error(f"{where}.{key}: expected one of {choices}, got {value!r}", f"set it to one of {choices}")
    if "min" in s and value < s["min"]:
        raise error(f"{where}.{key}: {value!r} is below the minimum {s['min']}", s["help"])
    if "max" in s and value > s["max"]:
        raise error(f"{where}.{key}: {value!r} is above the maximum {s['max']}", s["help"])
    if t == "number":
        return float(value)
    if t == "list" and not isinstance(value, str):
        return list(value)
    return value


def parse_options(options_cls: type, raw: Optional[Dict[str, Any]], where: str = "method.options", *,
                  scope: str = "", null_is_default: bool = False, error: type = ConfigError) -> Any:
    """Validate a spec's options against the dataclass and build it; unknown or ill-typed values raise
    ``error`` (a ConfigError). ``scope`` follows "unknown option" in messages (`` for glue datasets``);
    with ``null_is_default`` a null value means the option's default (dataset options)."""
    hints = typing.get_type_hints(options_cls)
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    schema = options_schema(options_cls)
    kwargs: Dict[str, Any] = {}
    for key, value in dict(raw or {}).items():
        if key not in schema:
            raise error(f"{where}.{key}: unknown option{scope}{did_you_mean(key, schema)}",
                        f"use one of: {', '.join(sorted(schema))}" if schema else f"remove {where}.{key}")
        if value is None and null_is_default:
            continue
        kwargs[key] = _check_value(key, value, schema[key], _field_type(fields[key], hints)[1], where, error)
    return options_cls(**kwargs)
