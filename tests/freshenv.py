"""Fresh virtual environments for packaging tests, with the test environment's torch shared.

pip must never resolve a torch (an unpinned one is a multi-GB CUDA build): :func:`share_torch`
makes this environment's torch, and the distributions it needs, visible to the fresh one through
a ``.pth`` file pointing at a folder of links to exactly those. Sharing the whole site-packages
instead would also share TensorFlow, matplotlib, ... and the metadata (entry points) of the test
environment's own sol installs, so the fresh environment would not be fresh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

# Needed by torch's metadata, but each environment brings its own (its .pth files would run twice).
_NOT_SHARED = {"setuptools", "pip", "wheel"}


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600, **kw) -> str:  # type: ignore[no-untyped-def]
    """Run ``cmd``; its stdout, or an assertion error with all of its output."""
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, **kw)
    assert out.returncode == 0, f"{' '.join(cmd)} failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def clean_env(venv: Path) -> dict[str, str]:
    """This process's environment without sol's settings, with a private compile cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOL_") and k != "PYTHONPATH"}
    env["SOL_CACHE_DIR"] = str(venv / "cache")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def site_packages(venv: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(run([str(venv / "bin" / "python"), "-c", code]).strip())


def _closure(name: str) -> list[metadata.Distribution]:
    """``name``'s distribution and those it requires (markers evaluated here), transitively."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in found or key in _NOT_SHARED:
            continue
        found[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


def share_torch(venv: Path) -> Path:
    """Make this environment's torch importable (and installed, for pip) in ``venv``; returns
    the folder of links."""
    shared = venv / "host-torch"
    shared.mkdir(exist_ok=True)
    for dist in _closure("torch"):
        root = Path(str(dist.locate_file("")))
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] not in ("..", "__pycache__")}:
            if (root / top).exists() and not (shared / top).exists() and not top.endswith(".pth"):
                (shared / top).symlink_to(root / top)
    (site_packages(venv) / "host-torch.pth").write_text(str(shared) + "\n")
    return shared


def make_venv(path: Path) -> Path:
    """A virtual environment without pip: pip runs from this environment with ``--python``."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path


def pip(venv: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args,
                "--disable-pip-version-check", "-q"], env=env)
