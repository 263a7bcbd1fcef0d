"""The compile cache: reuse, damage detection, concurrent writers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sol import cache


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    return tmp_path


def _build(payload: bytes):  # type: ignore[no-untyped-def]
    calls = []

    def build(tmp: Path) -> Path:
        calls.append(tmp)
        out = tmp / "lib.so"
        out.write_bytes(payload)
        return out

    return build, calls


def test_second_lookup_hits() -> None:
    build, calls = _build(b"abc")
    a, hit1 = cache.get_or_build("k1", build)
    b, hit2 = cache.get_or_build("k1", build)
    assert (hit1, hit2) == (False, True) and a == b and len(calls) == 1
    assert a.read_bytes() == b"abc"


def test_damaged_entry_is_rebuilt_not_loaded(caplog: pytest.LogCaptureFixture) -> None:
    build, calls = _build(b"good")
    art, _ = cache.get_or_build("k2", build)
    art.write_bytes(b"corrupted")
    again, hit = cache.get_or_build("k2", build)
    assert not hit and len(calls) == 2 and again.read_bytes() == b"good"
    assert "damaged" in caplog.text


def test_entry_without_manifest_is_rebuilt(_private_cache: Path) -> None:
    (_private_cache / "k3").mkdir()
    (_private_cache / "k3" / "lib.so").write_bytes(b"half")
    build, calls = _build(b"full")
    art, hit = cache.get_or_build("k3", build)
    assert not hit and art.read_bytes() == b"full"


def test_failed_build_leaves_nothing_behind(_private_cache: Path) -> None:
    def boom(tmp: Path) -> Path:
        (tmp / "partial").write_text("x")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k4", boom)
    assert list(_private_cache.iterdir()) == []


_WORKER = """
import sys
from sol import cache
art, _ = cache.get_or_build("shared", lambda tmp: (tmp / "a.bin").write_bytes(b"x" * 100000) and tmp / "a.bin")
sys.stdout.write(art.read_bytes()[:10].decode())
"""


def test_concurrent_processes_agree(_private_cache: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs == ["x" * 10] * 4
    assert [p.name for p in _private_cache.iterdir()] == ["shared"]
