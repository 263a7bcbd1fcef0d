"""Plugins add `sol` subcommands through the sol_register_commands hook."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import types
from pathlib import Path

import pluggy
import pytest

from sol import cli
from sol.commands import Command

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


def test_plugin_cannot_take_a_core_command(fresh_plugins, capsys: pytest.CaptureFixture[str]) -> None:
    bad = Greet()
    bad.name = "inspect"
    fresh_plugins.register(_plugin("hijack", bad), "hijack")
    assert "inspect" not in fresh_plugins.commands()
    [hijack] = fresh_plugins.failed()
    assert hijack.error == ("failed in sol_register_commands: PluginError: plugin 'hijack' registers a command "
                            "'inspect', which is one of core's own (cache, deploy, inspect, plugins)")
    assert cli.main(["cache", "info"]) == 0  # core's commands are core's


def test_plugins_registering_one_command_are_both_refused(fresh_plugins,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Two plugins' `sol greet`: neither runs (which one would is the order Python lists packages
    in); core's commands and the other plugins' keep working."""
    other = Greet()
    other.name = "wave"
    fresh_plugins.register(_plugin("one", Greet()), "one")
    fresh_plugins.register(_plugin("two", Greet()), "two")
    fresh_plugins.register(_plugin("three", other), "three")
    assert cli.main(["wave", "--who", "x"]) == 3 and cli.main(["cache", "info"]) == 0
    with pytest.raises(SystemExit):  # argparse: invalid choice
        cli.main(["greet"])
    assert "invalid choice: 'greet'" in capsys.readouterr().err
    errors = {r.name: r.error for r in fresh_plugins.failed()}
    assert set(errors) == {"one", "two"}
    assert all(e.startswith("refused: command 'greet' is registered by 'one' and 'two'") for e in errors.values())


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


# --- `sol plugins`: every installed plugin is a row, with why it cannot work ---------------------


class _OfflineFrontend:
    name, module = "offline", "offline"

    def accepts(self, model):  # type: ignore[no-untyped-def]
        return False

    def availability(self):  # type: ignore[no-untyped-def]
        from sol.roles import Availability

        return Availability(False, "offlinelib is not installed (pip install offlinelib)")


def _raising_devices_hook(registry) -> None:  # type: ignore[no-untyped-def]
    raise RuntimeError("driver library libnpu.so not found")


def _twin_device(registry) -> None:  # type: ignore[no-untyped-def]
    from interpreter_device import InterpreterDevice

    device = InterpreterDevice()
    device.name = "twin"
    registry.register(device)


