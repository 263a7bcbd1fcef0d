"""`pip install ./sol_core ./plugins/device_sxaurora` in a fresh virtual environment, with no
x86 plugin and no framework: `sol plugins` lists the VE, and a network built in sol's IR runs on
it (emulated here) and matches the NumPy reference."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import importlib.util, sys, warnings
    import numpy as np
    from sol.api import compile_graph
    from sol.debug import run_reference
    from sol.ir import Graph, TensorType

    assert importlib.util.find_spec("torch") is None and importlib.util.find_spec("sol_x86") is None
    rng = np.random.default_rng(0)
    g = Graph("ir_only")
    x = g.add_input("x", TensorType((2, 3, 12, 12)))
    w = g.add_param("w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3)
    y = g.add_node("conv2d", [x, w], {"padding": 1}).output
    y = g.add_node("relu", [y]).output
    y = g.add_node("max_pool2d", [y], {"kernel": 2}).output
    y = g.add_node("reshape", [y], {"shape": (2, -1)}).output
    y = g.add_node("dense", [y, g.add_param("fc", rng.standard_normal((10, 288)).astype(np.float32) * 0.1)]).output
    g.outputs = [g.add_node("log_softmax", [y], {"axis": 1}).output]
    xs = [rng.standard_normal((2, 3, 12, 12)).astype(np.float32)]
    want = run_reference(g, xs)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = compile_graph(g, "ve")
    assert any("runs emulated" in str(c.message) for c in caught)
    got = program(*xs)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    print("ran on", program.device, program.info["runs_on"])
""")


def _run(cmd: list[str], **kw) -> str:  # type: ignore[no-untyped-def]
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.slow
def test_core_and_ve_plugin_alone(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOL_")}
    env["SOL_CACHE_DIR"] = str(tmp_path / "cache")
    pip = [python, "-m", "pip", "install", "-q"]
    _run(pip + ["--upgrade", "setuptools>=77"], env=env)  # the venv's bundled one predates PEP 639
    _run(pip + ["--no-build-isolation", str(ROOT / "sol_core"), str(ROOT / "plugins" / "device_sxaurora")], env=env)
    out = _run([str(venv / "bin" / "sol"), "plugins"], env=env)
    assert "sol-device-sxaurora" in out and "device:ve" in out and "x86" not in out
    assert "emulated on host (no Vector Engine found)" in out and "no frontend installed" in out
    out = _run([python, "-c", SCRIPT], env={**env, "PYTHONWARNINGS": "ignore"}, cwd=tmp_path)
    assert "ran on ve emulated on host" in out
