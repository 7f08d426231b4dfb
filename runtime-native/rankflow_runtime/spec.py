"""Run spec parsing (`schemas/runspec.ts` is the source of truth; this mirrors it field by field).

`load_spec(path)` reads and validates a spec file; every problem is a `ConfigError` whose one-line message
names the file and the field and whose hint says how to fix it. The result keeps the plain dicts (what the
data and model modules take) behind attribute access: `spec.training.lr`, `spec.model["name"]`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .errors import ConfigError, did_you_mean

SCHEMA = "rankflow.run/v1"


class Section(dict):
    """A dict with attribute access (spec.training.lr)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


# Field checkers: (type name shown in messages, predicate, fix hint)
def _int(v): return isinstance(v, int) and not isinstance(v, bool)
def _num(v): return isinstance(v, (int, float)) and not isinstance(v, bool)
def _str(v): return isinstance(v, str)
def _bool(v): return isinstance(v, bool)
def _dict(v): return isinstance(v, dict)


def _pos_int(v): return _int(v) and v > 0
def _pos_num(v): return _num(v) and v > 0
def _nonneg_int(v): return _int(v) and v >= 0
def _nonneg_num(v): return _num(v) and v >= 0
def _nonempty_str(v): return _str(v) and len(v) > 0


def _enum(*choices):
    f = lambda v: v in choices  # noqa: E731
    f.choices = choices  # type: ignore[attr-defined]
    return f


def _nullable(pred):
    f = lambda v: v is None or pred(v)  # noqa: E731
    f.inner = pred  # type: ignore[attr-defined]
    return f


def _list_of_str(v): return isinstance(v, list) and all(isinstance(x, str) for x in v)
def _str_num_map(v): return _dict(v) and all(_pos_num(x) for x in v.values())
def _ratio(v): return _num(v) and 0 <= v <= 1
def _run_id(v): return _str(v) and re.fullmatch(r"run-[0-9a-f]{16,64}", v) is not None
def _input_name(v): return re.fullmatch(r"[a-z][a-z0-9_]*", v) is not None


_DESC = {_int: "an integer", _num: "a number", _str: "a string", _bool: "true or false", _dict: "an object",
         _pos_int: "a positive integer", _pos_num: "a positive number", _nonneg_int: "a non-negative integer",
         _nonneg_num: "a non-negative number", _nonempty_str: "a non-empty string", _list_of_str: "a list of strings",
         _str_num_map: "an object of positive numbers", _ratio: "a number between 0 and 1",
         _run_id: "a run id (run-<hex>)"}


def _describe(pred) -> str:
    if hasattr(pred, "choices"):
        return "one of " + ", ".join(json.dumps(c) for c in pred.choices)
    if hasattr(pred, "inner"):
        return _describe(pred.inner) + " or null"
    return _DESC.get(pred, "valid")


FIELDS: Dict[str, Dict[str, Any]] = {
    "model": {"name": _nonempty_str, "source": _enum("builtin", "hf"), "task": _enum("seq-cls", "img-cls", "causal-lm", "img-gen"),
              "config": _dict, "random_init": _bool},
    "dataset": {"name": _nonempty_str, "data_root": _nullable(_str), "max_length": _pos_int,
                "train_size": _nullable(_pos_int), "eval_size": _nullable(_pos_int), "eval_split": _nonempty_str,
                "metric": _nonempty_str, "options": _dict},
    "method": {"name": _nonempty_str, "rank": _nullable(_pos_int), "options": _dict, "targets": _list_of_str},
    "training": {"optimizer": _enum("adamw", "sgd"), "lr": _pos_num, "lr_groups": _str_num_map,
                 "weight_decay": _nonneg_num, "schedule": _enum("constant", "linear", "cosine"),
                 "warmup_ratio": _ratio, "max_steps": _nullable(_pos_int), "epochs": _nullable(_pos_num),
                 "batch_size": _pos_int, "eval_batch_size": _pos_int, "grad_accum": _pos_int,
                 "max_grad_norm": _nullable(_pos_num), "precision": _enum("fp32", "bf16", "fp16"),
                 "eval_every": _nullable(_pos_int), "checkpoint_every": _nullable(_pos_int), "log_every": _pos_int,
                 "train_head": _bool},
}
# Optional fields: absent means the default, so specs (and run ids) from before they existed stay the same.
def _files(v): return _dict(v) and all(_nonempty_str(x) or (_list_of_str(x) and len(x) > 0) for x in v.values())
def _columns(v): return _dict(v) and all(_nonempty_str(x) or _list_of_str(x) for x in v.values())
def _labels(v): return isinstance(v, list) and len(v) >= 2 and all(_str(x) or _num(x) for x in v)


_DESC.update({_files: "an object of split -> file path", _columns: "an object of role -> column name(s)",
              _labels: "a list of at least two label values"})

# Optional fields: absent means the default, so specs (and run ids) from before they existed stay the same.
OPTIONAL: Dict[str, Dict[str, Any]] = {
    "model": {"trust_remote_code": _bool},
    "dataset": {"format": _enum("auto", "official", "tsv", "csv", "jsonl", "parquet", "arrow", "hf"),
                "files": _files, "columns": _columns, "labels": _labels,
                "problem_type": _enum("classification", "regression")},
}
TOP: Dict[str, Any] = {"schema": _enum(SCHEMA), "model": _dict, "dataset": _dict, "method": _dict, "training": _dict,
                       "seed": _nonneg_int, "device": _enum("cpu", "cuda", "auto")}
