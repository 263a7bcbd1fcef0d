"""``import sol.pytorch`` -> the frontend plugin's module, resolved through the plugin manager.

A meta-path finder placed after the normal ones: real submodules of sol are found first; only
an unknown ``sol.<name>`` asks the plugin manager (loading plugins at that moment, not before).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the target module is already executed


class FrontendAliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        parts = fullname.split(".")
        if len(parts) != 2 or parts[0] != "sol":
            return None
        from sol import plugins

        module = plugins.frontend_module(parts[1])
        if module is None:
            raise ModuleNotFoundError(plugins.missing_frontend_message(parts[1]), name=fullname)
        return ModuleSpec(fullname, _AliasLoader(module))


def install() -> None:
    if not any(isinstance(f, FrontendAliasFinder) for f in sys.meta_path):
        sys.meta_path.append(FrontendAliasFinder())
