"""Errors raised while loading datasets: the runtime's own ``DataError`` (kind ``data``: missing or malformed
files) and ``ConfigError`` (kind ``config``: a dataset spec naming an unknown dataset, split or metric), both
exit code 2 (never retried), each with a one-line ``message`` and a ``hint``."""
from __future__ import annotations

from ..errors import ConfigError, DataError

#: The data package's name for a bad dataset spec (the runtime's ``ConfigError``).
DatasetConfigError = ConfigError

__all__ = ["DataError", "DatasetConfigError", "ConfigError"]
