"""Each distribution installs on its own: core alone works with no framework and no device, core
and one device plugin run networks built in sol's IR through ``sol.optimize``, each plugin
appears in `sol plugins` once installed, a frontend whose framework is missing says what to
install, and a plugin that fails to load, that core refuses or whose registration hook raises is a
row saying why while the others work. Uses a fresh virtual environment; the test environment's
torch is shared (pip never resolves one)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from freshenv import clean_env, run, share_torch, site_packages

from sol.plugins import PLUGIN_API

ROOT = Path(__file__).resolve().parents[2]
API = ".".join(map(str, PLUGIN_API))  # this sol-core's plugin API version
TORCH_MISSING = "torch is not installed (pip install torch)"
TF_MISSING = "tensorflow is not installed (pip install tensorflow)"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", str(path)])
    return path


# The SX-Aurora README's promise, on x86: with sol-core and a device plugin only, an IR network
# runs through the public API, NumPy in and out, NaN where the reference has NaN.
IR_SCRIPT = textwrap.dedent("""
    import importlib.util, sys
    import numpy as np
    import sol
    from sol.debug import run_reference
    from sol.ir import Graph, TensorType

    assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("tensorflow") is None
    rng = np.random.default_rng(0)
    g = Graph("ir_only")
    x = g.add_input("x", TensorType((2, 3, 12, 12)))
    w = g.add_param("w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    y = g.add_node("conv2d", [x, w], {"padding": 1}).output
    y = g.add_node("tanh", [y]).output
    y = g.add_node("avg_pool2d", [y], {"kernel": 2}).output
    y = g.add_node("reshape", [y], {"shape": (2, -1)}).output
    y = g.add_node("dense", [y, g.add_param("fc", rng.standard_normal((10, 288)).astype(np.float32) * 0.1)]).output
    g.outputs = [g.add_node("log_softmax", [y], {"axis": 1}).output]
    xs = rng.standard_normal((2, 3, 12, 12)).astype(np.float32)
    fast = sol.optimize(g, xs, device="x86")
    [got] = fast(xs)
    np.testing.assert_allclose(got, run_reference(g, [xs])[0], rtol=1e-4, atol=1e-5)
    xs[1, 2, 5, 7] = np.nan
    [got] = fast(xs)
    assert np.isfinite(got[0]).all() and np.isnan(got[1]).all(), got
    np.testing.assert_allclose(got, run_reference(g, [xs])[0], rtol=1e-4, atol=1e-5, equal_nan=True)
    print("ran", fast)
""")

RAISING_PLUGIN = (
    'SOL_PLUGIN_API = ">=1.0,<2"\n'
    "import pluggy\n"
    "@pluggy.HookimplMarker('sol')\n"
    "def sol_register_devices(registry):\n"
    "    raise RuntimeError('libnpu.so: cannot open shared object file')\n"
)


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
    assert "ran <sol CompiledGraph ir_only on x86" in run([str(venv / "bin" / "python"), "-c", IR_SCRIPT], env=env)

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

    # A plugin whose import fails, one core refuses (plugin API 2) and one whose registration hook
    # raises: rows with the reason, exit status 1, and the other plugins still work.
    site = site_packages(venv)
    _fake_plugin(site, "sol-broken-example", "broken = sol_broken_example_missing.plugin")
    _fake_plugin(site, "sol-old-vendor", "oldvendor = sol_old_vendor_plugin", 'SOL_PLUGIN_API = ">=2.0,<3"\n')
    _fake_plugin(site, "sol-npu", "npu = sol_npu_plugin", RAISING_PLUGIN)
    result = subprocess.run([sol, "plugins"], capture_output=True, text=True, env=env)
    assert result.returncode == 1, result.stderr
    assert "3 installed plugins not in use: broken, oldvendor, npu" in result.stderr
    npu = _row(result.stdout, "npu")
    assert "sol-npu" in npu
    assert npu.endswith("failed in sol_register_devices: RuntimeError: libnpu.so: cannot open shared object file")
    broken = _row(result.stdout, "broken")
    assert "sol-broken-example" in broken and "0.3" in broken
    assert broken.endswith("failed to load: ModuleNotFoundError: No module named 'sol_broken_example_missing'")
    old = _row(result.stdout, "oldvendor")
    assert "refused: plugin 'oldvendor' (sol-old-vendor) supports sol plugin API >=2.0,<3, but this sol-core " \
           f"implements plugin API {API}" in old
    assert "x86: available" in _row(result.stdout, "x86")  # the others still work
    assert "ran <sol CompiledGraph" in run([str(venv / "bin" / "python"), "-c", IR_SCRIPT], env=env)
    for fake in ("sol_broken_example", "sol_old_vendor", "sol_npu"):  # the rest of the test as before
        for path in site.glob(f"{fake}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()

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
