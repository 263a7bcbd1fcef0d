"""The plugin contract: discovery switches, registries, API versions, tracing."""

from __future__ import annotations

import subprocess
import sys
import types

import pluggy
import pytest

from sol.errors import PluginError
from sol.roles import Availability, Backend

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
    assert roles.devices.names() == [] and roles.frontends.names() == []
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
    with pytest.raises(PluginError, match=r"old_vendor.*>=2.0,<3.*plugin API 1.0"):
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


def test_duplicate_device_names_both_plugins(fresh_plugins) -> None:
    from interpreter_device import InterpreterDevice

    a = _module("vendor_a", sol_register_devices=lambda registry: registry.register(InterpreterDevice()))
    b = _module("vendor_b", sol_register_devices=lambda registry: registry.register(InterpreterDevice()))
    fresh_plugins.register(a)
    fresh_plugins.register(b)
    with pytest.raises(PluginError, match=r"'interp' is registered twice: by 'vendor_a' and by 'vendor_b'"):
        fresh_plugins.roles()


def test_unknown_device_lists_installed(fresh_plugins) -> None:
    import interpreter_device

    fresh_plugins.register(interpreter_device)
    with pytest.raises(PluginError, match=r"unknown device 'cuda' \(installed: interp\)"):
        fresh_plugins.roles().devices.get("cuda")


def test_backend_for_missing_device_is_an_error(fresh_plugins) -> None:
    class Lib(Backend):
        name, device = "fastlib", "npu"

        def claims(self, node, graph):  # type: ignore[no-untyped-def]
            return False

    fresh_plugins.register(_module("npu_lib", sol_register_backends=lambda registry: registry.register(Lib())))
    with pytest.raises(PluginError, match="fastlib.*'npu', which is not installed"):
        fresh_plugins.roles()


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
