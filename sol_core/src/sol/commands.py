"""Subcommands that plugins add to the ``sol`` command line.

A plugin registers a :class:`Command` through the ``sol_register_commands`` hook; ``sol --help``
lists it beside core's own commands. The command's module is imported when the hook runs, so it
must stay light: heavy imports (a framework, plotting) belong inside :meth:`Command.run`.
"""

from __future__ import annotations

import abc
import argparse

from sol.errors import PluginError
from sol.roles import _Registry

CORE_COMMANDS = frozenset({"plugins", "inspect", "cache", "deploy"})
"""Names core's CLI defines itself; a plugin cannot take them over."""


class Command(abc.ABC):
    """One ``sol NAME ...`` subcommand."""

    name: str
    help: str = ""

    def configure(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027 (optional: no arguments)
        """Add the command's arguments to its (sub)parser."""

    @abc.abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run with the parsed arguments; the return value is the process's exit status."""


class CommandRegistry(_Registry[Command]):
    kind = "command"

    def register(self, item: Command) -> Command:
        if getattr(item, "name", None) in CORE_COMMANDS:
            raise PluginError(f"plugin {self.current_plugin!r} registers a command {item.name!r}, "
                              f"which is one of core's own ({', '.join(sorted(CORE_COMMANDS))})")
        return super().register(item)
