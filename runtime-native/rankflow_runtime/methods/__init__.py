"""The PEFT method registry. Every module in this package is imported on first use, and each method class
registers itself with `@register` (see `base.py` for how to add one): there is no central list to edit."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict

from ..errors import ConfigError, did_you_mean
from .base import REGISTRY, AdaptedLinear, Method, option, register  # noqa: F401

_loaded = False


def _discover() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def registry() -> Dict[str, type]:
    """name -> Method subclass, for every registered method."""
    _discover()
    return dict(sorted(REGISTRY.items()))


def get_method(name: str) -> type:
    reg = registry()
    if name not in reg:
        raise ConfigError(f"method.name: unknown method {name!r}{did_you_mean(name, reg)}",
                          hint="run `python -m rankflow_runtime describe` to list the methods")
    return reg[name]
