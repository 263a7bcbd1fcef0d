"""Plugin discovery and the role registries, built lazily on first use.

Plugins are found through the ``sol`` entry-point group. ``SOL_PLUGIN_AUTOLOAD=0`` stops that
(tests register plugins explicitly with :func:`register`), ``SOL_DISABLE_PLUGINS=a,b`` blocks
named ones and ``SOL_TRACE_PLUGINS=1`` logs every hook call. Importing :mod:`sol` loads none of it.

One bad plugin must not take sol down for everyone. A plugin that cannot be imported, that core
refuses (plugin API range, unknown hook), whose registration hook raises, or that registers a
name another plugin registers too is *withdrawn*: everything it registered in any registry is
taken out again, its other hooks are never called, one warning names it and the reason, and
``sol plugins`` shows it as a row with that reason (:func:`failed`). Each plugin's registration
hook is called on its own (pluggy's ``subset_hook_caller``), so a raise is known to be that
plugin's. Core's own plugin (:mod:`sol.builtin`, registered as "core") failing is sol itself
failing: that error is raised, and nothing counts as loaded, so the next use tries again.
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
from sol.roles import CORE_PLUGIN

PLUGIN_API = (1, 5)
"""The plugin API this core implements (:mod:`sol.plugin_api` lists it and states what a minor
and a major bump mean); plugins declare a range it must fall in. 1.1: the facade
``sol.plugin_api`` and ``DeviceCapabilities.unsupported_ops``. 1.2: device memory (``DeviceMemory``,
``Buffer``, ``Device.memory``, ``Program.run``), ``DeviceCapabilities.concurrent_calls``, the op
table's fields (``OpDef.flops``, ``c_expr``, ``c_loops``) and the names they need,
``physical_cores``. 1.4: ``LinAlgError`` and ``Dialect.linalg_errors`` (a failed factorization
check reported apart from an index out of range). 1.5: ``Dialect.function`` (how the generator's
helper functions are declared: a GPU dialect adds its device qualifier) and
``Frontend.example_device`` (where the example tensors live: a GPU's tensors pick its device), and
``fits_epilogue`` (an element-wise op a device's own compute kernel can absorb)."""

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


CORE = CORE_PLUGIN  # the name core's own plugin (sol.builtin) is registered under

_pm: pluggy.PluginManager | None = None
_records: dict[str, PluginRecord] = {}
_failed: dict[str, PluginRecord] = {}  # installed plugins that failed to load, were refused or withdrawn
_roles: Roles | None = None
_commands: Any = None
# The registries filled so far, by role ("op", "frontend", ...): where a withdrawn plugin's
# names are taken out again, and where `sol plugins` reads what each plugin provides.
_registries: dict[str, Any] = {}
_filling_ops = False  # the ops hook is running (on the thread holding _LOCK): lookups from it must not recurse
ROLE_ORDER = ("frontend", "device", "backend", "command", "passes", "op")


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

    try:
        _register(builtin, CORE, distribution="sol-core")
        if os.environ.get("SOL_PLUGIN_AUTOLOAD", "1") != "0":
            _load_entry_points()
        pm.check_pending()
    except BaseException:
        _pm = None  # not half a manager: the next use starts over (and fails the same way, visibly)
        _records.clear()
        _failed.clear()
        raise
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
    record.roles = []
    _failed[record.name] = record
    log.warning("sol plugin %r (%s, %s) is not used: %s", record.name, record.distribution, record.module, reason)


def _withdraw(name: str, reason: str) -> None:
    """Take plugin ``name`` out: its names from every registry filled so far, its hooks from the
    manager (none of them is called again), its record to :func:`failed` with ``reason``."""
    assert name != CORE, "core's own plugin is never withdrawn: its failure is raised"
    if name in _failed:
        return
    for registry in _registries.values():
        for item in registry.claims.owned_by(name):
            registry.remove(item)
    if _pm is not None and _pm.get_plugin(name) is not None:
        _pm.unregister(name=name)
    record = _records.pop(name, None) or PluginRecord(name, "?", "?", "?", "?")
    _fail(record, reason)


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
    _registries.clear()
    from sol.ops import registry as ops_registry_module

    ops_registry_module.registry.clear()
    ops_registry_module._loaded = False


def _call_each(hook_name: str, registry: Any, role: str) -> None:
    """Call one registration hook plugin by plugin, in registration order (core first). Each
    plugin's call is a transaction: if it raises, or registers a name another plugin has too,
    the plugin is withdrawn (:func:`_withdraw`) with whatever it registered here or earlier."""
    pm = manager()
    _registries[role] = registry
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    # Core first even against a plugin's `trylast`: a plugin taking one of core's names must be
    # the one refused, never core.
    for impl in sorted(impls, key=lambda impl: impl.plugin_name != CORE):
        if pm.get_plugin(impl.plugin_name) is impl.plugin:  # not withdrawn by an earlier clash
            _call_one(pm, hook_name, impl.plugin, impl.plugin_name, registry)


def _call_one(pm: pluggy.PluginManager, hook_name: str, plugin: object, name: str, registry: Any) -> None:
    error: Exception | None = None
    registry.current_plugin = name
    try:
        only_this: Callable[..., Any] = pm.subset_hook_caller(
            hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not plugin])
        only_this(registry=registry)
    except Exception as exc:
        if name == CORE:
            raise
        error = exc
    finally:
        registry.current_plugin = "?"
    clashes = registry.claims.involving(name)
    for clash in clashes:  # every plugin of a clash goes, the one registering first too
        for other in clash.plugins:
            _withdraw(other, f"refused: {clash.message()}")
    if error is not None and not clashes:
        _withdraw(name, f"failed in {hook_name}: {type(error).__name__}: {error}")


def load_ops() -> None:
    """Fill the op registry (``sol.ops.registry.registry``) from every plugin's ops hook, once;
    :func:`sol.ops.registry._ensure_loaded` calls it at the first lookup."""
    global _filling_ops
    from sol.ops import registry as ops

    with _LOCK:
        if ops._loaded or _filling_ops:  # done, or a hook of the fill reading the registry
            return
        _filling_ops = True
        try:
            ops.registry.clear()
            _call_each("sol_register_ops", ops.registry, "op")
            ops._loaded = True
        except BaseException:  # core's own ops failed: nothing half-filled stays behind
            ops.registry.clear()
            _registries.pop("op", None)
            raise
        finally:
            _filling_ops = False


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
    try:
        _call_each("sol_register_frontends", r.frontends, "frontend")
        _call_each("sol_register_devices", r.devices, "device")
        _call_each("sol_register_backends", r.backends, "backend")
        _call_each("sol_register_passes", r.passes, "passes")
        r.commands = commands()
    except BaseException:  # core's own registration failed: these registries are dropped
        for role in ("frontend", "device", "backend", "passes"):
            _registries.pop(role, None)
        raise
    _drop_orphan_backends(r)
    note = _failed_note()
    for registry in (r.frontends, r.devices, r.backends):
        registry.unknown_note = note
    _roles = r
    return r


def _drop_orphan_backends(r: Roles) -> None:
    """A backend registered for a device whose plugin was withdrawn afterwards serves nothing:
    its plugin is refused, as it would have been had the device been missing from the start."""
    while True:
        orphan = next((b for b in r.backends if b.device not in r.devices), None)
        if orphan is None:
            return
        owner = r.backends.owner(orphan.name)
        if owner == CORE:
            raise PluginError(f"core's backend {orphan.name!r} lost its device {orphan.device!r}")
        _withdraw(owner, f"refused: backend {orphan.name!r} is for device {orphan.device!r}, whose plugin "
                         f"is not in use")


def _failed_note() -> str:
    """What "unknown device 'x'" adds when installed plugins are not in use: x may be one of them."""
    if not _failed:
        return ""
    listed = "; ".join(f"{rec.name}: {rec.error}" for rec in _failed.values())
    return f"; installed plugins not in use (see `sol plugins`): {listed}"


def commands() -> Any:
    """The CLI subcommands plugins registered (a :class:`sol.commands.CommandRegistry`). Needs
    only the plugin manager, not the other roles, so the CLI starts without loading ops."""
    global _commands
    if _commands is not None:
        return _commands
    with _LOCK:
        if _commands is None:
            from sol.commands import CommandRegistry

            registry = CommandRegistry()
            try:
                _call_each("sol_register_commands", registry, "command")
            except BaseException:
                _registries.pop("command", None)
                raise
            _commands = registry
        return _commands


def records() -> list[PluginRecord]:
    """The plugins in use, with the roles each registered (``"device:x86"``, ``"op:relu"``...)."""
    roles()
    for rec in _records.values():
        rec.roles = [f"{role}:{item}" for role in ROLE_ORDER if role in _registries
                     for item in _registries[role].claims.owned_by(rec.name)]
    return list(_records.values())


def failed() -> list[PluginRecord]:
    """Installed plugins sol is not using, each with its ``error`` (why). Fills the registries
    first: a registration hook that raises is found only by calling it."""
    roles()
    return list(_failed.values())


def frontend_module(name: str) -> str | None:
    """The module behind ``sol.<name>``, or None if no installed frontend has that name."""
    r = roles()
    return r.frontends.get(name).module if name in r.frontends else None


def missing_frontend_message(name: str) -> str:
    return (f"No module named 'sol.{name}': no sol frontend plugin named {name!r} is installed "
            f"(try: pip install sol-frontend-{name}); installed frontends: "
            f"{', '.join(roles().frontends.names()) or 'none'}")

