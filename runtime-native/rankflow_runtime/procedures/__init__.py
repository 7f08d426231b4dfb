"""The procedure registry: what a run does with its model. Every module in this package is imported on first
use and each procedure class registers itself with `@register_procedure` (see `base.py` for how to add one).

`finetune` (the standard training loop) is the default; the others build on it or on its pieces:
`pretrain` (from-scratch pretraining, e.g. SLTrain), `compress` (one-shot LoRD compression), `prune` (LoRAM's
structured pruning with optional alignment) and `recover` (LoRAM's recovery of a pruned model's adapter onto the
full model).
"""
from __future__ import annotations

from typing import Dict

from ..plugins import PluginPackage
from .base import DEFAULT_PROCEDURE, PROCEDURES, Procedure, register_procedure  # noqa: F401

_PACKAGE = PluginPackage(__name__, __path__, PROCEDURES, "procedure.name", "procedure")


def procedures() -> Dict[str, type]:
    """name -> Procedure subclass, for every registered procedure."""
    return _PACKAGE.all()


def get_procedure(name: str) -> type:
    return _PACKAGE.get(name)


def make_procedure(spec) -> Procedure:
    cls = get_procedure(spec.procedure["name"])
    proc = cls(spec.procedure["options"])
    proc.check(spec)
    return proc


def run_procedure(spec, out_dir: str, input_paths=None, resume=None, stop_at_step=None) -> int:
    """`python -m rankflow_runtime run`: check the spec against its procedure, verify the `--input`
    artifacts against the spec's `inputs` (before anything is built), then run the procedure."""
    from ..artifacts import open_inputs
    from .base import RunContext, kinds_of
    proc = make_procedure(spec)
    inputs = open_inputs(dict(spec.inputs), dict(input_paths or {}), kinds_of(proc))
    return proc.run(RunContext(spec=spec, out_dir=out_dir, inputs=inputs, resume=resume, stop_at_step=stop_at_step))


def count_spec(spec) -> dict:
    return make_procedure(spec).count(spec)


def describe_procedures() -> Dict[str, dict]:
    return {name: cls.describe() for name, cls in procedures().items()}
