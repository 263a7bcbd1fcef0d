"""Plugins add `sol` subcommands through the sol_register_commands hook."""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import pluggy
import pytest

from sol import cli
from sol.commands import Command
from sol.errors import PluginError

hookimpl = pluggy.HookimplMarker("sol")


class Greet(Command):
    name = "greet"
    help = "say hello"
    seen: list[str] = []

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--who", default="world")

    def run(self, args: argparse.Namespace) -> int:
        self.seen.append(args.who)
        print(f"hello {args.who}")
        return 3


def _plugin(name: str, *commands: Command) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.SOL_PLUGIN_API = ">=1.0,<2"  # type: ignore[attr-defined]

    def sol_register_commands(registry) -> None:  # type: ignore[no-untyped-def]
        for c in commands:
            registry.register(c)

    mod.sol_register_commands = hookimpl(sol_register_commands)  # type: ignore[attr-defined]
    return mod


def test_plugin_command_runs_with_its_arguments(fresh_plugins, capsys: pytest.CaptureFixture[str]) -> None:
    fresh_plugins.register(_plugin("greeter", Greet()), "greeter")
    assert cli.main(["greet", "--who", "sol"]) == 3
    assert Greet.seen[-1] == "sol"
    assert "hello sol" in capsys.readouterr().out
    assert "command:greet" in next(r for r in fresh_plugins.records() if r.name == "greeter").roles


def test_plugin_cannot_take_a_core_command(fresh_plugins) -> None:
    bad = Greet()
    bad.name = "inspect"
    fresh_plugins.register(_plugin("hijack", bad), "hijack")
    with pytest.raises(PluginError, match="one of core's own"):
        fresh_plugins.commands()


def test_broken_plugin_command_leaves_core_commands_working(fresh_plugins, capsys: pytest.CaptureFixture[str]) -> None:
    fresh_plugins.register(_plugin("one", Greet()), "one")
    fresh_plugins.register(_plugin("two", Greet()), "two")  # the same name twice
    assert cli.main(["cache", "info"]) == 0
    err = capsys.readouterr().err
    assert "plugin commands unavailable" in err and "registered twice" in err


def test_cli_start_imports_no_framework() -> None:
    """`sol --help` lists plugin commands without importing torch (the benchmark plugin's
    command imports it only when it runs)."""
    code = ("import sys; from sol import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'tensorflow', 'matplotlib', 'onnxruntime')\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
