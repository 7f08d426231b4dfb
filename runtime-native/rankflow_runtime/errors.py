"""Errors the runtime reports as an `error` event, and the process exit codes.

Every user-facing failure is one of these classes; the CLI turns it into one `error` event on stdout
(kind, one-line message, hint) and the exit code below, never a stack trace. The codes mirror `EXIT` in
`schemas/events.ts`.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

EXIT_OK = 0
EXIT_CONFIG = 2  # bad spec, bad data, NaN loss: deterministic, never retried
EXIT_RETRYABLE = 3  # OOM, internal error, lost device
EXIT_PREEMPTED = 4  # SIGTERM received, checkpoint written, clean exit


class RunError(Exception):
    """Base class: `kind` is the error event's kind, `exit_code` the process exit code."""

    kind = "internal"
    exit_code = EXIT_RETRYABLE

    def __init__(self, message: str, hint: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(RunError):
    """A bad run spec, flag, option or checkpoint: the user must change something."""

    kind = "config"
    exit_code = EXIT_CONFIG


class CheckpointError(ConfigError):
    """A damaged checkpoint or one of another run: refused before anything in it is used. The orchestrator falls
    back to an older checkpoint (or a fresh start) instead of failing the run."""

    kind = "checkpoint"


class DataError(RunError):
    """Missing or malformed data files."""

    kind = "data"
    exit_code = EXIT_CONFIG


class NanError(RunError):
    """The loss or the gradients became NaN/inf: deterministic, retrying gives the same result."""

    kind = "nan"
    exit_code = EXIT_CONFIG


class OomError(RunError):
    """Out of (device) memory: another attempt on a larger device may succeed."""

    kind = "oom"
    exit_code = EXIT_RETRYABLE


class InternalError(RunError):
    kind = "internal"
    exit_code = EXIT_RETRYABLE


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' or a list of the valid choices, for one-line error messages."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f' (did you mean "{close[0]}"?)'
    return f" (valid: {', '.join(choices)})" if choices else ""


RankflowError = RunError  # alias used by the data package

_KIND_EXIT = {"config": EXIT_CONFIG, "checkpoint": EXIT_CONFIG, "data": EXIT_CONFIG, "nan": EXIT_CONFIG,
              "oom": EXIT_RETRYABLE, "internal": EXIT_RETRYABLE}


def exit_code_of(kind: str) -> int:
    """The exit code of an error event kind (config/checkpoint/data/nan: 2, never retried; oom/internal: 3)."""
    return _KIND_EXIT.get(kind, EXIT_RETRYABLE)
