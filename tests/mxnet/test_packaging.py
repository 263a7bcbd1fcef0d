"""sol for MXNet users as a packager sees it (issue #19 item 7): the wheels of sol-core,
sol-device-x86 and sol-frontend-mxnet (built offline from clean copies of their folders) install
with ``mxnet==1.9.1`` and ``numpy<1.24`` into a fresh virtual environment, where a small Gluon
block optimized by sol matches MXNet; the plugin does not require ``mxnet`` (users have ``mxnet``,
``mxnet-mkl`` or ``mxnet-cu*``: pip cannot express "any of them")."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("mxnet.gluon", reason="MXNet 1.9 lives in its own environment (scripts/env_mxnet.sh)")

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"sol-core": "sol_core", "sol-device-x86": "plugins/device_x86",
           "sol-frontend-mxnet": "plugins/frontend_mxnet"}
PINS = ["mxnet==1.9.1", "numpy==1.23.5"]  # as scripts/env_mxnet.sh installs them

SNIPPET = """
import importlib.metadata as md
import mxnet as mx
import numpy as np
import sol.mxnet, sol_mxnet, sol_x86
from mxnet import gluon

net = gluon.nn.HybridSequential()
net.add(gluon.nn.Conv2D(4, 3, padding=1, in_channels=3), gluon.nn.BatchNorm(in_channels=4), gluon.nn.Activation("relu"),
        gluon.nn.GlobalAvgPool2D(), gluon.nn.Dense(5, in_units=4))
net.initialize(mx.init.Xavier())
x = mx.nd.random.uniform(shape=(2, 3, 8, 8))
fast = sol.mxnet.optimize(net, x, device="x86", fallback=False)
np.testing.assert_allclose(fast(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)
requires = md.requires("sol-frontend-mxnet") or []
assert not any(r.lower().startswith("mxnet") for r in requires), requires
print("mxnet ok", np.__version__, mx.__version__, sol_mxnet.__file__)
"""

pytestmark = pytest.mark.slow


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def _wheel(dist: str, tmp: Path) -> Path:
    """The distribution's wheel, built offline from a copy without build leftovers."""
    source = tmp / "src" / Path(FOLDERS[dist]).name
    shutil.copytree(ROOT / FOLDERS[dist], source,
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
          str(source)])
    stem = dist.replace("-", "_")
    return next((tmp / "dist").glob(f"{stem}-*.whl"))


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA")))
    return email.message_from_bytes(meta).get_all("Requires-Dist") or []


def test_wheels_install_with_mxnet_191_in_a_fresh_environment(tmp_path: Path) -> None:
    wheels = [_wheel(dist, tmp_path) for dist in FOLDERS]
    names = {r.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip().lower()
             for r in _requires(wheels[-1])}
    assert names == {"sol-core", "numpy"}, names  # no mxnet pin: the user's MXNet distribution stays
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOL_") and k != "PYTHONPATH"}
    env["SOL_CACHE_DIR"] = str(tmp_path / "cache")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # this environment's pip installs into the fresh one (--python): no pip bootstrap there
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check",
          *map(str, wheels), *PINS], env=env)
    out = _run([python, "-c", SNIPPET], env=env, timeout=180)
    assert "mxnet ok 1.23.5 1.9.1" in out and str(venv) in out  # the installed wheel, not the repository
    check = subprocess.run([sys.executable, "-m", "pip", "--python", python, "check"], capture_output=True, text=True,
                           env=env)
    assert check.returncode == 0, check.stdout + check.stderr
