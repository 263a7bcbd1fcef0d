"""Converters whose ONNX backend cases give the deciding inputs at run time (sol needs them when
optimizing, so those cases are excluded): checked here against ONNX Runtime with the values as
initializers, as exporters write them. Many nodes in one model: one compile."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_helpers import init, model, run_ort, tensor

import sol.onnx
from sol.errors import SolFallbackWarning, UnsupportedOpError

# mode, coordinate_transformation_mode, nearest_mode, scales, sizes: the resizes PyTorch's exporter
# writes (nearest/asymmetric/floor, linear/half_pixel or align_corners), up, down and uneven
RESIZES = [("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
           ("nearest", "asymmetric", "floor", None, [2, 3, 7, 5]),
           ("nearest", "asymmetric", "floor", [1, 1, 1.5, 2.5], None),
           ("linear", "half_pixel", None, [1, 1, 2, 2], None),
           ("linear", "half_pixel", None, None, [2, 3, 7, 3]),
           ("linear", "align_corners", None, None, [2, 3, 9, 11]),
           ("linear", "pytorch_half_pixel", None, [1, 1, 0.5, 0.5], None)]


def test_resize_reshape_slice_and_friends_with_known_arguments() -> None:
    nodes, outs = [], []
    inits = [init("roi", np.zeros(0, np.float32)), init("none", np.zeros(0, np.float32))]
    for i, (mode, coords, nearest, scales, sizes) in enumerate(RESIZES):
        kw = {"mode": mode, "coordinate_transformation_mode": coords, **({"nearest_mode": nearest} if nearest else {})}
        if scales:
            inits.append(init(f"s{i}", np.array(scales, np.float32)))
            args = ["x", "roi", f"s{i}"]
        else:
            inits.append(init(f"z{i}", np.array(sizes, np.int64)))
            args = ["x", "roi", "none", f"z{i}"]
        nodes.append(helper.make_node("Resize", args, [f"y{i}"], name=f"resize{i}", **kw))
    inits += [init("shape", np.array([0, -1, 4], np.int64)), init("starts", np.array([1, -3], np.int64)),
              init("ends", np.array([6, 100], np.int64)), init("axes", np.array([2, 3], np.int64)),
              init("steps", np.array([2, 1], np.int64)), init("uaxes", np.array([0, 3], np.int64)),
              init("reduce", np.array([1, -1], np.int64)), init("pads", np.array([0, 0, 1, -1, 0, 0, 2, 0], np.int64))]
    nodes += [helper.make_node("Reshape", ["x", "shape"], ["reshaped"]),
              helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["sliced"]),
              helper.make_node("Unsqueeze", ["sliced", "uaxes"], ["unsqueezed"]),
              helper.make_node("ReduceMean", ["x", "reduce"], ["mean"], keepdims=0),
              helper.make_node("Pad", ["x", "pads"], ["padded"]),
              helper.make_node("Split", ["x"], ["left", "right"], axis=3, num_outputs=2)]
    names = [f"y{i}" for i in range(len(RESIZES))] + ["reshaped", "sliced", "unsqueezed", "mean", "padded", "left",
                                                      "right"]
    outs = [tensor(n, ["a", "b", "c", "d", "e"][:5 if n == "unsqueezed" else 3 if n == "reshaped" else
                                                  2 if n == "mean" else 4]) for n in names]
    proto = model(nodes, [tensor("x", [2, 3, 6, 4])], outs, inits, opset=18)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 4)).astype(np.float32)
    got = sol.onnx.optimize(proto, fallback=False)(x)
    for name, g, want in zip(names, got, run_ort(proto, {"x": x})):
        assert g.shape == want.shape, name
        np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6, err_msg=name)


def _pool_model(op: str, shape: list[int], **attrs: object) -> object:
    nodes = [helper.make_node(op, ["x"], ["y"], name="pool", **attrs)]
    return model(nodes, [tensor("x", shape)], [tensor("y", ["n", "c", "h", "w"])])


def test_ceil_mode_pooling_with_padding_where_onnx_and_pytorch_agree() -> None:
    # GoogLeNet's inception poolings (3x3, stride 1, padding 1, ceil_mode): ceil changes nothing,
    # so no window starts in the padding and sol compiles them (they ran in ONNX Runtime before).
    # Also a stride-2 case whose last window ends in the padding but starts in the image.
    rng = np.random.default_rng(0)
    pad1 = [1, 1, 1, 1]
    for op, shape, attrs in [("MaxPool", [2, 3, 9, 9], {"kernel_shape": [3, 3], "strides": [1, 1], "pads": pad1}),
                             ("MaxPool", [1, 2, 8, 7], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": pad1}),
                             ("AveragePool", [1, 2, 8, 7], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": pad1,
                                                            "count_include_pad": 1})]:
        proto = _pool_model(op, shape, ceil_mode=1, **attrs)
        x = rng.standard_normal(shape).astype(np.float32)
        s = sol.onnx.optimize(proto, x, fallback=False)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], run_ort(proto, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_ceil_mode_window_starting_in_the_padding_is_refused() -> None:
    # 5 + 1 + 1 padded, kernel 2, stride 2, ceil: the last window starts at 6, inside the right
    # padding; ONNX keeps that window, PyTorch (sol's rule) drops it. With fallback, ONNX
    # Runtime runs the node and the answer is ONNX's.
    proto = _pool_model("MaxPool", [1, 1, 5, 5], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)
    x = np.random.default_rng(1).standard_normal((1, 1, 5, 5)).astype(np.float32)
    with pytest.raises(UnsupportedOpError, match="ceil_mode with a last window starting in the padding"):
        sol.onnx.optimize(proto, x, fallback=False)
    with pytest.warns(SolFallbackWarning):
        s = sol.onnx.optimize(proto, x)
    np.testing.assert_array_equal(s.run(None, {"x": x})[0], run_ort(proto, {"x": x})[0])


def test_an_exported_silu_joins_the_convolution_it_follows() -> None:
    # torch.onnx.export writes SiLU as Sigmoid and Mul: core's fuse_silu makes it one op, which
    # the x86 device runs in the convolution's epilogue rather than as a loop of its own.
    rng = np.random.default_rng(2)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("Mul", ["c", "s"], ["y"])]
    proto = model(nodes, [tensor("x", [2, 4, 9, 9])], [tensor("y", [2, 8, 9, 9])], [init("w", w)])
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    x[0, 0, 0, :3] = [np.inf, -np.inf, np.nan]
    s = sol.onnx.optimize(proto, x, fallback=False, device="x86")
    [variant] = s.variants.values()
    groups = [[n.op for n in g.nodes] for g in variant.program.info["plan"].groups]
    assert [ops for ops in groups if "silu" in ops] == [["conv2d", "silu"]], groups
    np.testing.assert_allclose(s.run(None, {"x": x})[0], run_ort(proto, {"x": x})[0], rtol=1e-5, atol=1e-6)
