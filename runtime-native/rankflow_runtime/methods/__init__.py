"""The PEFT method registry. Every module in this package is imported on first use, and each method class
registers itself with `@register` (see `base.py` for how to add one): there is no central list to edit."""
from __future__ import annotations

from typing import Dict

from ..plugins import PluginPackage
from .base import REGISTRY, AdaptedLinear, Method, option, register  # noqa: F401

_PACKAGE = PluginPackage(__name__, __path__, REGISTRY, "method.name", "method")


def registry() -> Dict[str, type]:
    """name -> Method subclass, for every registered method."""
    return _PACKAGE.all()


def get_method(name: str) -> type:
    return _PACKAGE.get(name)
