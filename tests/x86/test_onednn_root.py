"""``SOL_ONEDNN_ROOT`` chooses the oneDNN sol builds against even where the PyPI wheels are
installed (it used to be read only when they were not), and its version comes from its own
header (a cache key: two roots must not share compiled glue)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sol_x86 import libraries


def _fake_root(root: Path, version: tuple[int, int, int]) -> Path:
    (root / "include/oneapi/dnnl").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "include/oneapi/dnnl/dnnl.hpp").write_text("// header\n")
    major, minor, patch = version
    (root / "include/oneapi/dnnl/dnnl_version.h").write_text(
        f"#define DNNL_VERSION_MAJOR {major}\n#define DNNL_VERSION_MINOR {minor}\n#define DNNL_VERSION_PATCH {patch}\n")
    (root / "lib/libdnnl.so").write_bytes(b"")
    return root


def test_the_chosen_root_wins_over_installed_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _fake_root(tmp_path / "dnnl", (3, 13, 2))
    monkeypatch.setenv("SOL_ONEDNN_ROOT", str(root))
    libraries.find_onednn.cache_clear()
    try:
        found = libraries.find_onednn()
    finally:
        monkeypatch.delenv("SOL_ONEDNN_ROOT")
        libraries.find_onednn.cache_clear()
    assert found == libraries.OneDNNInstall(root / "include", root / "lib", "3.13.2")


def test_a_chosen_root_without_onednn_finds_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_ONEDNN_ROOT", str(tmp_path))
    libraries.find_onednn.cache_clear()
    try:
        assert libraries.find_onednn() is None  # said as unavailable, not silently another oneDNN
        assert str(tmp_path) in libraries.OneDNNBackend().availability().detail
    finally:
        monkeypatch.delenv("SOL_ONEDNN_ROOT")
        libraries.find_onednn.cache_clear()
