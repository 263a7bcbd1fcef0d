"""Real models: the zoo's ResNet-18 and MobileNetV2 exported with ``torch.onnx.export`` (the
exporter ONNX users of PyTorch run), compiled by sol with ``fallback=False`` on every installed
device, match ONNX Runtime on the same model and input (rtol 1e-3, the whole-network tolerance).
A Keras model through tf2onnx runs where tf2onnx is installed."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import onnx
import pytest
from onnx_helpers import run_ort

import sol.onnx

torch = pytest.importorskip("torch", reason="torch exports the zoo models to ONNX")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config))


def _export(name: str, image: int = 32) -> tuple[Any, np.ndarray]:
    from sol_benchmarks import zoo

    torch.manual_seed(0)
    model = zoo.randomize_batchnorm(getattr(zoo, name)(num_classes=10)).eval()
    x = torch.randn(2, 3, image, image)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=17)
    return onnx.load_from_string(buf.getvalue()), x.numpy()


@pytest.fixture(scope="module", params=["resnet18", "mobilenet_v2"])
def exported(request: pytest.FixtureRequest) -> tuple[Any, np.ndarray]:
    return _export(request.param)


def test_zoo_model_matches_onnxruntime(exported: tuple[Any, np.ndarray], device: str) -> None:
    proto, x = exported
    session = sol.onnx.optimize(proto, x, device=device, fallback=False)
    want = run_ort(proto, {"image": x})[0]
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * float(np.abs(want).max()))


def test_a_keras_model_through_tf2onnx() -> None:
    """A Keras model exported by tf2onnx (pinned in scripts/env.sh) matches ONNX Runtime. Through
    a tf.function: tf2onnx's from_keras does not read Keras 3 models."""
    import tensorflow as tf
    import tf2onnx

    model = tf.keras.Sequential([tf.keras.Input((8, 8, 3)), tf.keras.layers.Conv2D(4, 3, activation="relu"),
                                 tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(5)])
    spec = [tf.TensorSpec((None, 8, 8, 3), tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def forward(t: tf.Tensor) -> tf.Tensor:
        return model(t)

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=17)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype(np.float32)
    name = proto.graph.input[0].name
    np.testing.assert_allclose(sol.onnx.optimize(proto, x, fallback=False).run(None, {name: x})[0],
                               run_ort(proto, {name: x})[0], rtol=1e-3, atol=1e-5)


def test_a_transformer_from_the_dynamo_exporter_matches_onnxruntime() -> None:
    """torch.onnx.export's newer exporter (opset 18+: LayerNormalization, Gelu, axes as inputs), a
    two-layer ViT: every node compiles and the result matches ONNX Runtime."""
    from sol_benchmarks import zoo

    torch.manual_seed(0)
    model = zoo.vit_b_16(num_classes=10, image_size=32, num_layers=2).eval()
    x = torch.randn(2, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto = torch.onnx.export(model, (x,), dynamo=True, verbose=False).model_proto
    name = proto.graph.input[0].name
    want = run_ort(proto, {name: x.numpy()})[0]
    got = sol.onnx.optimize(proto, x.numpy(), fallback=False).run(None, {name: x.numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * float(np.abs(want).max()))
