"""Core passes keep the graph's meaning (checked with the NumPy references) and do their job."""

from __future__ import annotations

import numpy as np
import pytest

from sol.debug import run_reference
from sol.ir import Graph, TensorType
from sol.passes import affine
from sol.plugins import roles

from graphs import conv_bn_relu_pool, randn


def _run_passes(g: Graph, training: bool = False) -> list[str]:
    return roles().passes.run(g, training=training)


def _ops(g: Graph) -> list[str]:
    return [n.op for n in g.nodes]


def test_inference_passes_fold_batchnorm_and_drop_dropout() -> None:
    g = conv_bn_relu_pool()
    x = randn(*g.inputs[0].shape)
    want = run_reference(g, [x])[0]
    applied = _run_passes(g)
    assert {"fold_batchnorm", "remove_dropout", "split_bias"} <= set(applied) or "fold_batchnorm" in applied
    # The folded BatchNorm's bias and the ReLU run after the 2x2 max pooling (sol.passes.commute).
    assert _ops(g) == ["conv2d", "max_pool2d", "add", "relu", "reshape"]
    np.testing.assert_allclose(run_reference(g, [x])[0], want, rtol=1e-4, atol=1e-5)


def test_training_keeps_batchnorm_and_dropout() -> None:
    g = conv_bn_relu_pool()
    weights = {p.name: p.data for p in g.params}
    x = randn(*g.inputs[0].shape)
    want = run_reference(g, [x])[0]
    applied = _run_passes(g, training=True)
    assert "dropout" in _ops(g)
    # Not folded into the convolution: the late pass writes BatchNorm's formula as element-wise
    # ops that read the statistics and weights at run time (they may be trained inputs).
    assert "fold_batchnorm" not in applied and "batchnorm_to_elementwise" in applied
    conv = next(n for n in g.nodes if n.op == "conv2d")
    assert conv.inputs[1].data is weights[conv.inputs[1].name]
    assert {"rsqrt", "sub", "mul"} <= set(_ops(g))
    np.testing.assert_allclose(run_reference(g, [x])[0], want, rtol=1e-4, atol=1e-5)


def test_batchnorm_without_foldable_producer_becomes_affine() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 4)))
    ps = [g.add_param(n, randn(3) if n != "v" else np.abs(randn(3)) + 1) for n in "mvwb"]
    y = g.add_node("batch_norm", [g.add_node("relu", [x]).output, *ps]).output
    g.outputs = [y]
    xv = randn(2, 3, 4, 4)
    want = run_reference(g, [xv])[0]
    _run_passes(g)
    assert _ops(g) == ["relu", "mul", "add"]
    np.testing.assert_allclose(run_reference(g, [xv])[0], want, rtol=1e-5, atol=1e-6)


def test_dense_bias_split_and_batchnorm1d_folded() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((5, 6)))
    w, b = g.add_param("fc.w", randn(4, 6)), g.add_param("fc.b", randn(4))
    ps = [g.add_param(n, randn(4) if n != "v" else np.abs(randn(4)) + 1) for n in "mvwb"]
    y = g.add_node("dense", [x, w, b]).output
    g.outputs = [g.add_node("batch_norm", [y, *ps]).output]
    xv = randn(5, 6)
    want = run_reference(g, [xv])[0]
    _run_passes(g)
    assert _ops(g) == ["dense", "add"]
    np.testing.assert_allclose(run_reference(g, [xv])[0], want, rtol=1e-4, atol=1e-5)


def test_constant_folding_dead_code_and_cse() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((3, 4)))
    c = g.add_const(np.full((4,), 2.0, np.float32))
    c2 = g.add_node("mul", [c, c]).output  # constant: folded
    a1 = g.add_node("add", [x, c2]).output
    a2 = g.add_node("add", [x, c2]).output  # same as a1: CSE
    g.add_node("exp", [x])  # dead
    g.outputs = [g.add_node("mul", [a1, a2]).output]
    xv = randn(3, 4)
    want = run_reference(g, [xv])[0]
    _run_passes(g)
    assert _ops(g) == ["add", "mul"]
    np.testing.assert_allclose(run_reference(g, [xv])[0], want, rtol=1e-6)


