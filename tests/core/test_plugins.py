"""The plugin contract: discovery switches, registries, API versions, tracing, and fault
isolation (one bad plugin is withdrawn with a reason; every other plugin keeps working)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pluggy
import pytest

import sol
from sol.commands import Command
from sol.errors import PluginError, SolError, UnsupportedOpError
from sol.ir import Graph, TensorType
from sol.ops.registry import LayerClass, OpDef
from sol.roles import Availability, Backend, Frontend

hookimpl = pluggy.HookimplMarker("sol")


def _module(name: str, api: str = ">=1.0,<2", **hooks: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.SOL_PLUGIN_API = api  # type: ignore[attr-defined]
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def test_import_sol_loads_no_plugin_framework_or_compiler() -> None:
    code = ("import sys, sol; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'mxnet', 'sol_x86', 'sol_pytorch', 'jinja2', 'pluggy')]; "
            "print(bad); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_autoload_off_gives_core_only(fresh_plugins) -> None:
    roles = fresh_plugins.roles()
    assert roles.devices.names() == [] and roles.frontends.names() == ["ir"]  # core's own: sol IR graphs
    assert [r.name for r in fresh_plugins.records()] == ["core"]


def test_autoload_finds_installed_entry_points(monkeypatch) -> None:
    import sol.plugins

    monkeypatch.delenv("SOL_PLUGIN_AUTOLOAD", raising=False)
    sol.plugins.reset()
    try:
        assert "x86" in sol.plugins.roles().devices
        assert "pytorch" in sol.plugins.roles().frontends
    finally:
        sol.plugins.reset()


def test_disable_plugins_blocks_by_name(monkeypatch) -> None:
    import sol.plugins

    monkeypatch.delenv("SOL_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("SOL_DISABLE_PLUGINS", "x86, pytorch")
    sol.plugins.reset()
    try:
        assert "x86" not in sol.plugins.roles().devices
        assert "pytorch" not in sol.plugins.roles().frontends
    finally:
        sol.plugins.reset()


def test_incompatible_api_is_refused_naming_both_versions(fresh_plugins) -> None:
    old = _module("old_vendor", api=">=2.0,<3")
    version = ".".join(map(str, sol.plugins.PLUGIN_API))
    with pytest.raises(PluginError, match=rf"old_vendor.*>=2.0,<3.*plugin API {re.escape(version)}"):
        fresh_plugins.register(old)


def test_plugin_without_api_declaration_is_refused(fresh_plugins) -> None:
    mod = types.ModuleType("anon")
    with pytest.raises(PluginError, match="SOL_PLUGIN_API"):
        fresh_plugins.register(mod)


def test_unknown_hook_fails_check_pending(fresh_plugins) -> None:
    mod = _module("typo")
    mod.sol_register_device = hookimpl(lambda registry: None)  # type: ignore[attr-defined]
    with pytest.raises(pluggy.PluginValidationError):
        fresh_plugins.register(mod)


def test_unknown_device_lists_installed(fresh_plugins) -> None:
    import interpreter_device

    fresh_plugins.register(interpreter_device)
    with pytest.raises(PluginError, match=r"unknown device 'cuda' \(installed: interp\)"):
        fresh_plugins.roles().devices.get("cuda")


def test_unavailable_backend_is_not_offered(fresh_plugins) -> None:
    import interpreter_device

    class Lib(Backend):
        name, device = "fastlib", "interp"

        def availability(self) -> Availability:
            return Availability(False, "libfast.so not found")

        def claims(self, node, graph):  # type: ignore[no-untyped-def]
            return True

    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_module("lib", sol_register_backends=lambda registry: registry.register(Lib())))
    assert fresh_plugins.roles().backends.for_device("interp") == []


def test_trace_plugins_logs_hook_calls(monkeypatch) -> None:
    code = ("import logging, sol.plugins as p; logging.basicConfig(); p.manager().hook.sol_plan_ready(plan=None)")
    env = {**__import__("os").environ, "SOL_TRACE_PLUGINS": "1", "SOL_PLUGIN_AUTOLOAD": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "sol_plan_ready" in out.stderr


def test_missing_frontend_import_says_what_to_install(fresh_plugins) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"pip install sol-frontend-tensorflow"):
        import sol.tensorflow  # noqa: F401


# --- fault isolation ----------------------------------------------------------------------------


def _relu_graph() -> Graph:
    g = Graph("tiny")
    x = g.add_input("x", TensorType((4,)))
    g.outputs = [g.add_node("relu", [x]).output]
    return g


def _run_relu(device: str = "interp") -> np.ndarray:
    """sol.optimize on an IR graph: the public path through every registry (ops, frontends,
    devices, backends, passes)."""
    x = np.array([-1.0, 0.5, -2.0, 3.0], np.float32)
    return sol.optimize(_relu_graph(), device=device)(x)[0]


RELU = [0.0, 0.5, 0.0, 3.0]


def _device(name: str) -> Any:
    from interpreter_device import InterpreterDevice

    device = InterpreterDevice()
    device.name = name
    return device


class _Lib(Backend):
    def __init__(self, name: str, device: str) -> None:
        self.name, self.device = name, device

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return False


class _NoFrontend(Frontend):
    name, module = "bad_frontend", "bad"

    def accepts(self, model: Any) -> bool:
        return False

    def import_graph(self, model, example_inputs, options):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def wrap(self, program, model, graph):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class _Cmd(Command):
    name = "bad-command"

    def run(self, args):  # type: ignore[no-untyped-def]
        return 0


# What the half-broken plugin registers in each hook before one of them raises.
ITEMS: dict[str, Callable[[Any], Any]] = {
    "ops": lambda r: r.register(OpDef("bad_op", LayerClass.ELEMENTWISE, infer=lambda t, a: t,
                                      reference=lambda xs, a: xs)),
    "frontends": lambda r: r.register(_NoFrontend()),
    "devices": lambda r: r.register(_device("bad_device")),
    "backends": lambda r: r.register(_Lib("bad_lib", "bad_device")),
    "passes": lambda r: r.register("bad_pass", lambda graph: False),
    "commands": lambda r: r.register(_Cmd()),
}


def _half_plugin(raise_in: str, plan_calls: list[Any]) -> types.ModuleType:
    def hook(kind: str) -> Callable[[Any], None]:
        def register(registry: Any) -> None:
            ITEMS[kind](registry)
            if kind == raise_in:
                raise RuntimeError(f"boom in {kind}")
        return register

    mod = _module("bad", **{f"sol_register_{kind}": hook(kind) for kind in ITEMS})
    mod.sol_plan_ready = hookimpl(lambda plan: plan_calls.append(plan))  # type: ignore[attr-defined]
    return mod


def _nothing_of_bad_left(plugins: Any) -> None:
    from sol.ops.registry import registry as ops

    r = plugins.roles()
    assert "bad_op" not in ops and "bad_frontend" not in r.frontends and "bad_device" not in r.devices
    assert "bad_lib" not in r.backends and "bad_pass" not in r.passes.names() and "bad-command" not in r.commands


@pytest.mark.parametrize("hook", list(ITEMS))
def test_a_raising_registration_hook_withdraws_only_that_plugin(fresh_plugins, hook: str,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The plugin registered one item in every hook before (and in) the raising one: none of
    them stays, its other hooks are never called, one warning names it and the reason, and the
    other plugins work, at the first use and every later one."""
    import interpreter_device

    plan_calls: list[Any] = []
    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_half_plugin(hook, plan_calls), "bad")
    with caplog.at_level(logging.WARNING, logger="sol"):
        for _ in range(2):
            np.testing.assert_array_equal(_run_relu(), RELU)
    [bad] = fresh_plugins.failed()
    assert (bad.name, bad.error) == ("bad", f"failed in sol_register_{hook}: RuntimeError: boom in {hook}")
    warnings = [r.getMessage() for r in caplog.records if "'bad'" in r.getMessage()]
    assert len(warnings) == 1 and f"boom in {hook}" in warnings[0]
    _nothing_of_bad_left(fresh_plugins)
    assert plan_calls == []  # withdrawn: none of its hooks runs any more
    assert [r.name for r in fresh_plugins.records()] == ["core", "interpreter_device"]
    with pytest.raises(PluginError, match=r"unknown device 'bad_device' \(installed: interp\); installed plugins "
                                          r"not in use \(see `sol plugins`\): bad: failed in sol_register_"):
        _run_relu("bad_device")


