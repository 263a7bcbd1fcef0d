"""``sol deploy`` from the command line: a PyTorch ``module:factory`` (an LSTM model) and an ONNX
file, then run through the example program like a user would."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sol import cli

from deploy_helpers import clean_env, compare, needs_gcc, run_example

pytestmark = needs_gcc

FACTORY = '''
import torch
from torch import nn


class LSTMNet(nn.Module):
    """An LSTM over a sequence, a linear head on its last step; also returns the final state."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return self.head(y[:, -1]), h


def make():
    torch.manual_seed(0)
    return LSTMNet()
'''


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """``sol deploy sol_deploy_factory:make --input-shape 3,5,8 --batch-sizes 1,3`` (in-process)."""
    folder = tmp_path_factory.mktemp("factory")
    (folder / "sol_deploy_factory.py").write_text(FACTORY)
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module("sol_deploy_factory")
        out = folder / "lstm"
        assert cli.main(["deploy", "sol_deploy_factory:make", "--input-shape", "3,5,8", "--batch-sizes", "1,3",
                         "--name", "lstm", "-o", str(out)]) == 0
        return module.make().eval(), out
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("sol_deploy_factory", None)


@pytest.mark.parametrize("batch", [1, 3])
def test_pytorch_factory_lstm(lstm: tuple[torch.nn.Module, Path], batch: int, tmp_path: Path) -> None:
    model, out = lstm
    x = torch.randn(batch, 5, 8)
    got = run_example(out, "lstm.weights", [x.numpy()], [np.dtype(np.float32)] * 2, tmp_path)
    with torch.no_grad():
        want = model(x)
    for g, w in zip(got, want):
        compare(g, w.numpy())


def _onnx_mlp(path: Path, op: str = "Relu") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x (N, 4) -> MatMul W1 -> Add b -> ``op`` -> MatMul W2 -> y (N, 3), saved to ``path``."""
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    w2 = rng.standard_normal((6, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Add", ["h", "b"], ["a"])]
    if op == "CumSum":
        # reverse=1: a running sum from the end, which sol does not convert
        nodes.append(helper.make_node("CumSum", ["a", "axis"], ["r"], name="my_cumsum", reverse=1))
    else:
        nodes.append(helper.make_node(op, ["a"], ["r"]))
    nodes.append(helper.make_node("MatMul", ["r", "W2"], ["y"]))
    inits = [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(w2, "W2"),
             numpy_helper.from_array(np.array(1, np.int64), "axis")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return w1, b, w2


def test_onnx_file_then_overwrite(tmp_path: Path, lstm: tuple[torch.nn.Module, Path]) -> None:
    pytest.importorskip("onnx")
    model_path = tmp_path / "mlp.onnx"
    w1, b, w2 = _onnx_mlp(model_path)
    out = tmp_path / "mlp"
    assert cli.main(["deploy", str(model_path), "--input-shape", "2,4", "--batch-sizes", "2,7", "-o", str(out)]) == 0
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)
    [got] = run_example(out, "net.weights", [x], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, np.maximum(x @ w1 + b, 0) @ w2)
    # Another deployment's weights: the stamp says so.
    _, lstm_dir = lstm
    done = subprocess.run(["./example", str(out / "net.weights")], cwd=lstm_dir, env=clean_env(), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1 and "LSTM_ERR_WEIGHTS" in done.stderr and "another deployment" in done.stderr
    # Not empty: refused; --overwrite replaces the earlier deployment's files and nothing else.
    (out / "notes.txt").write_text("mine")
    assert cli.main(["deploy", str(model_path), "--input-shape", "7,4", "-o", str(out)]) == 2
    assert cli.main(["deploy", str(model_path), "--input-shape", "7,4", "-o", str(out), "--embed-weights",
                     "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and not (out / "net.weights").exists()
    [got] = run_example(out, "--embedded", [x], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, np.maximum(x @ w1 + b, 0) @ w2)


def test_onnx_file_with_an_op_sol_cannot_compile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx")
    model_path = tmp_path / "cumsum.onnx"
    _onnx_mlp(model_path, "CumSum")
    assert cli.main(["deploy", str(model_path), "--input-shape", "2,4", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "CumSum" in err and "my_cumsum" in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_bad_name_before_loading_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deploy", "no_such_module:make", "--name", "lib;rm", "-o", str(tmp_path / "x")]) == 2
    assert "must be a C identifier" in capsys.readouterr().err


KERAS_MODEL = '''
import sys
import numpy as np
import keras
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
model.save(sys.argv[1])
x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
x.tofile(sys.argv[2])
np.asarray(model(x)).astype(np.float32).tofile(sys.argv[3])
'''


def test_keras_file_through_the_command_line(tmp_path: Path) -> None:
    """``sol deploy model.keras`` as a separate process (the installed command's code path):
    Keras and TensorFlow stay out of the test process."""
    pytest.importorskip("tensorflow")
    script = tmp_path / "make_model.py"
    script.write_text(KERAS_MODEL)
    model, x_file, want_file = tmp_path / "m.keras", tmp_path / "x.bin", tmp_path / "want.bin"
    subprocess.run([sys.executable, str(script), str(model), str(x_file), str(want_file)], check=True,
                   capture_output=True)
    out = tmp_path / "kmlp"
    command = [sys.executable, "-m", "sol.cli", "deploy", str(model), "--input-shape", "4,6", "--name", "kmlp",
               "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    x = np.fromfile(x_file, np.float32).reshape(4, 6)
    [got] = run_example(out, "kmlp.weights", [x], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, np.fromfile(want_file, np.float32).reshape(4, 3))
