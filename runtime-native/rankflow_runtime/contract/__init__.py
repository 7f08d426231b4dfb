"""The contract with the TypeScript side: JSON Schemas generated from the zod schemas (``schemas/*.ts``) by
``npm run gen`` into this folder. Never edit the ``*.schema.json`` files: change the zod schema and regenerate.

``validate_spec(obj, src)`` checks a run spec against ``runspec.schema.json`` with ``jsonschema`` and turns
the first problem into today's one-line ``ConfigError``: the file, the field, what was expected (from the
field's schema) and the fix, with "did you mean" for an unknown field. ``validator(name)`` returns the
validator of any contract document (the tests check the runtime's events and ``describe`` with it).
"""
from __future__ import annotations

import json
import os
from functools import cache
from typing import Any, Dict, List, Optional, Tuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from ..errors import ConfigError, did_you_mean

HERE = os.path.dirname(os.path.abspath(__file__))
DOCUMENTS = ("runspec", "events", "result", "count", "describe")


@cache
def schema(name: str) -> Dict[str, Any]:
    with open(os.path.join(HERE, f"{name}.schema.json"), encoding="utf-8") as f:
        return json.load(f)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


# --- describing a field's schema in words ------------------------------------------------------------------

def _number_words(s: Dict[str, Any], noun: str) -> str:
    lo, hi = s.get("minimum"), s.get("maximum")
    if s.get("exclusiveMinimum") == 0:
        return f"a positive {noun}"
    if lo is not None and hi is not None and abs(hi) < 2 ** 53 - 1:
        return f"{'an' if noun == 'integer' else 'a'} {noun} between {lo:g} and {hi:g}"
    if lo == 0:
        return f"a non-negative {noun}"
    return f"{'an' if noun == 'integer' else 'a'} {noun}"


def describe(s: Dict[str, Any]) -> str:
    """What a value of schema ``s`` is, in words (``a positive integer or null``)."""
    if "title" in s:
        return s["title"]
    if "const" in s:
        return json.dumps(s["const"])
    if "enum" in s:
        return "one of " + ", ".join(json.dumps(c) for c in s["enum"])
    if "anyOf" in s:
        parts = [p for p in s["anyOf"] if p.get("type") != "null"]
        words = list(dict.fromkeys(describe(p) for p in parts))
        return " or ".join(words + (["null"] if len(parts) < len(s["anyOf"]) else []))
    t = s.get("type")
    if t == "integer":
        return _number_words(s, "integer")
    if t == "number":
        return _number_words(s, "number")
    if t == "string":
        if "pattern" in s:
            return f"a string matching {s['pattern']}"
        return "a non-empty string" if s.get("minLength", 0) >= 1 else "a string"
    if t == "boolean":
        return "true or false"
    if t == "array":
        items = s.get("items", {})
        return "a list of strings" if items.get("type") == "string" else f"a list of {describe(items)}"
    if t == "object":
        extra = s.get("additionalProperties")
        return f"an object of {describe(extra)} values" if isinstance(extra, dict) and extra else "an object"
    if t == "null":
        return "null"
    return "valid"


# --- translating jsonschema errors ----------------------------------------------------------------------------

def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _prefix(path) -> str:
    return _dotted(path) + "." if len(path) else ""


def _order_key(e: ValidationError, top_order: List[str]) -> Tuple:
    """Today's order: the top level first, then the sections in schema order; within one object unknown
    fields, then missing ones, then wrong values, then rules over several fields."""
    path = list(e.absolute_path)
    section = top_order.index(path[0]) if path and path[0] in top_order else -1
    kind = {"additionalProperties": 0, "required": 1}.get(e.validator, 2)
    if "propertyNames" in e.relative_schema_path:
        kind = 0
    if "x-message" in e.schema and kind == 2:
        kind = 3
    return (section, kind, len(path))


def _message(e: ValidationError, src: str) -> ConfigError:
    path = list(e.absolute_path)
    where, inst, s = _prefix(path), e.instance, e.schema
    if e.validator == "additionalProperties" and isinstance(inst, dict):
        known = list(s.get("properties", {}))
        key = next(k for k in inst if k not in known)
        return ConfigError(f"{src}: {where}{key}: unknown field{did_you_mean(key, known)}",
                           hint="remove it; the run spec format is schemas/runspec.ts")
    if e.validator == "required" and isinstance(inst, dict):
        key = next(k for k in s["required"] if k not in inst)
        return ConfigError(f"{src}: {where}{key}: missing",
                           hint=f"add {where}{key} ({describe(s['properties'][key])})")
    if "propertyNames" in e.relative_schema_path:  # a key of a record that must match a pattern
        return ConfigError(f"{src}: {where}{inst}: {describe(s)}", hint=f"rename {where}{inst}")
    if "x-message" in s:
        field = _dotted(path)
        return ConfigError(f"{src}: {s['x-message'].replace('{path}', field)}", hint=s.get("x-hint"))
    if not path:
        return ConfigError(f"{src}: a run spec must be a JSON object", hint="see schemas/runspec.ts")
    want = describe(s)
    hint = f"set {_dotted(path)} to {want}"
    if path == ["schema"]:
        hint = f"set \"schema\": {want} (specs are produced by the rankflow planner)"
    return ConfigError(f"{src}: {_dotted(path)}: expected {want}, got {json.dumps(inst)[:80]}", hint=hint)


def validate(name: str, obj: Any, src: str) -> None:
    """Raises the ConfigError of the first problem of ``obj`` as contract document ``name``."""
    errors = list(validator(name).iter_errors(obj))
    if not errors:
        return
    top = list(schema(name).get("properties", {}))
    first = min(errors, key=lambda e: _order_key(e, top))
    raise _message(first, src)


def validate_spec(obj: Any, src: str = "spec") -> None:
    """Check a run spec against runspec.schema.json; raises a one-line ConfigError."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{src}: a run spec must be a JSON object", hint="see schemas/runspec.ts")
    validate("runspec", obj, src)


def first_error(name: str, obj: Any) -> Optional[str]:
    """The first problem of ``obj`` as document ``name`` as text (None when valid): for tests."""
    try:
        validate(name, obj, name)
    except ConfigError as e:
        return e.message
    return None