def test_a_plugin_failing_in_its_ops_hook_leaves_cores_ops(fresh_plugins) -> None:
    """Was: the plugin's raise stopped the hook call before core's ops were in, the registry
    counted as loaded, and every later use said "sol has no op 'relu'"."""
    import interpreter_device

    def broken(registry: Any) -> None:
        raise ValueError("cannot")

    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_module("broken_ops", sol_register_ops=broken))
    for _ in range(2):
        np.testing.assert_array_equal(_run_relu(), RELU)
    assert [r.name for r in fresh_plugins.failed()] == ["broken_ops"]


def test_cores_own_failure_is_an_error_every_time_not_an_empty_registry(fresh_plugins,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sol.ops

    def broken() -> list[OpDef]:
        raise RuntimeError("core's ops are broken")

    monkeypatch.setattr(sol.ops, "builtin_ops", broken)
    for _ in range(2):  # the second use raises the real error again, not "sol has no op 'relu'"
        with pytest.raises(RuntimeError, match="core's ops are broken"):
            _relu_graph()
    monkeypatch.undo()
    import interpreter_device

    fresh_plugins.register(interpreter_device)
    np.testing.assert_array_equal(_run_relu(), RELU)


def test_first_use_from_two_threads_waits_for_every_op(fresh_plugins) -> None:
    """A second thread must not see the op registry while the first one still fills it."""
    filling = threading.Event()

    def slow(registry: Any) -> None:
        filling.set()
        time.sleep(0.3)

    fresh_plugins.register(_module("slow_ops", sol_register_ops=slow))
    errors: list[BaseException] = []

    def build() -> None:
        try:
            _relu_graph()
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    other = threading.Thread(target=build)
    other.start()
    assert filling.wait(10)
    build()
    other.join()
    assert errors == []


def test_plugins_registering_one_name_are_all_refused(fresh_plugins) -> None:
    """Which of two same-named devices ran would depend on the order Python lists installed
    packages in: neither does, each row names the others, and a third one is refused too, even
    if it catches the error."""
    import interpreter_device

    def third(registry: Any) -> None:
        try:
            registry.register(_device("twin"))
        except PluginError:
            pass  # swallowing it does not make the name this plugin's

    def first(registry: Any) -> None:
        registry.register(_device("twin"))
        registry.register(_device("only_a"))

    def second(registry: Any) -> None:
        registry.register(_device("twin"))

    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_module("vendor_a", sol_register_devices=first))
    fresh_plugins.register(_module("vendor_b", sol_register_devices=second))
    fresh_plugins.register(_module("vendor_c", sol_register_devices=third))
    np.testing.assert_array_equal(_run_relu(), RELU)
    devices = fresh_plugins.roles().devices
    assert devices.names() == ["interp"]  # vendor_a's other device went with it
    errors = {r.name: r.error for r in fresh_plugins.failed()}
    two = "refused: device 'twin' is registered by 'vendor_a' and 'vendor_b'; sol uses none of them"
    assert errors["vendor_a"].startswith(two) and errors["vendor_b"].startswith(two)
    assert errors["vendor_a"].endswith("block the others with SOL_DISABLE_PLUGINS=vendor_b")
    assert errors["vendor_c"].startswith("refused: device 'twin' is registered by 'vendor_a', 'vendor_b' and "
                                         "'vendor_c'")
    with pytest.raises(PluginError, match=r"unknown device 'twin' \(installed: interp\); .*vendor_a: refused"):
        devices.get("twin")