def test_reshape_chains_merge() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4)))
    r = g.add_node("reshape", [g.add_node("relu", [x]).output], {"shape": (6, 4)}).output
    r = g.add_node("reshape", [r], {"shape": (2, 12)}).output
    g.outputs = [r]
    _run_passes(g)
    assert _ops(g) == ["relu", "reshape"]


def test_a_broken_pass_is_caught_by_the_validator(fresh_plugins) -> None:
    import pluggy

    from sol.passes.validate import InvalidGraphError

    hookimpl = pluggy.HookimplMarker("sol")

    class Breaker:
        SOL_PLUGIN_API = ">=1.0"

        @hookimpl
        def sol_register_passes(self, registry):  # type: ignore[no-untyped-def]
            def drop_first(graph: Graph) -> bool:
                del graph.nodes[0]
                return True

            registry.register("drop_first", drop_first, stage="late")

    fresh_plugins.register(Breaker(), "breaker")
    g = Graph()
    x = g.add_input("x", TensorType((2,)))
    g.outputs = [g.add_node("exp", [g.add_node("relu", [x]).output]).output]
    with pytest.raises(InvalidGraphError, match="after drop_first"):
        fresh_plugins.roles().passes.run(g)


def test_transpose_pairs_cancel_and_chains_merge() -> None:
    """NHWC -> NCHW -> NHWC around element-wise work disappears; two transposes become one."""
    g = Graph()
    x = g.add_input("x", TensorType((2, 5, 4, 3)))
    a = g.add_node("transpose", [x], {"perm": (0, 3, 1, 2)}).output  # NHWC -> NCHW
    b = g.add_node("transpose", [a], {"perm": (0, 2, 3, 1)}).output  # and back
    r = g.add_node("relu", [b]).output
    c = g.add_node("transpose", [r], {"perm": (0, 3, 1, 2)}).output
    d = g.add_node("transpose", [c], {"perm": (1, 0, 2, 3)}).output  # a chain: one transpose
    g.outputs = [d]
    xv = randn(2, 5, 4, 3)
    want = run_reference(g, [xv])[0]
    applied = _run_passes(g)
    assert "merge_transposes" in applied
    assert _ops(g) == ["relu", "transpose"]
    assert g.nodes[1].attrs["perm"] == (3, 0, 1, 2)
    np.testing.assert_allclose(run_reference(g, [xv])[0], want)


def test_an_identity_transpose_between_input_and_output_is_kept() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3)))
    a = g.add_node("transpose", [x], {"perm": (1, 0)}).output
    g.outputs = [g.add_node("transpose", [a], {"perm": (1, 0)}).output]
    _run_passes(g)
    assert _ops(g) == ["transpose"] and g.outputs[0].producer is g.nodes[0]


# --- per-channel affine chains folded into conv / dense (Keras 3's decomposed BatchNormalization) ---


def _keras_style_bn(g: Graph, y: Graph | object, channels: int, shape: tuple[int, ...]) -> object:
    """``y * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps))``, the ops
    Keras 3 writes for inference BatchNormalization, on parameters of ``shape``."""
    mean, gamma, beta = (g.add_param(n, randn(channels).reshape(shape)) for n in ("mean", "gamma", "beta"))
    var = g.add_param("var", (np.abs(randn(channels)) + 0.5).reshape(shape))
    eps = g.add_const(np.float32(1e-3))
    inv = g.add_node("mul", [g.add_node("rsqrt", [g.add_node("add", [var, eps]).output]).output, gamma]).output
    shift = g.add_node("sub", [beta, g.add_node("mul", [mean, inv]).output]).output
    return g.add_node("add", [g.add_node("mul", [y, inv]).output, shift]).output  # type: ignore[list-item]


def test_keras_style_batchnorm_after_conv_folds_into_its_weights() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 6, 6)))
    w, b = g.add_param("w", randn(4, 3, 3, 3)), g.add_param("b", randn(4))
    y = g.add_node("conv2d", [x, w, b], {"padding": ((1, 1), (1, 1))}).output
    g.outputs = [g.add_node("relu", [_keras_style_bn(g, y, 4, (1, 4, 1, 1))]).output]  # type: ignore[list-item]
    xv = randn(2, 3, 6, 6)
    want = run_reference(g, [xv])[0]
    assert "fold_affine" in _run_passes(g)
    assert _ops(g) == ["conv2d", "add", "relu"]
    np.testing.assert_allclose(run_reference(g, [xv])[0], want, rtol=1e-4, atol=1e-5)


