"""The plugin registers without torch, and torch and TensorFlow work side by side."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_plugin_registers_and_works_without_torch() -> None:
    code = """
import sys
sys.modules["torch"] = None  # any import of torch fails
import sol.plugins
assert "tensorflow" in sol.plugins.roles().frontends.names()
assert "tensorflow" not in sys.modules and "keras" not in sys.modules  # lazy: nothing imported yet
import numpy as np, keras
from sol.tensorflow import optimize
m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
x = np.ones((1, 3), "float32")
np.testing.assert_allclose(optimize(m, x, device="x86")(x).numpy(), m(x).numpy(), rtol=1e-5)
print("ok")
"""
    assert _run(code).strip().endswith("ok")


def test_torch_and_tensorflow_side_by_side_in_one_process() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sol_pytorch")
    code = """
import numpy as np, torch, tensorflow as tf, keras
import sol
t = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()).eval()
k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
x = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
ot = sol.optimize(t, torch.from_numpy(x), device="x86")
ok = sol.optimize(k, x, device="x86")
assert isinstance(ot, torch.nn.Module) and isinstance(ok, keras.layers.Layer)
with torch.no_grad():
    np.testing.assert_allclose(ot(torch.from_numpy(x)).numpy(), t(torch.from_numpy(x)).numpy(), rtol=1e-5)
np.testing.assert_allclose(ok(x).numpy(), k(x).numpy(), rtol=1e-5)
print("ok")
"""
    assert _run(code).strip().endswith("ok")
