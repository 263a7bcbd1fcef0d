"""sol-frontend-onnx as a packager sees it: the wheel (built offline from a clean copy of the
folder) carries the README as long description, the licence, ``py.typed``, the ``sol`` entry
point, the version written once in ``sol_onnx.__version__``, depends on sol-core and onnx only,
and has onnxruntime as the ``fallback`` extra; importing the plugin module imports no onnx."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_metadata_licence_and_entry_point(tmp_path: Path) -> None:
    import sol_onnx

    source = tmp_path / "frontend_onnx"
    shutil.copytree(ROOT / "plugins" / "frontend_onnx", source,
                    ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("sol_frontend_onnx-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = email.message_from_bytes(z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))))
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert meta["Version"] == sol_onnx.__version__
    assert "sol_onnx/py.typed" in names and any(n.endswith("licenses/LICENSE") for n in names)
    assert "# sol-frontend-onnx" in meta.get_payload() and meta["Description-Content-Type"] == "text/markdown"
    requires = meta.get_all("Requires-Dist") or []
    assert {r.split(">")[0].split("<")[0].split(";")[0].strip() for r in requires} == {"sol-core", "onnx", "numpy",
                                                                                       "onnxruntime"}
    assert any(r.startswith("onnxruntime") and 'extra == "fallback"' in r for r in requires)
    assert "[sol]\nonnx = sol_onnx.plugin" in entry_points


def test_loading_the_plugin_imports_no_onnx() -> None:
    code = "import sys, sol_onnx.plugin, sol_onnx; print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
