"""The example device (examples/device_c, issue #16 item 5) stays what it proves: a device written
against the plugin API only, small enough to read. Its wheel's run of the conformance kit is in
test_wheels.py."""

from __future__ import annotations

import ast
from pathlib import Path

import sol.plugin_api

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "device_c"
MAX_LINES = 300


def _sources() -> list[Path]:
    files = sorted((EXAMPLE / "src").rglob("*.py"))
    assert files, f"no Python files under {EXAMPLE / 'src'}"
    return files


def _sol_imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    """(module, names) of every import of sol or a module of it, anywhere in the file (functions
    and TYPE_CHECKING blocks included)."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.split(".")[0] == "sol"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sol":
            found.append((node.module or "", [a.name for a in node.names]))
    return found


def test_example_imports_only_the_plugin_api() -> None:
    """From sol it imports ``sol.plugin_api`` and names that module lists; no dynamic import can
    reach around it."""
    api = set(sol.plugin_api.names())
    seen = set()
    for path in _sources():
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
        for module, names in _sol_imports(tree):
            assert module == "sol.plugin_api" and names, f"{path.name} imports {module} {names}: only " \
                                                        f"'from sol.plugin_api import ...' is allowed"
            unknown = sorted(set(names) - api)
            assert not unknown, f"{path.name} imports {unknown}, which sol.plugin_api does not list"
            seen.update(names)
        assert "importlib" not in text and "__import__" not in text, f"{path.name} imports dynamically"
    assert {"Device", "Dialect", "CRenderer", "Program"} <= seen  # it does use the generator and the API


def test_example_python_is_at_most_300_lines() -> None:
    """Every line of its Python (comments, docstrings and blank lines included); templates don't count."""
    lines = {p.name: len(p.read_text().splitlines()) for p in _sources()}
    assert sum(lines.values()) <= MAX_LINES, lines