OPTIONAL_TOP = {"run_id": _str, "procedure": _dict, "inputs": _dict}
PROCEDURE_FIELDS = {"name": _nonempty_str, "options": _dict}
INPUT_FIELDS = {"run": _run_id, "artifact": _nonempty_str}
DEFAULT_PROCEDURE = {"name": "finetune", "options": {}}


@dataclass
class RunSpec:
    schema: str
    model: Section
    dataset: Section
    method: Section
    training: Section
    seed: int
    device: str
    run_id: Optional[str] = None
    raw: Optional[Dict[str, Any]] = None
    # What the run does (default: the standard fine-tuning loop) and the upstream artifacts it reads
    # ({name: {run, artifact}}); both are absent from plain specs, so their ids do not change.
    procedure: Section = field(default_factory=lambda: Section(DEFAULT_PROCEDURE, options={}))
    inputs: Dict[str, Section] = field(default_factory=dict)

    def identity(self) -> Dict[str, Any]:
        """The spec without `run_id`: what identifies the run (and what a checkpoint must match)."""
        return {k: v for k, v in (self.raw or {}).items() if k != "run_id"}


def _check_object(obj: Dict[str, Any], fields: Dict[str, Any], where: str, src: str,
                  optional: Optional[Dict[str, Any]] = None) -> None:
    optional = optional or {}
    for key in obj:
        if key not in fields and key not in optional:
            raise ConfigError(f"{src}: {where}{key}: unknown field{did_you_mean(key, list(fields) + list(optional))}",
                              hint="remove it; the run spec format is schemas/runspec.ts")
    for key, pred in fields.items():
        if key not in obj:
            raise ConfigError(f"{src}: {where}{key}: missing", hint=f"add {where}{key} ({_describe(pred)})")
        if not pred(obj[key]):
            raise ConfigError(f"{src}: {where}{key}: expected {_describe(pred)}, got {json.dumps(obj[key])[:80]}",
                              hint=f"set {where}{key} to {_describe(pred)}")
    for key, pred in optional.items():
        if key in obj and not pred(obj[key]):
            raise ConfigError(f"{src}: {where}{key}: expected {_describe(pred)}", hint=f"fix or remove {where}{key}")


def parse_spec(obj: Any, src: str = "spec") -> RunSpec:
    if not isinstance(obj, dict):
        raise ConfigError(f"{src}: a run spec must be a JSON object", hint="see schemas/runspec.ts")
    if obj.get("schema") != SCHEMA:
        raise ConfigError(f"{src}: schema: expected {json.dumps(SCHEMA)}, got {json.dumps(obj.get('schema'))}",
                          hint=f'set "schema": "{SCHEMA}" (specs are produced by the rankflow planner)')
    _check_object(obj, TOP, "", src, OPTIONAL_TOP)
    for section, fields in FIELDS.items():
        _check_object(obj[section], fields, section + ".", src, OPTIONAL.get(section))
    t = obj["training"]
    if (t["max_steps"] is None) == (t["epochs"] is None):
        raise ConfigError(f"{src}: training.max_steps/training.epochs: exactly one must be set",
                          hint="set one of them and the other to null")
    procedure = obj.get("procedure", DEFAULT_PROCEDURE)
    _check_object(procedure, PROCEDURE_FIELDS, "procedure.", src)
    inputs = obj.get("inputs", {})
    for name, ref in inputs.items():
        if not _input_name(name):
            raise ConfigError(f"{src}: inputs.{name}: an input name is lower-case letters, digits and _",
                              hint="rename the input, e.g. model")
        if not _dict(ref):
            raise ConfigError(f"{src}: inputs.{name}: expected an object {{run, artifact}}",
                              hint=f'set inputs.{name} to {{"run": "run-...", "artifact": "model"}}')
        _check_object(ref, INPUT_FIELDS, f"inputs.{name}.", src)
    return RunSpec(schema=obj["schema"], model=Section(obj["model"]), dataset=Section(obj["dataset"]),
                   method=Section(obj["method"]), training=Section(t), seed=obj["seed"], device=obj["device"],
                   run_id=obj.get("run_id"), raw=obj, procedure=Section(procedure),
                   inputs={k: Section(v) for k, v in inputs.items()})


def read_json(path: str, what: str = "spec") -> Any:
    if not os.path.exists(path):
        raise ConfigError(f"{path}: {what} file not found", hint="check the path passed on the command line")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                          hint="fix the JSON syntax") from None


def load_spec(path: str) -> RunSpec:
    return parse_spec(read_json(path), src=os.path.basename(path))


def example_spec(**overrides: Any) -> Dict[str, Any]:
    """A complete spec for the quickstart setting (tiny encoder, synthetic task, LoRA) — handy in tests."""
    spec: Dict[str, Any] = {
        "schema": SCHEMA,
        "model": {"name": "tiny-encoder", "source": "builtin", "task": "seq-cls", "config": {}, "random_init": True},
        "dataset": {"name": "synthetic/seq-cls", "data_root": None, "max_length": 32, "train_size": 256,
                    "eval_size": 64, "eval_split": "validation", "metric": "accuracy", "options": {}},
        "method": {"name": "lora", "rank": 8, "options": {}, "targets": []},
        "training": {"optimizer": "adamw", "lr": 1e-3, "lr_groups": {}, "weight_decay": 0.0, "schedule": "linear",
                     "warmup_ratio": 0.1, "max_steps": 40, "epochs": None, "batch_size": 16, "eval_batch_size": 64,
                     "grad_accum": 1, "max_grad_norm": 1.0, "precision": "fp32", "eval_every": 20,
                     "checkpoint_every": None, "log_every": 10, "train_head": True},
        "seed": 0,
        "device": "cpu",
    }
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        if field:
            spec[section][field] = value
        else:
            spec[section] = value
    return spec
