"""Cache damage and misconfiguration through ``sol.pytorch.optimize`` (issue #14, items 6 and 7):
a damaged compile-cache entry is rebuilt, an unusable compiler or cache is a sol error that
names the setting, the path and what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sol import cache  # noqa: E402
from sol.errors import CacheError, CompileError, SolError  # noqa: E402
from sol.pytorch import optimize  # noqa: E402


class Small(nn.Module):
    """Element-wise only: one generated loop, no oneDNN (no runtime library to build)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 3 - 1


def _check(fast: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture
def no_background_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """The x86 device starts building its oneDNN runtime library on a thread in ``prepare``; these
    models never need it, and a build racing the test's cache changes helps nobody."""
    from sol_x86 import compiler

    monkeypatch.setattr(compiler.RUNTIME, "start", lambda: None)


def _damage(entry: Path, how: str) -> None:
    if how == "manifest-list":
        (entry / cache.MANIFEST).write_text("[]")
    elif how == "manifest-int":
        (entry / cache.MANIFEST).write_text('{"artifact": 3}')
    else:
        shutil.rmtree(entry)
        if how == "file":
            entry.write_text("not a directory")
        else:
            entry.symlink_to(entry)  # a loop


def test_damaged_entries_are_rebuilt_through_optimize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    model, x = Small().eval(), torch.randn(4, 7)
    fast = optimize(model, x, device="x86", trace_cache=False)
    entry = tmp_path / "cache" / fast.program.info["cache_key"]
    assert entry.is_dir()
    for how in ("manifest-list", "manifest-int", "file", "symlink-loop"):
        _damage(entry, how)
        again = optimize(model, x, device="x86", trace_cache=False)
        _check(again, model, x)
        assert entry.is_dir() and not entry.is_symlink(), how


def test_nonexistent_sol_cxx_is_a_compile_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOL_CXX", "/nonexistent/bin/g++")
    with pytest.raises(CompileError, match=r"SOL_CXX='/nonexistent/bin/g\+\+' is not an executable .*"
                                           r"set SOL_CXX to a compiler"):
        optimize(Small().eval(), torch.randn(2, 3), device="x86", trace_cache=False)


def test_unwritable_sol_cache_dir_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        no_background_build: None) -> None:
    """Where SOL_CACHE_DIR names a folder that cannot be written (here: a path through a regular
    file, which fails for root too), optimize says so instead of a raw OSError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SOL_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(CacheError, match=r"SOL_CACHE_DIR=\S*a-file/cache is not writable") as err:
        optimize(Small().eval(), torch.randn(2, 3), device="x86")
    assert isinstance(err.value, SolError) and "point SOL_CACHE_DIR to a writable folder" in str(err.value)


def test_unwritable_default_cache_falls_back_with_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              no_background_build: None) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv("SOL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.setattr(cache, "_fallback", None)
    model = Small().eval()
    try:
        with pytest.warns(UserWarning, match="is not writable") as warned:
            x = torch.randn(5, 2)
            fast = optimize(model, x, device="x86")
            _check(fast, model, x)
            fast2 = optimize(model, torch.randn(3, 4), device="x86")
            _check(fast2, model, torch.randn(3, 4))
        assert len([w for w in warned if "not writable" in str(w.message)]) == 1
        assert "SOL_CACHE_DIR" in str(warned[0].message)
    finally:
        fallback = cache._fallback
        if fallback is not None:
            shutil.rmtree(fallback, ignore_errors=True)


def test_cache_info_counts_what_optimize_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str], no_background_build: None) -> None:
    """``sol cache info`` / ``clear`` on a cache optimize filled (entries, compiled templates)."""
    from sol import cli

    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    optimize(Small().eval(), torch.randn(2, 9), device="x86", trace_cache=False)
    assert cli.main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert " entries" in out and "temporaries" not in out
    assert cli.main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")] == []
