"""sol.planner.layout: channels-last regions around convolutions a library claims in that form.

Each case builds a small graph, rewrites it with a claims function standing in for a device's
library, checks which nodes compute channels-last and that the NumPy references of the graph
before and after agree (the rewrite moves no number). No compiles."""

from __future__ import annotations

import copy

import numpy as np

from sol.debug import run_reference
from sol.ir import Graph, Node, TensorType, Value
from sol.planner.layout import channels_last

from graphs import randn


def _conv(g: Graph, x: Value, out_channels: int, k: int = 1, bias: bool = True) -> Value:
    c = x.shape[1]
    w = g.add_param(g.fresh_name("w"), randn(out_channels, c, k, k))
    ins = [x, w]
    if bias:
        ins.append(g.add_param(g.fresh_name("b"), randn(out_channels)))
    return g.add_node("conv2d", ins, {"padding": k // 2}).output


def _claims_all(node: Node) -> bool:
    return node.op == "conv2d_nhwc"


def _fire(g: Graph, x: Value) -> Value:
    """SqueezeNet's Fire module: squeeze, two expands, ReLU, concat."""
    s = g.add_node("relu", [_conv(g, x, 4)]).output
    e1 = g.add_node("relu", [_conv(g, s, 6)]).output
    e3 = g.add_node("relu", [_conv(g, s, 6, k=3)]).output
    return g.add_node("concat", [e1, e3], {"axis": 1}).output


def _rewritten(g: Graph, claims=_claims_all) -> tuple[Graph, int]:
    after = copy.deepcopy(g)
    return after, channels_last(after, claims)


def _same_numbers(before: Graph, after: Graph) -> None:
    x = randn(*before.inputs[0].shape)
    for want, got in zip(run_reference(before, [x]), run_reference(after, [x])):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes]


def test_a_concat_between_convolutions_is_computed_channels_last() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 8, 6, 6), "float32"))
    y = _conv(g, _fire(g, _fire(g, x)), 5)
    g.outputs = [y]
    after, changed = _rewritten(g)
    assert changed
    concats = [n for n in after.nodes if n.op == "concat"]
    assert [n.attrs["axis"] for n in concats] == [3, 3]
    assert all(n.output.shape[3] == 12 for n in concats)
    assert "transpose" not in _ops(after)  # the convolutions convert, nothing else
    convs = [n for n in after.nodes if n.op == "conv2d_nhwc"]
    first, last = convs[0], convs[-1]
    assert not first.attrs["input_nhwc"] and first.attrs["output_nhwc"]  # reads the NCHW graph input
    assert last.attrs["input_nhwc"] and not last.attrs["output_nhwc"]  # writes the NCHW graph output
    assert after.outputs[0].shape == (2, 5, 6, 6)
    _same_numbers(g, after)


def test_poolings_join_the_region_and_an_op_with_an_axis_does_not() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((1, 8, 7, 7), "float32"))
    p = g.add_node("max_pool2d", [_fire(g, x)], {"kernel": 3, "stride": 2, "ceil_mode": True}).output
    q = g.add_node("avg_pool2d", [_fire(g, p)], {"kernel": 2, "padding": 1, "count_include_pad": False}).output
    s = g.add_node("softmax", [_fire(g, q)], {"axis": 1}).output
    g.outputs = [_conv(g, s, 3)]
    after, _ = _rewritten(g)
    pools = [n for n in after.nodes if "pool" in n.op]
    assert [n.op for n in pools] == ["max_pool2d_nhwc", "avg_pool2d_nhwc"]
    assert [n.output.shape for n in pools] == [(1, 3, 3, 12), (1, 2, 2, 12)]
    concats = [n for n in after.nodes if n.op == "concat"]
    assert [n.attrs["axis"] for n in concats] == [3, 3, 1]  # the last one feeds the softmax
    # the relus feeding the last concat stay NCHW, so the expands write NCHW from channels-last input
    expands = [n for n in after.nodes if n.op == "conv2d_nhwc" and not n.attrs["output_nhwc"]]
    assert len(expands) == 2 and all(n.attrs["input_nhwc"] for n in expands)
    _same_numbers(g, after)


def test_a_global_average_pool_becomes_a_mean_and_leaves_through_a_reshape() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 6, 6), "float32"))
    a = g.add_node("relu", [_conv(g, _conv(g, x, 8), 8)]).output
    pooled = g.add_node("adaptive_avg_pool2d", [a], {"output_size": 1}).output
    g.outputs = [g.add_node("reshape", [pooled], {"shape": (2, 8)}).output]
    after, _ = _rewritten(g)
    ops = _ops(after)
    assert "mean" in ops and "adaptive_avg_pool2d" not in ops and "transpose" not in ops
    mean = next(n for n in after.nodes if n.op == "mean")
    assert mean.output.shape == (2, 1, 1, 8)
    _same_numbers(g, after)


def test_per_channel_operands_are_reshaped_and_graph_outputs_keep_their_layout() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 5, 5), "float32"))
    a = _conv(g, x, 4, bias=False)
    scale = g.add_const(np.linspace(0.5, 2, 4, dtype=np.float32).reshape(4, 1, 1))
    shifted = g.add_node("mul", [a, scale]).output
    y = g.add_node("add", [_conv(g, shifted, 4), shifted]).output  # a residual
    g.outputs = [_conv(g, y, 2), a]  # a is an output too: its convolution writes NCHW
    after, _ = _rewritten(g)
    assert [o.shape for o in after.outputs] == [(2, 2, 5, 5), (2, 4, 5, 5)]
    first = next(n for n in after.nodes if n.op in ("conv2d", "conv2d_nhwc"))
    assert first.op == "conv2d"  # NCHW on both sides: unchanged
    _same_numbers(g, after)


