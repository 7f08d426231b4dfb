"""JSON-lines events on stdout (the contract of `schemas/events.ts`); everything else goes to stderr.

`take_stdout()` is called once at start-up: it keeps the real stdout for events and points `sys.stdout` at
stderr, so a stray `print` from any library can never corrupt the event stream.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from typing import Any, Dict, IO, Optional

_out: IO[str] = sys.stdout
_lock = threading.Lock()
log = logging.getLogger("rankflow")


class capture:
    """Context manager collecting the emitted records in a list instead of writing them (in-process tests)."""

    def __init__(self) -> None:
        self.records: list = []

    def __enter__(self) -> list:
        global _out
        self._old = _out
        outer = self

        class _Sink:
            def write(self, s: str) -> None:
                for line in s.splitlines():
                    if line.strip():
                        outer.records.append(json.loads(line))

            def flush(self) -> None:
                pass

        _out = _Sink()  # type: ignore[assignment]
        global _capturing
        _capturing = True
        return self.records

    def __exit__(self, *exc) -> bool:
        global _out, _capturing
        _out = self._old
        _capturing = False
        return False


_capturing = False


def take_stdout() -> None:
    global _out
    if _capturing:
        return
    if sys.stdout is not sys.stderr:
        _out = sys.stdout
        sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=os.environ.get("RANKFLOW_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def finite_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    """Metrics as plain floats; non-finite values (e.g. an undefined correlation) are left out and logged."""
    out = {}
    for k, v in (metrics or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
        else:
            log.warning("metric %s is %s; left out of the event", k, f)
    return out


def write_json(obj: Any) -> None:
    """One JSON document on the event stream (used by `count`/`describe`, whose output is one object)."""
    with _lock:
        _out.write(json.dumps(obj, allow_nan=False) + "\n")
        _out.flush()


def emit(event: str, **fields: Any) -> Dict[str, Any]:
    rec = {"event": event, "time": time.time(), **fields}
    write_json(rec)
    return rec


def error(kind: str, message: str, hint: Optional[str] = None) -> Dict[str, Any]:
    return emit("error", kind=kind, message=message, hint=hint)
