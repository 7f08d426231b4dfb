"""SIGTERM -> a flag. Installed first thing by `run` (before torch is imported), so a preemption notice
that arrives while the runtime is still starting is not lost; the training loop checks the flag at every
step boundary and exits with the preempted code after writing a checkpoint."""
from __future__ import annotations

import signal
import sys

_requested = False
_installed = False


def _handler(signum, frame) -> None:
    global _requested
    _requested = True
    try:
        sys.stderr.write("rankflow: SIGTERM received: checkpointing at the end of this step\n")
        sys.stderr.flush()
    except Exception:  # pragma: no cover
        pass


def install() -> bool:
    """Install the handler (main thread only); returns whether it is installed."""
    global _installed
    if not _installed:
        try:
            signal.signal(signal.SIGTERM, _handler)
            _installed = True
        except ValueError:  # not the main thread
            return False
    return True


def requested() -> bool:
    return _requested


def request() -> None:
    """Act as if SIGTERM had arrived (tests)."""
    global _requested
    _requested = True


def reset() -> None:
    global _requested
    _requested = False
