"""Plugin discovery and the role registries, built lazily on first use.

Plugins are found through the ``sol`` entry-point group. ``SOL_PLUGIN_AUTOLOAD=0`` stops that
(tests register plugins explicitly with :func:`register`), ``SOL_DISABLE_PLUGINS=a,b`` blocks
named ones and ``SOL_TRACE_PLUGINS=1`` logs every hook call. Importing :mod:`sol` loads none of it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any

import pluggy

from sol import hookspecs
from sol.errors import PluginError

PLUGIN_API = (1, 0)
"""The plugin API this core implements; plugins declare a range it must fall in."""

log = logging.getLogger("sol")
_LOCK = threading.RLock()  # first use from several threads at once: one fills the registries, the others wait


@dataclass
class PluginRecord:
    """What ``sol plugins`` shows about one plugin. ``error`` is set for an installed plugin sol
    could not use (its import failed, or core refused it): it then provides nothing."""

    name: str
    distribution: str
    version: str
    module: str
    api: str
    roles: list[str] = field(default_factory=list)
    error: str = ""


@dataclass
class Roles:
    frontends: Any = None
    devices: Any = None
    backends: Any = None
    passes: Any = None
    commands: Any = None


_pm: pluggy.PluginManager | None = None
_records: dict[str, PluginRecord] = {}
_failed: dict[str, PluginRecord] = {}  # installed plugins that failed to load or were refused
_roles: Roles | None = None
_commands: Any = None


def _api_ok(spec: str) -> bool:
    """Check PLUGIN_API against a spec like '>=1.0,<2'."""
    have = PLUGIN_API
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = re.fullmatch(r"(>=|<=|==|<|>)\s*(\d+)(?:\.(\d+))?", part)
        if not m:
            raise PluginError(f"cannot read plugin API spec {spec!r}")
        op, major, minor = m.group(1), int(m.group(2)), int(m.group(3) or 0)
        want = (major, minor)
        ok = {">=": have >= want, "<=": have <= want, "==": have == want,
              "<": have < want, ">": have > want}[op]
        if not ok:
            return False
    return True


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("SOL_DISABLE_PLUGINS", "").split(",") if n.strip()}


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (created, and entry points loaded, on first call)."""
    global _pm
    if _pm is not None:
        return _pm
    with _LOCK:
        return _pm if _pm is not None else _new_manager()


def _new_manager() -> pluggy.PluginManager:
    global _pm
    pm = pluggy.PluginManager("sol")
    pm.add_hookspecs(hookspecs)
    _pm = pm
    from sol import builtin

    _register(builtin, "core", distribution="sol-core")
    if os.environ.get("SOL_PLUGIN_AUTOLOAD", "1") != "0":
        _load_entry_points()
    pm.check_pending()
    if os.environ.get("SOL_TRACE_PLUGINS", "0") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: log.warning("plugin trace: %s", msg.rstrip()))
        pm.enable_tracing()
    return pm


def _load_entry_points() -> None:
    """Load and register each installed plugin. One that cannot be imported, or that core refuses
    (plugin API out of range, no API declaration, a name taken, a hook core does not know), must
    not take sol down: it is left out, logged, and kept in :func:`failed` for ``sol plugins``."""
    assert _pm is not None
    blocked = _disabled()
    for ep in metadata.entry_points(group="sol"):
        if ep.name in blocked or _pm.has_plugin(ep.name):
            continue
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        try:
            module = ep.load()
        except Exception as exc:
            _fail(PluginRecord(ep.name, dist, version, ep.value, "?"), f"failed to load: {type(exc).__name__}: {exc}")
            continue
        try:
            _register(module, ep.name, distribution=dist, version=version)
            _pm.check_pending()  # the earlier plugins passed: a failure here is this one's
        except (PluginError, pluggy.PluginValidationError) as exc:
            if _pm.is_registered(module):
                _pm.unregister(module)
            record = _records.pop(ep.name, None) or PluginRecord(
                ep.name, dist, version, ep.value, str(getattr(module, "SOL_PLUGIN_API", "?")))
            _fail(record, f"refused: {exc}")


def _fail(record: PluginRecord, reason: str) -> None:
    record.error = reason
    _failed[record.name] = record
    log.warning("sol plugin %r (%s, %s) %s", record.name, record.distribution, record.module, reason)