def test_nothing_changes_without_a_claim_or_a_second_convolution() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((1, 8, 6, 6), "float32"))
    g.outputs = [_fire(g, x)]
    after, changed = _rewritten(g, claims=lambda node: False)
    assert not changed and _ops(after) == _ops(g)
    single = Graph()
    x = single.add_input("x", TensorType((1, 3, 6, 6), "float32"))
    single.outputs = [single.add_node("relu", [_conv(single, x, 4)]).output]
    after, changed = _rewritten(single)
    assert not changed and _ops(after) == _ops(single)


def _convnext_block(g: Graph, x: Value) -> Value:
    """ConvNeXt's block: depthwise conv, to channels-last, a normalization over the channels
    (a softmax here: any op with an axis), MLP, back, layer scale, residual."""
    c = x.shape[1]
    w = g.add_param(g.fresh_name("w"), randn(c, 1, 3, 3))
    d = g.add_node("conv2d", [x, w], {"padding": 1, "groups": c}).output
    t = g.add_node("transpose", [d], {"perm": (0, 2, 3, 1)}).output
    ln = g.add_node("softmax", [t], {"axis": 3}).output
    h = g.add_node("dense", [ln, g.add_param(g.fresh_name("w1"), randn(2 * c, c))]).output
    h = g.add_node("relu", [h]).output
    h = g.add_node("dense", [h, g.add_param(g.fresh_name("w2"), randn(c, 2 * c))]).output
    back = g.add_node("transpose", [h], {"perm": (0, 3, 1, 2)}).output
    scaled = g.add_node("mul", [back, g.add_param(g.fresh_name("s"), randn(c, 1, 1))]).output
    return g.add_node("add", [x, scaled]).output


def test_the_models_own_layout_changes_disappear_into_the_region() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 8, 5, 5), "float32"))
    y = _convnext_block(g, _convnext_block(g, _conv(g, x, 8)))
    g.outputs = [_conv(g, y, 4)]
    after, changed = _rewritten(g)
    assert changed
    assert "transpose" not in _ops(after)
    norms = [n for n in after.nodes if n.op == "softmax"]
    # Each LayerNorm reads its depthwise convolution's channels-last result directly.
    assert [n.inputs[0].producer.op for n in norms] == ["conv2d_nhwc", "conv2d_nhwc"]
    assert all(n.inputs[0].producer.attrs["output_nhwc"] for n in norms)
    convs = [n for n in after.nodes if n.op == "conv2d_nhwc"]
    assert [(c.attrs["input_nhwc"], c.attrs["output_nhwc"]) for c in convs] == [
        (False, True), (True, True), (True, True), (True, False)]
    _same_numbers(g, after)


def test_an_entering_transpose_read_outside_the_region_stays() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((1, 5, 5, 6), "float32"))  # channels-last input (a Keras model)
    nchw = g.add_node("transpose", [x], {"perm": (0, 3, 1, 2)}).output
    y = g.add_node("relu", [_conv(g, nchw, 4)]).output
    g.outputs = [_conv(g, y, 3), g.add_node("sum", [nchw], {"axes": (1,)}).output]
    after, _ = _rewritten(g)
    first = next(n for n in after.nodes if n.op == "conv2d_nhwc")
    assert first.inputs[0] is after.inputs[0] and first.attrs["input_nhwc"]
    assert _ops(after).count("transpose") == 1  # the sum still reads the NCHW tensor
    _same_numbers(g, after)


def test_a_leaving_transpose_of_a_tensor_read_elsewhere_stays() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((1, 6, 4, 4), "float32"))
    c = _conv(g, x, 6)
    t = g.add_node("transpose", [c], {"perm": (0, 2, 3, 1)}).output
    g.outputs = [t, c]  # the convolution's result is a graph output too: NCHW
    after, _ = _rewritten(g)
    assert "transpose" in _ops(after)
    _same_numbers(g, after)


def test_a_global_mean_or_sum_reads_the_region_over_h_and_w() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 6, 6), "float32"))
    y = g.add_node("relu", [_conv(g, _conv(g, x, 8), 8)]).output
    pooled = g.add_node("mean", [y], {"axes": (2, 3)}).output  # (N, C)
    kept = g.add_node("sum", [y], {"axes": (2, 3), "keepdims": True}).output  # (N, C, 1, 1)
    scaled = g.add_node("mul", [y, g.add_node("sigmoid", [kept]).output]).output  # squeeze-excitation-like
    g.outputs = [pooled, _conv(g, scaled, 4)]
    after, _ = _rewritten(g)
    reductions = [n for n in after.nodes if n.op in ("mean", "sum")]
    assert [n.attrs["axes"] for n in reductions] == [(1, 2), (1, 2)]
    assert all(n.inputs[0].shape == (2, 6, 6, 8) for n in reductions)
    convs = [n for n in after.nodes if n.op == "conv2d_nhwc"]
    assert [c.attrs["output_nhwc"] for c in convs] == [True, True, False]
    _same_numbers(g, after)
