"""Each distribution installs on its own: core alone works with no framework and no device, each
plugin appears in `sol plugins` once installed, a frontend whose framework is missing says what
to install, and a plugin that fails to load or that core refuses is a row saying why. Uses a
fresh virtual environment; the test environment's torch is shared (pip never resolves one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from freshenv import clean_env, run, share_torch, site_packages

ROOT = Path(__file__).resolve().parents[2]
TORCH_MISSING = "torch is not installed (pip install torch)"
TF_MISSING = "tensorflow is not installed (pip install tensorflow)"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(path)])
    return path


def _row(table: str, plugin: str) -> str:
    """The `sol plugins` row of ``plugin``."""
    rows = [line for line in table.splitlines() if line.split()[:1] == [plugin]]
    assert len(rows) == 1, f"no single row for {plugin!r} in:\n{table}"
    return rows[0]


def _fake_plugin(site: Path, dist: str, entry: str, module_source: str | None = None) -> None:
    """An installed distribution (metadata only) whose ``sol`` entry point is ``entry``."""
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[sol]\n{entry}\n")
    if module_source is not None:
        module = entry.split("=", 1)[1].strip()
        (site / f"{module}.py").write_text(module_source)


def test_core_alone_then_each_plugin(venv: Path) -> None:
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-build-isolation"]
    env = clean_env(venv)
    run(pip[:-2] + ["--upgrade", "setuptools>=77"], env=env)  # the venv's bundled one predates PEP 639
    run(pip + [str(ROOT / "sol_core")], env=env)
    sol = str(venv / "bin" / "sol")
    out = run([sol, "plugins"], env=env)
    assert "no frontend installed" in out and "no device installed" in out
    run([str(venv / "bin" / "python"), "-c",
         "import importlib.util, sys, sol; assert importlib.util.find_spec('torch') is None; "
         "assert 'sol_x86' not in sys.modules"], env=env)

    run(pip + [str(ROOT / "plugins" / "device_x86")], env=env)
    out = run([sol, "plugins"], env=env)
    assert "x86" in out and "sol-device-x86" in out and "no frontend installed" in out

    # Both frontends without their frameworks: installed and listed, each saying what is missing.
    run(pip + ["--no-deps", str(ROOT / "plugins" / "frontend_pytorch"), str(ROOT / "plugins" / "frontend_tensorflow")],
        env=env)
    out = run([sol, "plugins"], env=env)
    assert _row(out, "pytorch").endswith(f"pytorch: unavailable: {TORCH_MISSING}")
    assert _row(out, "tensorflow").endswith(f"tensorflow: unavailable: {TF_MISSING}")
    for frontend, name, missing in (("pytorch", "SolModule", TORCH_MISSING),
                                    ("tensorflow", "SolKerasModel", TF_MISSING)):
        failed = subprocess.run([str(venv / "bin" / "python"), "-c", f"from sol.{frontend} import {name}"],
                                capture_output=True, text=True, env=env)
        assert failed.returncode == 1
        assert f"ModuleNotFoundError: sol.{frontend}.{name} needs" in failed.stderr and missing in failed.stderr

    # A plugin whose import fails and one core refuses (plugin API 2): rows with the reason.
    site = site_packages(venv)
    _fake_plugin(site, "sol-broken-example", "broken = sol_broken_example_missing.plugin")
    _fake_plugin(site, "sol-old-vendor", "oldvendor = sol_old_vendor_plugin", 'SOL_PLUGIN_API = ">=2.0,<3"\n')
    result = subprocess.run([sol, "plugins"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    broken = _row(result.stdout, "broken")
    assert "sol-broken-example" in broken and "0.3" in broken
    assert broken.endswith("failed to load: ModuleNotFoundError: No module named 'sol_broken_example_missing'")
    old = _row(result.stdout, "oldvendor")
    assert "refused: plugin 'oldvendor' (sol-old-vendor) supports sol plugin API >=2.0,<3, but this sol-core " \
           "implements plugin API 1.0" in old
    assert "x86: available" in _row(result.stdout, "x86")  # the others still work

    share_torch(venv)
    out = run([sol, "plugins"], env=env)
    assert "pytorch: available (torch " in _row(out, "pytorch") and "sol-frontend-pytorch" in out
    assert _row(out, "tensorflow").endswith(TF_MISSING)  # only torch was shared
    run([str(venv / "bin" / "python"), "-c", "from sol.pytorch import SolModule; print(SolModule.__name__)"], env=env)


def test_frontend_availability_looks_the_framework_up_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: with the framework not importable, availability and the lazy names say what to
    install; with it importable, the frontend is available."""
    import sol_pytorch
    import sol_tensorflow
    from sol_pytorch.frontend import PyTorchFrontend
    from sol_tensorflow.frontend import TensorFlowFrontend

    assert PyTorchFrontend().availability().available and TensorFlowFrontend().availability().available
    for framework in ("torch", "tensorflow"):  # as if not installed: an import of it fails
        monkeypatch.setitem(sys.modules, framework, None)
    assert PyTorchFrontend().availability().detail == TORCH_MISSING
    assert TensorFlowFrontend().availability().detail == TF_MISSING
    with pytest.raises(ModuleNotFoundError, match=r"sol\.pytorch\.SolModule needs PyTorch: torch is not installed"):
        sol_pytorch.SolModule  # noqa: B018 (the lazy attribute is the test)
    with pytest.raises(ModuleNotFoundError, match=r"sol\.tensorflow\.SolKerasModel needs TensorFlow: tensorflow is"):
        sol_tensorflow.SolKerasModel  # noqa: B018
