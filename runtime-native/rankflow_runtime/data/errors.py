"""Errors raised while loading datasets.

Every error carries a one-line ``message`` (what is wrong, naming the file or field) and a ``hint`` (how to
fix it), and a ``kind`` that maps onto the runner's error event kinds: ``data`` for missing or malformed
files, ``config`` for a dataset spec that names something that does not exist.
"""
from __future__ import annotations

try:  # reuse the runtime's shared error base when it exists
    from ..errors import RankflowError as _Base  # type: ignore
except Exception:  # pragma: no cover - depends on what else is committed
    _Base = Exception


class DataError(_Base):
    """Missing or malformed data on disk (error kind ``data``, not retried)."""

    kind = "data"

    def __init__(self, message: str, hint: str = "") -> None:
        try:
            super().__init__(message)
        except TypeError:  # a base class with a different signature
            Exception.__init__(self, message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (fix: {self.hint})"


class DatasetConfigError(DataError):
    """The dataset spec itself is wrong: unknown dataset, split or metric (error kind ``config``)."""

    kind = "config"
