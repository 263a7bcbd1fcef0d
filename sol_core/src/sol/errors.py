"""Exceptions users see. Each message says what was expected and what was given."""

from __future__ import annotations


class SolError(Exception):
    """Base class of sol's own errors."""


class PluginError(SolError):
    """A plugin is missing, duplicated, incompatible or broken."""


class UnsupportedOpError(SolError):
    """The model uses an operation sol cannot compile; names the op and where it came from."""

    def __init__(self, message: str, op: str = "", source: str | None = None) -> None:
        super().__init__(message)
        self.op = op
        self.source = source


class CompileError(SolError):
    """A device compiler failed; the message includes the compiler's output."""


class CacheError(SolError):
    """The compile cache cannot be used (e.g. not writable); names the folder and what to do."""


class DeviceUnavailableError(SolError):
    """The requested device cannot run here; says why."""


class IndexOutOfRangeError(SolError, IndexError):
    """An index read at run time (a gather's token id) lies outside its axis; an IndexError too,
    as the frameworks raise for the same input."""
