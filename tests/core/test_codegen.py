"""Template rendering helpers: compiled templates kept across processes, never trusted blindly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sol import codegen


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway template package and a private cache; environments made anew around the test."""
    pkg = tmp_path / "src" / "soltesttemplates"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "templates" / "t.j2").write_text("{{ x }}!")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    codegen.environment.cache_clear()
    yield pkg
    codegen.environment.cache_clear()
    sys.modules.pop("soltesttemplates", None)


def _render_fresh(x: int) -> str:
    codegen.environment.cache_clear()  # as a new process would: nothing compiled in memory
    return codegen.render("soltesttemplates", "t.j2", x=x)


def test_compiled_templates_are_kept_in_the_cache(package: Path, tmp_path: Path) -> None:
    assert _render_fresh(1) == "1!"
    kept = list((tmp_path / "cache" / ".jinja2").iterdir())
    assert len(kept) == 1
    assert _render_fresh(2) == "2!"


def test_an_edited_template_is_not_served_from_the_cache(package: Path) -> None:
    assert _render_fresh(1) == "1!"
    (package / "templates" / "t.j2").write_text("{{ x }}?")
    assert _render_fresh(1) == "1?"


def test_a_damaged_entry_is_compiled_again(package: Path, tmp_path: Path) -> None:
    assert _render_fresh(1) == "1!"
    for entry in (tmp_path / "cache" / ".jinja2").iterdir():
        entry.write_bytes(entry.read_bytes()[:40])  # truncated mid-way
    assert _render_fresh(3) == "3!"
