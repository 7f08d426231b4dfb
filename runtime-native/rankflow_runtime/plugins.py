"""Packages of plugins: every module of a package is imported on first use, and each registers its classes in
the package's table with a decorator. `methods/` and `procedures/` are such packages; there is no central list
to edit when one is added."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Dict, Iterable

from .errors import ConfigError, did_you_mean


class PluginPackage:
    """name -> class for the modules of one package (the `base` module and `_private` ones are not plugins)."""

    def __init__(self, package: str, path: Iterable[str], table: Dict[str, type], field: str, noun: str):
        self.package, self.path, self.table, self.field, self.noun = package, list(path), table, field, noun
        self._loaded = False

    def all(self) -> Dict[str, type]:
        """Every registered class, sorted by name."""
        if not self._loaded:
            for info in pkgutil.iter_modules(self.path):
                if not (info.name.startswith("_") or info.name == "base"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return dict(sorted(self.table.items()))

    def get(self, name: str) -> type:
        """The class registered as `name`, or a one-line config error naming the spec field."""
        reg = self.all()
        if name not in reg:
            raise ConfigError(f"{self.field}: unknown {self.noun} {name!r}{did_you_mean(name, reg)}",
                              hint=f"run `python -m rankflow_runtime describe` to list the {self.noun}s")
        return reg[name]