def test_a_plugin_cannot_take_a_name_of_cores(fresh_plugins) -> None:
    """Core registers first even when the plugin asks to be called last (pluggy orders those
    before core): the plugin is refused, never core."""
    import interpreter_device

    fake = OpDef("relu", LayerClass.ELEMENTWISE, infer=lambda t, a: t, reference=lambda xs, a: [xs[0] * 0 + 7])
    thief = _module("thief")
    thief.sol_register_ops = hookimpl(trylast=True)(  # type: ignore[attr-defined]
        lambda registry: registry.register(fake))
    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(thief)
    np.testing.assert_array_equal(_run_relu(), RELU)  # core's relu, not the thief's
    [thief] = fresh_plugins.failed()
    assert thief.error == ("failed in sol_register_ops: PluginError: plugin 'thief' registers op 'relu', "
                           "which is one of core's own")


def test_backend_for_missing_device_is_refused(fresh_plugins) -> None:
    import interpreter_device

    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_module("npu_lib", sol_register_backends=lambda registry: registry.register(
        _Lib("fastlib", "npu"))))
    np.testing.assert_array_equal(_run_relu(), RELU)
    [lib] = fresh_plugins.failed()
    assert lib.error == ("failed in sol_register_backends: PluginError: backend 'fastlib' (plugin 'npu_lib') is "
                         "for device 'npu', which is not installed")


