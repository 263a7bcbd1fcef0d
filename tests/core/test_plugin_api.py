"""The plugin-facing API (sol.plugin_api): every name it lists exists, its lazy table and its
type-checking imports agree, and the in-tree plugins (plugins/*/src) use from core only what it
lists: third-party plugins get exactly what ours get (issue #16 item 5).

An in-tree plugin importing a facade name through its internal module (``from sol.roles import
Device``: the same object) passes; those imports are to move to ``sol.plugin_api``, and
``python tests/core/test_plugin_api.py`` prints the list. An import of a name the facade does not
list fails here: add the name to the facade (if a third-party plugin would need it too) or to
EXCEPTIONS with the reason it stays internal.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import sol.plugin_api as api

ROOT = Path(__file__).resolve().parents[2]
FACADE = "sol.plugin_api"

# (module, name) -> where it comes from in the facade. Identity-resolvable pairs (the same
# object under a facade name) are found automatically; these are the module imports.
MODULE_MOVES = {
    ("sol", "cache"): "cache_dir, cache_key, cache_lookup, cache_get_or_build, cache_discard",
    ("sol", "progress"): "progress_step",
    ("sol", "device_select"): "selected_device, selected_device_index",
    ("sol", "fallback"): "mark_framework_node, partition",
    ("sol", "errors"): "the error classes by name (SolError, UnsupportedOpError, SolFallbackWarning, ...)",
}

# Internal names in-tree plugins use that stay out of the facade, each with the reason.
EXCEPTIONS = {
    ("sol", "*module*"): "sol_pytorch.locations reads sol's install folder (`import sol`; sol.__file__) to tell "
                         "sol's stack frames from the user's: the package itself, not an API",
}


def _declared_types() -> dict[str, tuple[str, str]]:
    """The facade's ``if TYPE_CHECKING:`` imports: name here -> (module, name there); the
    lowering's star import as ``*``."""
    tree = ast.parse(Path(api.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    found = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names:
            found[alias.asname or alias.name] = (node.module, alias.name)
    return found


def test_every_facade_name_resolves() -> None:
    missing = []
    for name in api.names():
        try:
            getattr(api, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert not missing, "sol.plugin_api lists names core does not have:\n" + "\n".join(missing)


def test_type_checking_imports_match_the_table() -> None:
    assert _declared_types() == {**api._EXPORTS, "*": (api.LOWERING, "*")}


def test_lowering_names_come_through_the_facade() -> None:
    import sol.lowering

    assert sol.lowering.__all__, "sol.lowering lists its public names"
    for name in sol.lowering.__all__:
        assert getattr(api, name) is getattr(sol.lowering, name)


def test_an_internal_name_is_refused_with_a_pointer_to_the_guide() -> None:
    with pytest.raises(AttributeError, match="not part of the plugin API.*PLUGIN_GUIDE"):
        api.plan_graph  # noqa: B018


def test_importing_the_facade_loads_nothing_heavy() -> None:
    """``sol plugins`` imports every plugin's entry point: the facade must not pull in the
    planner, lowering or templates until a name is used."""
    code = ("import sys, sol; before = set(sys.modules); import sol.plugin_api; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith(('sol', 'jinja2', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['sol.plugin_api']", out


def _core_imports() -> dict[tuple[str, str], set[str]]:
    """(module, name) -> plugin files, for every import of sol-core in plugins/*/src."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted(ROOT.glob("plugins/*/src/**/*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    (node.module == "sol" or node.module.startswith("sol.")):
                for alias in node.names:
                    found.setdefault((node.module, alias.name), set()).add(where)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "sol" or alias.name.startswith("sol."):
                        found.setdefault((alias.name, "*module*"), set()).add(where)
    return found


def _facade_name_of(module: str, name: str) -> str | None:
    """The facade name for the object ``module.name`` (same object), or None."""
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    if isinstance(obj, type(sys)):  # a module: never a facade name
        return None
    return next((n for n in api.names() if n not in ("hookimpl", "LOWERING") and getattr(api, n) is obj), None)


def to_move() -> dict[tuple[str, str], str]:
    """The in-tree plugins' imports that should come from sol.plugin_api: (module, name) -> facade name(s)."""
    moves = {}
    for (module, name) in _core_imports():
        if module == FACADE:
            continue
        facade = _facade_name_of(module, name) or MODULE_MOVES.get((module, name))
        if facade:
            moves[(module, name)] = facade
    return moves


def test_plugins_import_only_facade_names_from_core() -> None:
    bad = []
    for (module, name), files in sorted(_core_imports().items()):
        if module == FACADE:
            if name not in api.names():
                bad.append(f"from {module} import {name} ({', '.join(sorted(files))}): not in the facade")
            continue
        if (module, name) in EXCEPTIONS or _facade_name_of(module, name) or (module, name) in MODULE_MOVES:
            continue
        bad.append(f"from {module} import {name} ({', '.join(sorted(files))}): internal; add it to "
                   f"sol.plugin_api or to EXCEPTIONS here with the reason")
    assert not bad, "in-tree plugins import core internals:\n" + "\n".join(bad)


def test_exceptions_are_still_used() -> None:
    """A listed exception no plugin needs any more is dropped from the list."""
    stale = set(EXCEPTIONS) - set(_core_imports())
    assert not stale, f"EXCEPTIONS lists imports no plugin makes: {sorted(stale)}"


if __name__ == "__main__":  # the migration list: python tests/core/test_plugin_api.py
    for (module, name), facade in sorted(to_move().items()):
        print(f"from {module} import {name:28} -> from sol.plugin_api import {facade}")
