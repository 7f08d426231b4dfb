"""Run spec parsing. `schemas/runspec.ts` is the source of truth: the spec is validated against the JSON Schema
generated from it (`rankflow_runtime/contract/runspec.schema.json`, `npm run gen`); nothing is restated here.

`load_spec(path)` reads and validates a spec file; every problem is a `ConfigError` whose one-line message
names the file and the field and whose hint says how to fix it. The result keeps the plain dicts (what the
data and model modules take) behind attribute access: `spec.training.lr`, `spec.model["name"]`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .contract import validate_spec
from .errors import ConfigError

SCHEMA = "rankflow.run/v1"


class Section(dict):
    """A dict with attribute access (spec.training.lr)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e


# Optional sections: absent means the default, so specs (and run ids) from before they existed stay the same.
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


def parse_spec(obj: Any, src: str = "spec") -> RunSpec:
    """Validate a run spec against the contract (runspec.schema.json, generated from schemas/runspec.ts) and
    wrap it; the first problem is a one-line ConfigError naming the file, the field and the fix."""
    _check_values(obj, src)
    validate_spec(obj, src)
    procedure = obj.get("procedure", DEFAULT_PROCEDURE)
    inputs = obj.get("inputs", {})
    return RunSpec(schema=obj["schema"], model=Section(obj["model"]), dataset=Section(obj["dataset"]),
                   method=Section(obj["method"]), training=Section(obj["training"]), seed=obj["seed"],
                   device=obj["device"], run_id=obj.get("run_id"), raw=obj, procedure=Section(procedure),
                   inputs={k: Section(v) for k, v in inputs.items()})


# Deepest nesting of a spec's objects and lists (a recipe nests at most 64 levels; a spec wraps it in two).
MAX_SPEC_DEPTH = 100


def _no_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not a JSON number")


def read_json(path: str, what: str = "spec") -> Any:
    """A JSON file written by the orchestrator; binary, non-UTF-8, NaN/Infinity and nesting deeper than the
    parser's stack are ConfigErrors (one line), never tracebacks."""
    if not os.path.exists(path):
        raise ConfigError(f"{path}: {what} file not found", hint="check the path passed on the command line")
    fix = f"pass the {what} file rankflow wrote (JSON text)"
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}): not a {what} file", hint=fix) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} file ({e.strerror})", hint=fix) from None
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                          hint="fix the JSON syntax") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})", hint="write a finite number") from None
    except RecursionError:
        raise ConfigError(f"{path}: objects or lists nested too deep (a {what} nests at most {MAX_SPEC_DEPTH} "
                          "levels)", hint=fix) from None


def _check_values(obj: Any, src: str) -> None:
    """What the JSON Schema cannot say: every number finite, nesting at most MAX_SPEC_DEPTH (checked without
    recursion, before the schema validator recurses)."""
    stack = [(obj, "", 0)]
    while stack:
        v, where, depth = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{src}: {where.lstrip('.') or '(spec)'}: expected a finite number, got {v}",
                              hint="write a finite number")
        if isinstance(v, (dict, list)):
            if depth >= MAX_SPEC_DEPTH:
                raise ConfigError(f"{src}: {where.lstrip('.') or '(spec)'}: objects or lists nested deeper than "
                                  f"{MAX_SPEC_DEPTH} levels", hint="flatten the value")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            stack.extend((c, f"{where}.{k}" if isinstance(v, dict) else f"{where}[{k}]", depth + 1)
                         for k, c in items)


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