def _register(plugin: ModuleType | object, name: str, distribution: str = "", version: str = "") -> None:
    assert _pm is not None
    if name in _disabled() and name != "core":
        return
    spec = getattr(plugin, "SOL_PLUGIN_API", None)
    if spec is None:
        raise PluginError(f"plugin {name!r} does not declare SOL_PLUGIN_API (the plugin API range it supports)")
    if not _api_ok(spec):
        have = ".".join(map(str, PLUGIN_API))
        raise PluginError(
            f"plugin {name!r} ({distribution or 'unknown distribution'}) supports sol plugin API "
            f"{spec}, but this sol-core implements plugin API {have}; upgrade one of them"
        )
    if _pm.has_plugin(name):
        raise PluginError(f"a plugin named {name!r} is already registered")
    _pm.register(plugin, name=name)
    module = getattr(plugin, "__name__", type(plugin).__name__)
    if not version:
        version = _version_of(distribution) if distribution else "?"
    _records[name] = PluginRecord(name, distribution or "?", version, module, spec)


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def register(plugin: ModuleType | object, name: str | None = None) -> None:
    """Register a plugin object or module explicitly (tests, embedding applications).

    Must happen before the first optimize/explain; :func:`reset` starts over.
    """
    manager()
    if _roles is not None or _commands is not None:
        raise PluginError("plugins must be registered before sol first uses its roles; call sol.plugins.reset() first")
    _register(plugin, str(name or getattr(plugin, "__name__", type(plugin).__name__)))
    assert _pm is not None
    _pm.check_pending()


def reset() -> None:
    """Forget all plugins and registries (tests)."""
    global _pm, _roles, _commands
    _pm, _roles, _commands = None, None, None
    _records.clear()
    _failed.clear()
    from sol.ops import registry as ops_registry_module

    ops_registry_module.registry.clear()
    ops_registry_module._loaded = False


def _call_each(hook_name: str, registry: Any, role: str) -> None:
    """Call one registration hook plugin by plugin, so errors and `sol plugins` can name it."""
    pm = manager()
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order
        registry.current_plugin = impl.plugin_name
        before = set(registry.names()) if hasattr(registry, "names") else set()
        caller_for_one: Callable[..., Any] = pm.subset_hook_caller(
            hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not impl.plugin]
        )
        caller_for_one(registry=registry)
        after = set(registry.names()) if hasattr(registry, "names") else set()
        rec = _records.get(impl.plugin_name)
        if rec is not None:
            rec.roles += [f"{role}:{n}" for n in sorted(after - before)]


def roles() -> Roles:
    """The frontend, device, backend and pass registries, filled on first call."""
    if _roles is not None:
        return _roles
    with _LOCK:
        return _roles if _roles is not None else _new_roles()


def _new_roles() -> Roles:
    global _roles
    from sol.ops.registry import _ensure_loaded
    from sol.passes.manager import PassRegistry
    from sol.roles import BackendRegistry, DeviceRegistry, FrontendRegistry

    _ensure_loaded()
    r = Roles()
    r.frontends, r.devices = FrontendRegistry(), DeviceRegistry()
    r.backends, r.passes = BackendRegistry(r.devices), PassRegistry()
    _call_each("sol_register_frontends", r.frontends, "frontend")
    _call_each("sol_register_devices", r.devices, "device")
    _call_each("sol_register_backends", r.backends, "backend")
    _call_each("sol_register_passes", r.passes, "passes")
    r.commands = commands()
    _roles = r
    return r


def commands() -> Any:
    """The CLI subcommands plugins registered (a :class:`sol.commands.CommandRegistry`). Needs
    only the plugin manager, not the other roles, so the CLI starts without loading ops."""
    global _commands
    if _commands is None:
        from sol.commands import CommandRegistry

        registry = CommandRegistry()
        _call_each("sol_register_commands", registry, "command")
        _commands = registry
    return _commands


def records() -> list[PluginRecord]:
    """The plugins in use, with the roles each registered."""
    roles()
    return list(_records.values())


def failed() -> list[PluginRecord]:
    """Installed plugins sol is not using, each with its ``error`` (why)."""
    manager()
    return list(_failed.values())


def frontend_module(name: str) -> str | None:
    """The module behind ``sol.<name>``, or None if no installed frontend has that name."""
    r = roles()
    return r.frontends.get(name).module if name in r.frontends else None


def missing_frontend_message(name: str) -> str:
    return (f"No module named 'sol.{name}': no sol frontend plugin named {name!r} is installed "
            f"(try: pip install sol-frontend-{name}); installed frontends: "
            f"{', '.join(roles().frontends.names()) or 'none'}")