def test_affine_chain_after_dense_with_sub_div_neg_and_scalars() -> None:
    """Every step kind, per-channel and scalar, operand on either side, folded in float64."""
    g = Graph()
    x = g.add_input("x", TensorType((3, 4, 6)))
    y = g.add_node("dense", [x, g.add_param("w", randn(5, 6))]).output
    y = g.add_node("mul", [g.add_param("s", randn(5)), y]).output
    y = g.add_node("sub", [g.add_const(np.float32(0.5)), y]).output  # 0.5 - y
    y = g.add_node("div", [y, g.add_param("d", np.abs(randn(1, 5)) + 1)]).output
    y = g.add_node("neg", [y]).output
    y = g.add_node("sub", [y, g.add_param("t", randn(5))]).output
    g.outputs = [g.add_node("tanh", [y]).output]
    xv = randn(3, 4, 6)
    want = run_reference(g, [xv])[0]
    _run_passes(g)
    assert _ops(g) == ["dense", "add", "tanh"]
    np.testing.assert_allclose(run_reference(g, [xv])[0], want, rtol=1e-4, atol=1e-5)


def test_affine_is_not_folded_where_it_would_change_the_result() -> None:
    """A second reader of the unscaled value, a per-pixel (not per-channel) operand, an operand
    computed at run time, a zero divisor: each chain stops there."""
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 4)))
    other = g.add_input("other", TensorType((1, 4, 1, 1)))

    def conv() -> object:
        return g.add_node("conv2d", [x, g.add_param("w", randn(4, 3, 1, 1))]).output

    shared = conv()
    outs = [g.add_node("mul", [shared, g.add_param("s", randn(1, 4, 1, 1))]).output, shared]
    outs.append(g.add_node("mul", [conv(), g.add_param("p", randn(1, 1, 4, 4))]).output)  # type: ignore[list-item]
    outs.append(g.add_node("mul", [conv(), other]).output)  # type: ignore[list-item]
    outs.append(g.add_node("div", [conv(), g.add_param("z", np.zeros((4, 1, 1), np.float32))]).output)  # type: ignore[list-item]
    g.outputs = outs  # type: ignore[assignment]
    before = _ops(g)
    assert not affine.fold_into_producer(g)
    assert _ops(g) == before



@pytest.mark.parametrize("order", ["x*sigmoid(x)", "sigmoid(x)*x"])
def test_x_times_its_sigmoid_becomes_silu_with_the_same_values_nan_and_inf_included(order: str) -> None:
    g = Graph("swish")
    x = g.add_input("x", TensorType((2, 3, 4)))
    s = g.add_node("sigmoid", [x]).output
    g.outputs = [g.add_node("mul", [x, s] if order.startswith("x") else [s, x]).output]
    data = randn(2, 3, 4)
    data[0, 0, :] = [np.nan, np.inf, -np.inf, -0.0]
    want = run_reference(g, [data])[0]
    assert "fuse_silu" in _run_passes(g)
    assert _ops(g) == ["silu"]
    # the same function; float32 rounding may differ by an ulp, NaN and infinities not at all
    np.testing.assert_allclose(run_reference(g, [data])[0], want, rtol=1e-6, atol=0)


def test_a_sigmoid_read_elsewhere_or_of_another_value_stays() -> None:
    g = Graph("gates")
    x = g.add_input("x", TensorType((2, 8)))
    y = g.add_input("y", TensorType((2, 8)))
    s = g.add_node("sigmoid", [x]).output
    shared = g.add_node("mul", [x, s]).output  # the sigmoid is also an output: computed once
    gated = g.add_node("mul", [y, g.add_node("sigmoid", [x]).output]).output  # a gate on another value
    g.outputs = [shared, gated, s]
    _run_passes(g)
    assert sorted(_ops(g)) == ["mul", "mul", "sigmoid"]
