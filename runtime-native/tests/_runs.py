"""Whole runs with their events captured: the one helper the runtime's tests train through.

`tests/` is on `sys.path` for every test below it (pytest puts the folder of `tests/conftest.py` there), so a test
in any subfolder imports it as `from _runs import run_capturing`.
"""
from __future__ import annotations

import json

from rankflow_runtime import events
from rankflow_runtime.procedures import run_procedure
from rankflow_runtime.spec import parse_spec


def run_capturing(spec: dict, out, inputs: dict | None = None, resume: str | None = None, stop: int | None = None):
    """(exit code, events) of one run of `spec` into `out` as `python -m rankflow_runtime run` makes it: the spec
    read as JSON and checked against its procedure, the `--input` artifacts `inputs` (name -> path) verified, then
    the procedure run (`resume`: a checkpoint to resume from; `stop`: behave as if SIGTERM came during that step)."""
    with events.capture() as recs:
        rc = run_procedure(parse_spec(json.loads(json.dumps(spec))), str(out), input_paths=inputs or {}, resume=resume,
                           stop_at_step=stop)
    return rc, recs


def run_ok(spec: dict, out, inputs: dict | None = None):
    """The events of a run of `spec` that must succeed (its error events are the assertion's message)."""
    rc, recs = run_capturing(spec, out, inputs)
    assert rc == 0, of_kind(recs, "error")
    return recs


def of_kind(recs, kind: str):
    return [r for r in recs if r["event"] == kind]


def artifacts(recs) -> dict:
    """The run's artifacts, name -> path (the last one of a name)."""
    return {r["name"]: r["path"] for r in of_kind(recs, "artifact")}
