"""The `sol` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _sol(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    return subprocess.run([sys.executable, "-m", "sol.cli", *args], capture_output=True, text=True, env=env)


def test_plugins_table_lists_devices_and_frontends() -> None:
    out = _sol("plugins")
    assert out.returncode == 0, out.stderr
    assert "x86" in out.stdout and "available" in out.stdout and "pytorch" in out.stdout


def test_inspect_seed_network(monkeypatch) -> None:
    # The seed's NCHW plan (AVX2 machines; SOL_X86_LAYOUT=nchw): bias, ReLU and pooling in one
    # loop nest per (batch, channel). On AVX-512 the channels-last plan is checked in
    # tests/x86/test_channels_last.py.
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")
    out = _sol("inspect", "zoo:SeedNet", "--input", "2,512,13,13", "--device", "x86")
    assert out.returncode == 0, out.stderr
    assert "library onednn" in out.stdout
    assert "depth-first over 2x1000" in out.stdout and "avg_pool2d" in out.stdout


def test_cache_info_and_clear(tmp_path: Path) -> None:
    env = {**os.environ, "SOL_CACHE_DIR": str(tmp_path)}
    (tmp_path / "abc").mkdir()
    out = subprocess.run([sys.executable, "-m", "sol.cli", "cache", "clear"], capture_output=True, text=True, env=env)
    assert "removed 1" in out.stdout
