"""Each distribution installs on its own: core alone works with no framework and no device, and
each plugin appears in `sol plugins` once installed. Uses a fresh virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], **kw) -> str:  # type: ignore[no-untyped-def]
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(path)])
    return path


def test_core_alone_then_each_plugin(venv: Path) -> None:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-build-isolation"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOL_")}
    env["SOL_CACHE_DIR"] = str(venv / "cache")
    _run(pip[:-2] + ["--upgrade", "setuptools>=77"], env=env)  # the venv's bundled one predates PEP 639
    _run(pip + [str(ROOT / "sol_core")], env=env)
    sol = str(venv / "bin" / "sol")
    out = _run([sol, "plugins"], env=env)
    assert "no frontend installed" in out and "no device installed" in out
    _run([str(venv / "bin" / "python"), "-c",
          "import importlib.util, sys, sol; assert importlib.util.find_spec('torch') is None; "
          "assert 'sol_x86' not in sys.modules"], env=env)

    _run(pip + [str(ROOT / "plugins" / "device_x86")], env=env)
    out = _run([sol, "plugins"], env=env)
    assert "x86" in out and "sol-device-x86" in out and "no frontend installed" in out

    # The frontend needs torch; give the venv the test environment's torch rather than letting
    # pip resolve one (it would download a CUDA build).
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = _run([str(venv / "bin" / "python"), "-c", purelib]).strip()
    torch_dir = Path(__import__("torch").__file__).parents[1]
    Path(site, "host-torch.pth").write_text(str(torch_dir) + "\n")
    _run(pip + ["--no-deps", str(ROOT / "plugins" / "frontend_pytorch")], env=env)
    out = _run([sol, "plugins"], env=env)
    assert "pytorch" in out and "sol-frontend-pytorch" in out