def test_plugins_rows_for_unavailable_failed_and_refused_plugins(fresh_plugins, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Entry points whose import fails, whose API range core refuses, that implement a hook core
    does not know, whose registration hook raises, or that register a device name another one
    does: each a row saying why, the others load and work, and the exit status says not all is
    well."""
    from importlib.metadata import EntryPoint

    import sol.plugins

    import interpreter_device

    frontend = _plugin("offline_frontend")
    frontend.sol_register_frontends = hookimpl(  # type: ignore[attr-defined]
        lambda registry: registry.register(_OfflineFrontend()))
    old = types.ModuleType("sol_test_old_vendor")
    old.SOL_PLUGIN_API = ">=2.0,<3"  # type: ignore[attr-defined]
    unknown = _plugin("sol_test_unknown_hook")
    unknown.sol_no_such_hook = hookimpl(lambda: None)  # type: ignore[attr-defined]
    raising = _plugin("sol_test_raising")
    raising.sol_register_devices = hookimpl(_raising_devices_hook)  # type: ignore[attr-defined]
    twins = [_plugin(f"sol_test_twin_{i}") for i in (1, 2)]
    for twin in twins:
        twin.sol_register_devices = hookimpl(_twin_device)  # type: ignore[attr-defined]
    for name, module in (("sol_test_offline", frontend), ("sol_test_old_vendor", old),
                         ("sol_test_unknown_hook", unknown), ("sol_test_raising", raising),
                         ("sol_test_twin_1", twins[0]), ("sol_test_twin_2", twins[1]),
                         ("sol_test_interp", interpreter_device)):
        monkeypatch.setitem(sys.modules, name, module)
    points = [EntryPoint("offline", "sol_test_offline", "sol"), EntryPoint("broken", "sol_test_no_such_module", "sol"),
              EntryPoint("oldvendor", "sol_test_old_vendor", "sol"),
              EntryPoint("unknownhook", "sol_test_unknown_hook", "sol"), EntryPoint("npu", "sol_test_raising", "sol"),
              EntryPoint("twin1", "sol_test_twin_1", "sol"), EntryPoint("twin2", "sol_test_twin_2", "sol"),
              EntryPoint("interp", "sol_test_interp", "sol")]
    monkeypatch.setattr(sol.plugins.metadata, "entry_points", lambda group: points if group == "sol" else [])
    monkeypatch.setenv("SOL_PLUGIN_AUTOLOAD", "1")
    sol.plugins.reset()
    assert cli.main(["plugins"]) == 1
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip()}
    assert re.search(r" frontend:offline +offline: unavailable: offlinelib is not installed \(pip install "
                     r"offlinelib\)$", rows["offline"])
    assert rows["broken"].endswith("failed to load: ModuleNotFoundError: No module named 'sol_test_no_such_module'")
    api = ".".join(map(str, sol.plugins.PLUGIN_API))
    assert "refused: plugin 'oldvendor' (?) supports sol plugin API >=2.0,<3, but this sol-core implements " \
           f"plugin API {api}" in rows["oldvendor"]
    assert "refused: " in rows["unknownhook"] and "sol_no_such_hook" in rows["unknownhook"]
    assert re.search(r" - +failed in sol_register_devices: RuntimeError: driver library libnpu.so not found$",
                     rows["npu"])
    for twin in ("twin1", "twin2"):
        assert re.search(r" - +refused: device 'twin' is registered by 'twin1' and 'twin2'; sol uses none of them",
                         rows[twin])
    assert re.search(r" device:interp +interp: available \(NumPy interpreter \(test device\)\)$", rows["interp"])
    assert [r.name for r in sol.plugins.failed()] == ["broken", "oldvendor", "unknownhook", "npu", "twin1", "twin2"]
    assert err.strip() == "6 installed plugins not in use: broken, oldvendor, unknownhook, npu, twin1, twin2"
    assert not sol.plugins.manager().has_plugin("unknownhook")  # refused: none of its hooks is called
    assert not sol.plugins.manager().has_plugin("npu")
    assert sol.plugins.roles().devices.names() == ["interp"]


def test_plugins_with_core_alone_says_what_is_missing(fresh_plugins, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^core +sol-core .* frontend:ir, \d+ ops, \d+ passes +ir: available$", out, re.M)
    assert "no frontend installed for a framework (e.g. pip install sol-frontend-pytorch); networks built in " \
           "sol's IR need none (frontend 'ir')" in out
    assert "no device installed (e.g. pip install sol-device-x86)" in out


# --- `sol inspect`: typed inputs, every zoo model ------------------------------------------------

SMALL_ZOO = """
from sol_benchmarks import zoo

def bert():
    return zoo.bert_encoder(vocab_size=100, hidden=32, num_layers=1, num_heads=2, max_position=64)

def lstm():
    return zoo.lstm_language_model(ntoken=50, size=16, nlayers=2)
"""


def _inspect(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "small_zoo.py").write_text(SMALL_ZOO)
    return subprocess.run([sys.executable, "-m", "sol.cli", "inspect", *args], capture_output=True, text=True,
                          cwd=tmp_path)


def test_inspect_token_model_with_int64_inputs(tmp_path: Path) -> None:
    """BERT's input ids, token types and attention mask are int64: `--input 2,16:int64`."""
    ids = ["--input", "2,16:int64"]
    out = _inspect(tmp_path, "small_zoo:bert", *ids, *ids, *ids, "--device", "x86", "--svg", "bert.svg")
    assert out.returncode == 0, out.stderr
    assert "sol plan for BertEncoder on x86" in out.stdout and "#1 gather -> float32[2, 16, 32]" in out.stdout
    assert "input input_ids" in (tmp_path / "bert.svg").read_text() and "int64[2, 16]" in out.stdout + (
        tmp_path / "bert.svg").read_text()


def test_inspect_recurrent_model_with_int64_tokens_and_profile(tmp_path: Path) -> None:
    out = _inspect(tmp_path, "small_zoo:lstm", "--input", "5,2:int64", "--device", "x86")
    assert out.returncode == 0, out.stderr
    assert "execution-order constrained" in out.stdout and "sequential loop over 5 steps" in out.stdout
    out = _inspect(tmp_path, "small_zoo:lstm", "--input", "5,2:int64", "--device", "x86", "--profile", "--runs", "2")
    assert out.returncode == 0, out.stderr
    assert "sol profile of RNNLanguageModel on x86" in out.stdout


def test_inspect_refuses_a_bad_input_spec(tmp_path: Path) -> None:
    for spec, message in (("2,16:int65", "unknown dtype 'int65'; sol knows float32"),
                          ("2,x", "a shape is comma-separated integers, got '2,x'"),
                          ("2,-1", "dimensions cannot be negative")):
        out = _inspect(tmp_path, "small_zoo:lstm", "--input", spec)
        assert out.returncode == 2 and message in out.stderr, out.stderr