def test_a_backend_whose_device_plugin_failed_later_is_refused(fresh_plugins) -> None:
    """The device was registered, its backend too (by another plugin), then the device's plugin
    failed in a later hook: the backend serves nothing and is refused as if the device had
    never been there."""
    import interpreter_device

    def broken_passes(registry: Any) -> None:
        raise OSError("no such file")

    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(_module("npu", sol_register_devices=lambda registry: registry.register(_device("npu")),
                                   sol_register_passes=broken_passes))
    fresh_plugins.register(_module("npu_lib", sol_register_backends=lambda registry: registry.register(
        _Lib("fastlib", "npu"))))
    np.testing.assert_array_equal(_run_relu(), RELU)
    errors = {r.name: r.error for r in fresh_plugins.failed()}
    assert errors == {"npu": "failed in sol_register_passes: OSError: no such file",
                      "npu_lib": "refused: backend 'fastlib' is for device 'npu', whose plugin is not in use"}
    assert fresh_plugins.roles().backends.names() == []


def test_unknown_op_from_a_failed_plugin_is_still_unknown(fresh_plugins) -> None:
    fresh_plugins.register(_module("half", sol_register_ops=lambda registry: (
        registry.register(OpDef("half_op", LayerClass.ELEMENTWISE, infer=lambda t, a: t, reference=lambda xs, a: xs)),
        1 / 0)))
    g = Graph("g")
    x = g.add_input("x", TensorType((2,)))
    with pytest.raises(UnsupportedOpError, match="sol has no op 'half_op'"):
        g.add_node("half_op", [x])


def test_no_frontend_for_a_model_names_the_frontend_plugin_that_failed(fresh_plugins) -> None:
    def broken(registry: Any) -> None:
        raise ImportError("cannot import name 'export' from 'torch'")

    fresh_plugins.register(_module("pytorch", sol_register_frontends=broken))
    with pytest.raises(SolError, match=r"no sol frontend accepts a builtins\.object; installed frontends: ir \(for "
                                       r"sol IR graphs; for a framework: pip install sol-frontend-pytorch, \.\.\.\); "
                                       r"installed plugins not in use \(see `sol plugins`\): pytorch: failed in "
                                       r"sol_register_frontends: ImportError: cannot import name 'export'"):
        sol.optimize(object())
