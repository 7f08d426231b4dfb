"""The procedure mechanism: what a run does with its model (train it, pretrain it, compress it, prune it, ...).

How to add a procedure (one file, no central list to edit)
----------------------------------------------------------
1. Create `rankflow_runtime/procedures/<name>.py`; decorate the class with `@register_procedure`.
2. Declare the options as a dataclass of `option(...)` fields (the same mechanism as method options,
   `methods/base.py`); `describe` lists them and `procedure.options` in a run spec is validated against them.
3. Subclass `Procedure` and set `name` (the run spec's `procedure.name`), `summary`, `paper` (if any),
   `Options`, `inputs` (the named input artifacts it reads: kind, required, help), `outputs` (the named
   artifacts it can write: name -> kind; `outputs_for(options)` narrows them to what a configured run writes),
   `trains` (whether it runs the training loop) and, if it only works with some methods, `methods`.
4. Implement `run(ctx)`: the run's work, returning the process exit code. Reuse the training loop
   (`train.run_training` with its hooks) for anything that trains; write output artifacts with
   `ctx.write_artifact(...)` (atomic directory + one `artifact` event); end with one `done` event.
5. Override `count(spec)` when the trainable/total parameters differ from the standard build's.

A run spec without `procedure` runs the default procedure (`finetune`) with no options; without `inputs` it
reads no artifacts. The planner omits both when they are the defaults, so plain runs keep their ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Tuple

from ..artifacts import Artifact, write_artifact
from ..errors import ConfigError, did_you_mean
from ..events import emit
from ..methods.base import NoOptions, options_schema, parse_options

PROCEDURES: Dict[str, type] = {}
DEFAULT_PROCEDURE = "finetune"


def register_procedure(cls: type) -> type:
    """Class decorator: add a Procedure subclass to the registry under `cls.name`."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.name in PROCEDURES and PROCEDURES[cls.name] is not cls:
        raise TypeError(f"procedure name {cls.name!r} registered twice")
    PROCEDURES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class InputDecl:
    """A named input artifact a procedure reads."""

    kind: str  # "model" | "adapter"
    required: bool
    help: str


@dataclass
class RunContext:
    """What a procedure's `run` gets: the spec, the output folder, the verified input artifacts, the resume
    checkpoint and (tests) the step at which to behave as if SIGTERM arrived."""

    spec: Any
    out_dir: str
    inputs: Dict[str, Artifact] = field(default_factory=dict)
    resume: Optional[str] = None
    stop_at_step: Optional[int] = None

    @property
    def artifacts_dir(self) -> str:
        import os
        return os.path.join(self.out_dir, "artifacts")

    def write_artifact(self, name: str, kind: str, tensors, *, meta: Dict[str, Any],
                       extras=None, shard_bytes: Optional[int] = None) -> Dict[str, Any]:
        """Write output artifact `name` (atomically, under OUT/artifacts/) and emit its `artifact` event."""
        fields = write_artifact(self.artifacts_dir, name, kind, tensors, spec_identity=self.spec.identity(),
                                run_id=self.spec.run_id, meta=meta, extras=extras, shard_bytes=shard_bytes)
        emit("artifact", **fields)
        return fields


class Procedure:
    """A way to run a run. One instance per run: `Procedure(options)`; see the module docstring."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    inputs: ClassVar[Dict[str, InputDecl]] = {}
    outputs: ClassVar[Dict[str, str]] = {}
    trains: ClassVar[bool] = True
    methods: ClassVar[Optional[Tuple[str, ...]]] = None  # accepted method names (None: any registered)

    def __init__(self, options: Any = None):
        if options is None or isinstance(options, dict):
            options = parse_options(self.Options, options, where="procedure.options")
        self.options = options

    @classmethod
    def describe(cls) -> Dict[str, Any]:
        return {"summary": cls.summary, "paper": cls.paper, "trains": cls.trains,
                "methods": list(cls.methods) if cls.methods is not None else None,
                "options": options_schema(cls.Options),
                "inputs": {n: {"kind": d.kind, "required": d.required, "help": d.help} for n, d in cls.inputs.items()},
                "outputs": dict(cls.outputs)}

    def outputs_for(self) -> Dict[str, str]:
        """The artifacts this configured run writes (default: every declared output)."""
        return dict(self.outputs)

    def check(self, spec) -> None:
        """Spec-level checks before anything is built: the method is accepted, the inputs are declared and
        the required ones given. Raises ConfigError with the field and the fix."""
        if self.methods is not None and spec.method["name"] not in self.methods:
            raise ConfigError(f"method.name: procedure {self.name} runs {', '.join(self.methods)}, "
                              f"not {spec.method['name']!r}", hint=f"set method.name to {self.methods[0]!r}")
        for name in spec.inputs:
            if name not in self.inputs:
                raise ConfigError(f"inputs.{name}: procedure {self.name} reads no input {name!r}"
                                  f"{did_you_mean(name, self.inputs) if self.inputs else ' (it reads none)'}",
                                  hint="remove it from the run spec's inputs")
        for name, decl in self.inputs.items():
            if decl.required and name not in spec.inputs:
                raise ConfigError(f"inputs.{name}: procedure {self.name} needs input {name!r} ({decl.help})",
                                  hint=f'add inputs.{name}: {{"run": "<upstream run id>", "artifact": "{decl.kind}"}}')

    def run(self, ctx: RunContext) -> int:
        raise NotImplementedError

    def count(self, spec) -> Dict[str, int]:
        """Trainable / total parameters and the formula, on the meta device (the standard build by default)."""
        from ..build import count
        if spec.inputs:
            raise ConfigError(f"count: the run reads input artifacts ({', '.join(sorted(spec.inputs))}); its size "
                              "is known only once its upstream run has written them",
                              hint="count the upstream run instead (the planner leaves such runs uncounted)")
        return count(spec)


def kinds_of(proc: Procedure) -> Dict[str, str]:
    return {n: d.kind for n, d in proc.inputs.items()}
