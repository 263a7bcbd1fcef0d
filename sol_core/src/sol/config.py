"""sol's settings: documented keys, each overridable by a ``SOL_<KEY>`` environment variable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    doc: str


KEYS = {k.name: k for k in (
    Key("device", "", "default device name; empty: the first available of the installed devices"),
    Key("cache_dir", "", "compile cache folder (SOL_CACHE_DIR); default ~/.cache/sol"),
    Key("debug_dir", "", "keep generated sources here (SOL_DEBUG_DIR)"),
    Key("log", "warning", "log level of logging.getLogger('sol') (SOL_LOG=debug)"),
)}


class Config:
    """``sol.config["device"]``; a value set here wins over the environment."""

    def __init__(self) -> None:
        self._set: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in KEYS:
            raise KeyError(f"unknown sol config key {name!r}; keys: {', '.join(KEYS)}")
        if name in self._set:
            return self._set[name]
        return os.environ.get(f"SOL_{name.upper()}", KEYS[name].default)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in KEYS:
            raise KeyError(f"unknown sol config key {name!r}; keys: {', '.join(KEYS)}")
        self._set[name] = value

    def describe(self) -> str:
        return "\n".join(f"{k.name:10} = {self[k.name]!r:24} {k.doc}" for k in KEYS.values())


config = Config()
