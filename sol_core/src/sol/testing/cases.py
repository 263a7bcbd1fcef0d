"""Sample instances of every registered op: (inputs, attrs). The conformance kit compiles all of
one op's cases side by side into one graph on a device and checks it against the op's NumPy
reference; the same cases drive core's gradient checks (finite differences).

A plugin that registers ops of its own adds their cases with :func:`add_cases` (in its test
suite's ``conftest.py``): the kit fails for a registered op without cases, so no op goes untested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Input:
    """A case input that is not a standard-normal float32 tensor. Integers are drawn uniformly
    from [low, high) (valid indices, or ranges that make ties); bool inputs are fair coin flips;
    a float input with ``low``/``high`` gets integer values in that range (exact ties, for
    max/argmax). ``static``: a parameter (like an embedding table), not a per-call input."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: int | None = None
    high: int | None = None
    static: bool = False


Case = tuple[list[Any], dict[str, Any]]  # inputs: shapes (standard-normal float32) or Inputs

UNARY = ["relu", "sigmoid", "tanh", "exp", "neg", "abs", "silu", "hardswish", "hardsigmoid", "erf",
         "sin", "cos", "tan", "atan", "sinh", "cosh", "asinh", "floor", "ceil", "round", "sign",
         "expm1", "exp2", "erfc"]
POSITIVE_UNARY = ["log", "sqrt", "rsqrt", "log1p", "log2", "log10"]  # inputs are made positive
UNIT_UNARY = ["asin", "acos", "atanh"]  # inputs are drawn inside (-1, 1)
ABOVE_ONE_UNARY = ["acosh"]  # inputs are made > 1


def in_domain(op: str, idx: int, a: Any) -> Any:
    """Standard-normal data for input ``idx`` of ``op`` moved into the op's domain where it has
    one (logs, square roots, variances, bases of a real power, inverse trigonometry): outside it
    the result is NaN, which the special-value tests cover, and finite differences mean nothing."""
    import numpy as np

    if op in POSITIVE_UNARY or (op == "batch_norm" and idx == 2) or (op == "pow" and idx == 0):
        return np.abs(a) + 0.5
    if op == "fmod" and idx == 1:  # divisors away from 0: a / b far from its steps, mostly
        return np.abs(a) + 1.0
    if op in UNIT_UNARY:
        return np.tanh(a) * 0.9
    if op in ABOVE_ONE_UNARY:
        return np.abs(a) + 1.1
    if op in SPECIAL_FUNCTION_DOMAINS:
        return SPECIAL_FUNCTION_DOMAINS[op][min(idx, len(SPECIAL_FUNCTION_DOMAINS[op]) - 1)](a)
    if (op, idx) in MATRIX_DOMAINS:
        return MATRIX_DOMAINS[op, idx](a)
    return a
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "fmod", "atan2", "hypot", "copysign"]

CASES: dict[str, list[Case]] = {
    **{op: [([(2, 3, 5, 7)], {}), ([(4, 33)], {})] for op in UNARY + POSITIVE_UNARY + UNIT_UNARY + ABOVE_ONE_UNARY},
    "sign": [([(2, 3, 5, 7)], {}), ([(4, 33)], {"nan": "zero"})],
    "isnan": [([(4, 33)], {})],
    "isinf": [([(4, 33)], {}), ([(3, 7)], {"sign": "positive"}), ([(3, 7)], {"sign": "negative"})],
    **{op: [([(2, 3, 5, 7), (2, 3, 5, 7)], {}), ([(2, 3, 5, 7), (3, 1, 1)], {}), ([(4, 33), (33,)], {}),
            ([(2, 1, 6), (1, 5, 1)], {})] for op in BINARY},
    "pow": [([(2, 3, 4), (2, 3, 4)], {})],
    "gelu": [([(2, 3, 5, 7)], {"approximate": "none"}), ([(4, 33)], {"approximate": "tanh"}),
             ([(3, 17)], {"inf_to_nan": True})],
    "leaky_relu": [([(2, 3, 5, 7)], {"alpha": 0.2}), ([(4, 33)], {}), ([(4, 33)], {"alpha": 0.0})],
    "clamp": [([(2, 3, 5, 7)], {"min": 0.0, "max": 6.0}), ([(4, 33)], {"min": -0.5}), ([(4, 33)], {"max": 0.3})],
    "batch_norm": [([(2, 3, 5, 7), (3,), (3,), (3,), (3,)], {"eps": 1e-3}),
                   ([(4, 6), (6,), (6,), (6,), (6,)], {})],
    "dropout": [([(2, 3, 4)], {"p": 0.5})],
    "identity": [([(2, 3, 4)], {})],
    # Autodiff's gradient stop (ops/gradient.py): the identity forward, removed before planning.
    "stop_gradient": [([(2, 3, 4)], {}), ([Input((3, 5), "int64", -4, 4)], {})],
    "cast": [([(2, 3, 4)], {"dtype": "float32"}), ([Input((2, 3, 4), "float32", -3, 3)], {"dtype": "int64"}),
             ([Input((3, 5), "int64", -2, 3)], {"dtype": "float32"}), ([Input((3, 5), "bool")], {"dtype": "float32"}),
             ([Input((3, 5), "int64", -1, 2)], {"dtype": "bool"}),
             ([Input((4, 6), "int64", -99, 99)], {"dtype": "int32"}),
             ([Input((3, 5), "float32", -1, 2)], {"dtype": "bool"})],
    "max_pool2d": [([(2, 3, 9, 9)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 2, 8, 7)], {"kernel": 2}),
                   ([(1, 2, 10, 10)], {"kernel": 3, "stride": 2, "ceil_mode": True}),
                   ([(1, 2, 9, 9)], {"kernel": 3, "dilation": 2}),
                   # TensorFlow's rule: NaN skipped, the lowest finite value for a window without a number
                   ([(2, 3, 9, 9)], {"kernel": 3, "stride": 2, "padding": 1, "nan": "ignore"}),
                   ([(1, 2, 10, 10)], {"kernel": 2, "nan": "ignore"})],
    "avg_pool2d": [([(2, 3, 13, 13)], {"kernel": 13}),
                   ([(1, 2, 8, 8)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 2, 8, 8)], {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
                   ([(1, 2, 9, 9)], {"kernel": 2, "ceil_mode": True})],
    "adaptive_avg_pool2d": [([(2, 3, 7, 7)], {"output_size": (1, 1)}), ([(1, 2, 10, 9)], {"output_size": (3, 4)})],
    # nan="element" (TensorFlow) and masked_rows="zero" (PyTorch's attention), each over a
    # contiguous axis and a strided one (templates have a form for each).
    "softmax": [([(4, 10)], {"axis": 1}), ([(2, 3, 4, 5)], {"axis": 1}), ([(2, 3, 4)], {"axis": 2}),
                ([(4, 10)], {"axis": 1, "nan": "element"}), ([(2, 3, 4, 5)], {"axis": 1, "nan": "element"}),
                ([(6, 7)], {"axis": 1, "masked_rows": "zero"}), ([(2, 5, 3)], {"axis": 1, "masked_rows": "zero"})],
    "log_softmax": [([(4, 10)], {"axis": 1}), ([(2, 3, 4, 5)], {"axis": 3})],
    # Beyond the small cases: BatchNorm statistics (batch and pixels reduced, channels kept) over
    # more than the parallel threshold, kept runs on both sides of a reduced one, a kept
    # innermost run split into tiles, a size-1 axis inside a reduced run, and a full reduction.
    "mean": [([(2, 3, 4, 5)], {"axes": (2, 3)}), ([(2, 3, 4, 5)], {"axes": (1,), "keepdims": True}),
             ([(4, 10)], {"axes": (1,)}), ([(4, 6, 33, 35)], {"axes": (0, 2, 3), "keepdims": True}),
             ([(3, 4, 5, 6)], {"axes": (1, 3)}), ([(3, 1, 7, 9)], {"axes": (0, 1, 2)}),
             # A kept run, a reduced run, a kept innermost run, all inside an outer (batch) loop
             # of more than one: the kept run's position must step with the output row (issue #14).
             ([(2, 3, 4, 5)], {"axes": (2,), "keepdims": True}), ([(2, 3, 4, 5, 6)], {"axes": (1, 3)}),
             ([(3, 5, 2, 6, 7)], {"axes": (2,)})],
    # The centre need not be the mean: the op (and its gradient) hold for any centre.
    "variance": [([(4, 6, 5, 7), (6,)], {"axes": (0, 2, 3)}),
                 ([(3, 40, 50), (3, 1, 1)], {"axes": (1, 2), "keepdims": True}),
                 ([(70, 300), (300,)], {"axes": (0,)}), ([(4, 6, 33, 35), (6,)], {"axes": (0, 2, 3)}),
                 ([(2, 3, 4, 5), (2, 3, 1, 5)], {"axes": (2,), "keepdims": True}),
                 ([(2, 3, 4, 5, 6), (2, 1, 4, 1, 6)], {"axes": (1, 3), "keepdims": True})],
    "sum": [([(2, 3, 4, 5)], {"axes": (2, 3), "keepdims": True}), ([(4, 10)], {"axes": (0,)}),
            ([(70, 600)], {"axes": (0,)}), ([(5, 70, 300)], {"axes": (0, 1)}), ([(2, 3, 4)], {"axes": (0, 1, 2)}),
            ([(2, 3, 4, 5)], {"axes": (2,), "keepdims": True}), ([(2, 3, 4, 5)], {"axes": (1,), "keepdims": True}),
            ([(4, 3, 4, 40)], {"axes": (2,)}), ([(2, 3, 4, 5, 6)], {"axes": (1, 3), "keepdims": True})],
    "concat": [([(2, 3, 4, 4), (2, 5, 4, 4)], {"axis": 1}), ([(2, 3), (2, 4), (2, 1)], {"axis": 1}),
               ([(1, 2, 3), (2, 2, 3)], {"axis": 0})],
    "transpose": [([(2, 3, 4, 5)], {"perm": (0, 2, 3, 1)}), ([(3, 7)], {"perm": (1, 0)}),
                  ([(2, 3, 4)], {"perm": (0, 2, 1)})],
    "pad": [([(2, 3, 4, 5)], {"pads": ((0, 0), (0, 0), (1, 2), (2, 1))}),
            ([(2, 3, 4)], {"pads": ((0, 0), (1, 0), (0, 0)), "value": -1.5}),
            ([(3, 7)], {"pads": ((2, 1), (0, 3))}),
            # max pooling pads with -inf (ONNX Pad, PyTorch's F.pad(value=-inf)): no C literal spells it
            ([(2, 3, 4)], {"pads": ((0, 0), (1, 1), (2, 0)), "value": float("-inf")}),
            ([(3, 5)], {"pads": ((1, 0), (0, 2)), "value": float("nan")})],
    "slice": [([(2, 6, 5, 7)], {"axes": (2, 3), "starts": (1, -5), "stops": (4, 100), "steps": (1, 2)}),
              ([(4, 9)], {"axes": (1,), "starts": (2,), "stops": (3,)}),
              ([(6, 3, 4)], {"axes": (0, 2), "starts": (1, 0), "stops": (6, 4), "steps": (3, 2)})],
    "reshape": [([(2, 3, 4, 5)], {"shape": (2, -1)}), ([(6, 4)], {"shape": (2, 3, 4)})],
    "conv2d": [([(2, 3, 9, 9), (8, 3, 3, 3)], {}),
               ([(1, 4, 10, 10), (6, 4, 3, 3), (6,)], {"stride": 2, "padding": 1}),
               ([(1, 4, 11, 11), (4, 1, 3, 3)], {"padding": 2, "dilation": 2, "groups": 4}),
               ([(2, 6, 7, 7), (6, 3, 1, 1), (6,)], {"groups": 2}),
               ([(1, 3, 8, 8), (5, 3, 2, 3)], {"padding": ((1, 0), (2, 1))})],
    "max_pool2d_nhwc": [([(2, 9, 9, 3)], {"kernel": 3, "stride": 2, "padding": 1}),
                        ([(1, 10, 11, 5)], {"kernel": 3, "stride": 2, "ceil_mode": True}),
                        ([(1, 9, 9, 2)], {"kernel": (2, 3), "stride": 1, "dilation": 2}),
                        ([(2, 8, 8, 4)], {"kernel": 2, "nan": "ignore"})],
    "avg_pool2d_nhwc": [([(2, 9, 9, 3)], {"kernel": 3, "stride": 2, "padding": 1}),
                        ([(1, 10, 11, 5)], {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                            "count_include_pad": False}),
                        ([(1, 8, 8, 4)], {"kernel": 2}),
                        ([(1, 9, 9, 2)], {"kernel": 3, "padding": 1, "divisor": 7})],
    "conv2d_nhwc": [([(2, 9, 9, 3), (8, 3, 3, 3)], {}),
                    ([(1, 10, 10, 4), (6, 4, 3, 3), (6,)], {"stride": 2, "padding": 1}),
                    ([(1, 11, 11, 4), (4, 1, 3, 3)], {"padding": 2, "dilation": 2, "groups": 4}),
                    ([(1, 8, 8, 3), (5, 3, 2, 3)], {"padding": ((1, 0), (2, 1))}),
                    ([(2, 3, 9, 9), (8, 3, 3, 3), (8,)], {"input_nhwc": False}),
                    ([(2, 9, 9, 6), (4, 6, 1, 1)], {"output_nhwc": False})],
    "dense": [([(4, 16), (8, 16), (8,)], {}), ([(2, 3, 16), (5, 16)], {})],
    "matmul": [([(4, 16), (16, 8)], {}), ([(2, 3, 4, 5), (2, 3, 5, 6)], {}), ([(2, 3, 4, 5), (5, 6)], {})],
    # Backward-graph ops (ops/grad_ops.py): gradient masks, broadcasting, pooling and convolution gradients.
    **{op: [([(2, 3, 4), (2, 3, 4)], {}), ([(4, 33), (33,)], {}),
            ([Input((2, 3, 4), "float32", -2, 3), Input((2, 3, 4), "float32", -2, 3)], {})]
       for op in ("mask_gt", "mask_ge")},
    "broadcast_to": [([(3, 1, 5)], {"shape": (2, 3, 4, 5)}), ([(1,)], {"shape": (4, 33)}),
                     ([(4, 1)], {"shape": (4, 6)})],
    "max_pool2d_select": [([(2, 3, 9, 9), (2, 3, 9, 9)], {"kernel": 3, "stride": 2, "padding": 1}),
                          ([(1, 2, 10, 10), (1, 2, 10, 10)], {"kernel": 3, "stride": 2, "ceil_mode": True})],
    "gather_backward": [([Input((2, 5), "int64", -20, 20), (2, 5, 8)], {"axis": 0, "size": 20}),
                        ([Input((5,), "int32", 0, 6), (3, 5, 4)], {"axis": 1, "size": 6, "wrap": False}),
                        ([Input((7,), "int64", 0, 3), (2, 7)], {"axis": 1, "size": 3})],
    "max_pool2d_backward": [([(2, 3, 9, 9), (2, 3, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
                            ([(1, 2, 10, 10), (1, 2, 5, 5)], {"kernel": 3, "stride": 2, "ceil_mode": True}),
                            ([(1, 2, 9, 9), (1, 2, 5, 5)], {"kernel": 3, "stride": 1, "dilation": 2})],
    "conv2d_backward_data": [([(2, 8, 7, 7), (8, 3, 3, 3)], {"shape": (2, 3, 9, 9)}),
                             ([(1, 6, 5, 5), (6, 4, 3, 3)], {"shape": (1, 4, 10, 10), "stride": 2, "padding": 1}),
                             ([(1, 4, 11, 11), (4, 1, 3, 3)], {"shape": (1, 4, 11, 11), "padding": 2, "dilation": 2,
                                                               "groups": 4}),
                             ([(2, 6, 7, 7), (6, 3, 1, 1)], {"shape": (2, 6, 7, 7), "groups": 2}),
                             ([(1, 5, 8, 9), (5, 3, 2, 3)], {"shape": (1, 3, 8, 8), "padding": ((1, 0), (2, 1))})],
    "conv2d_backward_weight": [([(2, 3, 9, 9), (2, 8, 7, 7)], {"shape": (8, 3, 3, 3)}),
                               ([(1, 4, 10, 10), (1, 6, 5, 5)], {"shape": (6, 4, 3, 3), "stride": 2, "padding": 1}),
                               ([(1, 4, 11, 11), (1, 4, 11, 11)], {"shape": (4, 1, 3, 3), "padding": 2, "dilation": 2,
                                                                   "groups": 4}),
                               ([(2, 6, 7, 7), (2, 6, 7, 7)], {"shape": (6, 3, 1, 1), "groups": 2}),
                               ([(1, 3, 8, 8), (1, 5, 8, 9)], {"shape": (5, 3, 2, 3), "padding": ((1, 0), (2, 1))})],
    # Index and selection ops (ops/index.py): integer indices in range, negative ones included.
    "gather": [([Input((20, 8), static=True), Input((2, 5), "int64", -20, 20)], {"axis": 0}),
               ([Input((3, 6, 4), static=True), Input((5,), "int32", 0, 6)], {"axis": 1}),
               ([(3, 6, 4), Input((2, 2), "int64", -4, 4)], {"axis": 2}),
               ([(4, 7), Input((3,), "int64", 0, 4)], {"axis": 0}),
               ([(2, 5), Input((3,), "int64", -5, 5)], {"axis": 1}),  # x in the fused group's scratch
               ([Input((9,), "int64", -50, 50, static=True), Input((4, 3), "int64", 0, 9)], {"axis": 0}),
               # padding (PyTorch's padding_idx) changes only the gradient: the lookup reads row 0 as any
               ([(6, 3), Input((2, 4), "int64", 0, 6)], {"axis": 0, "wrap": False, "padding": 0})],
    # torch.gather: indices of x's rank, smaller than x in other dims too; x a weight or computed.
    "gather_elements": [([(3, 5), Input((3, 4), "int64", 0, 5)], {"axis": 1}),
                        ([Input((6, 4), static=True), Input((2, 3), "int32", 0, 6)], {"axis": 0}),
                        ([(2, 3, 4), Input((2, 3, 7), "int64", 0, 4)], {"axis": -1}),
                        ([Input((2, 5), "int64", -9, 9), Input((2, 5), "int64", 0, 5)], {"axis": 1})],
    # index_put / index_copy along one axis: a KV cache's update (negative positions, a repeated
    # one keeps its last slice), a weight as x, the last axis.
    "scatter": [([(2, 5, 3), Input((4,), "int64", -5, 5), (2, 4, 3)], {"axis": 1}),
                ([Input((6, 4), static=True), Input((3,), "int32", 0, 6), (3, 4)], {"axis": 0}),
                ([(2, 3, 7), Input((1,), "int64", 0, 7), (2, 3, 1)], {"axis": -1})],
    # torch.scatter / scatter_reduce: one index per column (replacing: no repeated position),
    # updates larger than the index; sums with repeated positions, with and without x's values;
    # products, max and min (repeated positions; NaN rules in the special-value run); int32 indices.
    "scatter_elements": [([(4, 5, 3), Input((4, 1, 3), "int64", 0, 5), (4, 2, 3)], {"axis": 1}),
                         ([(6, 4), Input((5, 3), "int64", 0, 6), (5, 4)], {"axis": 0, "reduction": "sum"}),
                         ([(2, 7), Input((2, 9), "int32", 0, 7), (2, 9)],
                          {"axis": -1, "reduction": "sum", "include_self": False}),
                         ([(3, 6), Input((3, 8), "int64", 0, 6), (3, 8)], {"axis": 1, "reduction": "prod"}),
                         ([(5, 3), Input((7, 3), "int64", 0, 5), (7, 3)],
                          {"axis": 0, "reduction": "amax", "include_self": False}),
                         ([(2, 4, 3), Input((2, 6, 3), "int64", 0, 4), (2, 6, 3)], {"axis": 1, "reduction": "amin"})],
    # Running sums: along the last axis, a middle one, the first; integers (position ids).
    "cumsum": [([(2, 3, 17)], {"axis": 2}), ([(2, 5, 3)], {"axis": 1}), ([(6, 4)], {"axis": 0}),
               ([Input((3, 9), "int64", 0, 2)], {"axis": 1}), ([Input((2, 8), "int32", -3, 3)], {"axis": -1})],
    **{op: [([Input((2, 3, 4), "float32", -2, 3), Input((2, 3, 4), "float32", -2, 3)], {}),
            ([Input((4, 5), "int64", 0, 4), Input((5,), "int64", 0, 4)], {}),
            ([Input((3, 1), "bool"), Input((1, 4), "bool")], {})]
       for op in ("eq", "ne", "lt", "le", "gt", "ge")},
    "logical_not": [([Input((3, 5), "bool")], {}), ([Input((4, 6), "int64", -1, 2)], {})],
    **{op: [([Input((3, 5), "bool"), Input((3, 5), "bool")], {}),
            ([Input((2, 1, 4), "float32", -1, 2), Input((3, 4), "int32", 0, 2)], {})]
       for op in ("logical_and", "logical_or")},
    "where": [([Input((2, 3, 4), "bool"), (2, 3, 4), (2, 3, 4)], {}),
              ([Input((3, 1), "bool"), (3, 5), (5,)], {}),
              ([Input((4, 6), "bool"), Input((4, 6), "int64", -9, 9), Input((1,), "int64", -9, 9)], {})],
    **{op: [([(2, 3, 4, 5)], {"axes": (2, 3)}), ([Input((4, 10), "float32", 0, 3)], {"axes": (1,), "keepdims": True}),
            ([Input((2, 3, 4), "int64", -5, 5)], {"axes": (0, 2)}), ([(3, 6)], {"axes": (0,)}),
            ([(3, 5, 4)], {"axes": (1,), "ties": "first"})]  # ties: the gradient's rule only
       for op in ("max", "min")},
    **{op: [([Input((4, 10), "float32", 0, 3)], {"axis": 1}), ([(2, 3, 4, 5)], {"axis": 1, "keepdims": True}),
            ([Input((3, 7), "int64", 0, 4)], {"axis": 0}), ([(2, 3, 6)], {"axis": -1})]
       for op in ("argmax", "argmin")},
    "conv_transpose2d": [([(2, 3, 5, 5), (3, 4, 2, 2), (4,)], {"stride": 2}),
                         ([(1, 4, 6, 5), (4, 3, 3, 3)], {"stride": 2, "padding": 1, "output_padding": 1}),
                         ([(1, 4, 5, 5), (4, 2, 3, 3), (4,)], {"stride": 2, "dilation": 2, "groups": 2}),
                         ([(1, 3, 4, 6), (3, 5, 3, 2)], {"padding": ((1, 0), (0, 1)), "stride": (1, 3),
                                                         "output_padding": (0, 2)})],
    "resize2d": [([(2, 3, 5, 6)], {"size": (10, 12)}),
                 ([(1, 2, 7, 5)], {"size": (4, 9), "mode": "nearest_exact"}),
                 ([(1, 2, 5, 6)], {"size": (11, 13), "mode": "bilinear", "align_corners": True}),
                 ([(2, 2, 6, 5)], {"size": (9, 3), "mode": "bilinear", "scales": (1.5, 0.7)}),
                 ([(1, 3, 4, 4)], {"size": (8, 7), "mode": "nearest", "scales": (2.0, 1.75)})],
    # Recurrent layers (ops/recurrent.py), weights static as in a model; lstm/gru reach the device
    # as dense + lstm_recurrence/gru_recurrence. H = 80 / 90: more than 256 gate columns.
    "lstm": [([(5, 3, 8), (3, 16), (3, 16), Input((64, 8), static=True), Input((64, 16), static=True),
               Input((64,), static=True), Input((64,), static=True)], {}),
             ([(4, 1, 6), (1, 80), (1, 80), Input((320, 6), static=True), Input((320, 80), static=True)],
              {"reverse": True})],
    "gru": [([(5, 3, 8), (3, 16), Input((48, 8), static=True), Input((48, 16), static=True),
              Input((48,), static=True), Input((48,), static=True)], {"reverse": True}),
            ([(4, 2, 6), (2, 90), Input((270, 6), static=True), Input((270, 90), static=True)], {})],
    "lstm_recurrence": [([(5, 3, 64), (3, 16), (3, 16), Input((64, 16), static=True), Input((64,), static=True)], {}),
                        ([(3, 2, 40), (2, 10), (2, 10), Input((40, 10), static=True)], {"reverse": True})],
    "gru_recurrence": [([(5, 3, 48), (3, 16), Input((48, 16), static=True), Input((48,), static=True)],
                        {"reverse": True}),
                       ([(3, 1, 30), (1, 10), Input((30, 10), static=True)], {})],
    # The sort family (ops/sort.py): ties (integer-valued floats) keep their order, descending too;
    # a middle axis, the first, integers; a long row (the heap's deeper levels).
    "argsort": [([Input((4, 10), "float32", 0, 3)], {"axis": 1}),
                ([Input((2, 7, 3), "float32", -2, 2)], {"axis": 1, "descending": True}),
                ([Input((3, 9), "int64", -4, 4)], {"axis": -1, "descending": True}),
                ([(5, 4)], {"axis": 0}), ([(300,)], {"axis": 0})],
    # Boundaries (ties among them) shared or one row per value row; the binary search is PyTorch's
    # comparison for comparison, so unsorted random rows are checked too.
    "searchsorted": [([Input((9,), "float32", -3, 3), Input((4, 5), "float32", -4, 4)], {}),
                     ([Input((9,), "float32", -3, 3), Input((4, 5), "float32", -4, 4)], {"right": True}),
                     ([(3, 6), (3, 4)], {"right": True}),
                     ([Input((8,), "int64", 0, 5), Input((2, 3), "int64", -1, 7)], {})],
    "scan": [([(2, 3, 6)], {"axis": 1, "kind": "prod"}), ([(4, 9)], {"axis": -1, "kind": "logsumexp"}),
             ([(2, 5, 3)], {"axis": 2, "kind": "logsumexp"}),
             ([Input((3, 5), "int64", -3, 3)], {"axis": 1, "kind": "prod"}),
             ([Input((3, 8), "float32", 0, 3)], {"axis": 1, "kind": "argmax"}),
             ([Input((5, 4), "int64", -3, 3)], {"axis": 0, "kind": "argmin"}),
             ([(2, 6, 3)], {"axis": 1, "kind": "argmin"})],
    # The matrix factorizations (ops/factor.py): square, wide and tall LU (integer values: ties
    # in the pivot search, zero pivots); pivots in range; triangular solves of every flavour
    # (diagonally dominant: well conditioned); Cholesky of symmetric positive definite input.
    "lu_factor": [([(2, 4, 4)], {}), ([(3, 5)], {}), ([(2, 5, 3)], {"check": "linalg.inv"}),
                  ([Input((3, 4, 4), "float32", -2, 2)], {})],
    "lu_permutation": [([Input((2, 3), "int32", 1, 5)], {"m": 4}), ([Input((3, 5), "int64", 1, 6)], {"m": 5})],
    "triangular_solve": [([(2, 4, 4), (2, 4, 3)], {}), ([(2, 5, 5), (2, 5, 2)], {"upper": True}),
                         ([(3, 3), (3, 4)], {"upper": True, "transpose": True, "unit": True}),
                         ([(2, 4, 4), (2, 4, 1)], {"transpose": True})],
    "cholesky": [([(2, 4, 4)], {}), ([(3, 3)], {"check": "linalg.cholesky"})],
}

# --- special functions (sol.ops.special) ---------------------------------------------------------------
# Inputs spread over the formulas' switch points (series / asymptotic at 17 and 30 for the Bessel
# functions, 2 for K and Ai), away from poles and inside each domain; polynomial orders are
# integer-valued floats from -2 (order < 0: 0) to 11 (past the closed forms' thresholds).
_POSITIVE = (lambda a: abs(a) + 0.5,)
_SPREAD = (lambda a: a * 6.0,)
_HALF_LINE = (lambda a: abs(a) * 4.0 + 0.05,)
def _dominant(a: Any) -> Any:
    """A matrix with a large diagonal: well conditioned for solves."""
    import numpy as np

    return a + np.eye(a.shape[-1], dtype=a.dtype) * (a.shape[-1] + 2)


def _positive_definite(a: Any) -> Any:
    """A A^T + n I: symmetric positive definite."""
    import numpy as np

    return (a @ np.swapaxes(a, -1, -2) + np.eye(a.shape[-1]) * a.shape[-1]).astype(a.dtype)


MATRIX_DOMAINS: dict[tuple[str, int], Any] = {("triangular_solve", 0): _dominant,
                                              ("cholesky", 0): _positive_definite}

SPECIAL_FUNCTION_DOMAINS: dict[str, tuple[Any, ...]] = {
    "lgamma": _POSITIVE, "digamma": _POSITIVE, "polygamma": _POSITIVE,
    "erfinv": (lambda a: 0.9 * (2.0 / (1.0 + 2.718281828459045 ** -a) - 1.0),),
    "ndtri": (lambda a: 0.05 + 0.9 / (1.0 + 2.718281828459045 ** -a),),
    **{op: _SPREAD for op in ("i0", "i0e", "i1", "i1e", "bessel_j0", "bessel_j1", "spherical_bessel_j0", "airy_ai",
                              "erfcx", "log_ndtr")},
    **{op: _HALF_LINE for op in ("bessel_y0", "bessel_y1", "modified_bessel_k0", "modified_bessel_k1",
                                 "scaled_modified_bessel_k0", "scaled_modified_bessel_k1")},
    "zeta": (lambda a: abs(a) + 1.5, lambda a: abs(a) + 0.2),
    "igamma": (lambda a: abs(a) * 3.0 + 0.1, lambda a: abs(a) * 3.0),
    "igammac": (lambda a: abs(a) * 3.0 + 0.1, lambda a: abs(a) * 3.0),
}
_SPECIAL_POLYNOMIALS = ("chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
                        "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
                        "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
                        "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p")
CASES.update({
    **{op: [([(4, 33)], {})] for op in ("lgamma", "digamma", "erfinv", "ndtri", "erfcx", "log_ndtr", "i0", "i0e", "i1",
                                        "i1e", "bessel_j0", "bessel_j1", "bessel_y0", "bessel_y1", "modified_bessel_k0",
                                        "modified_bessel_k1", "scaled_modified_bessel_k0", "scaled_modified_bessel_k1",
                                        "spherical_bessel_j0", "airy_ai")},
    "polygamma": [([(4, 33)], {"n": 1}), ([(3, 7)], {"n": 3})],
    **{op: [([(4, 33), (4, 33)], {})] for op in ("zeta", "igamma", "igammac", "nextafter")},
    **{op: [([(4, 33), Input((4, 33), "float32", -2, 12)], {})] for op in _SPECIAL_POLYNOMIALS},
})


def add_cases(op: str, cases: list[Case], quick: bool = False) -> None:
    """Give ``op`` (an op a plugin registers) its conformance cases: each ``(inputs, attrs)``,
    inputs being shapes (standard-normal float32 inputs) or :class:`Input` for anything else.
    ``quick``: also run it under ``--sol-quick``. Call it before the tests are collected (a
    ``conftest.py`` at module level); an op given twice is an error (two plugins disagreeing)."""
    if op in CASES:
        raise ValueError(f"op {op!r} has conformance cases already")
    if not cases:
        raise ValueError(f"op {op!r}: give at least one case")
    CASES[op] = list(cases)
    if quick:
        QUICK_OPS.append(op)


# A few ops of each kind (element-wise unary and broadcast binary, a library or template
# convolution, an I/O-bound softmax, an integer-indexed gather) for ``--sol-quick``: a smoke test
# of an installed device in a minute, e.g. after building its wheel. The full kit runs the rest.
QUICK_OPS: list[str] = ["relu", "add", "conv2d", "softmax", "gather"]


# --- special values (NaN, +inf, -inf, -0.0) -----------------------------------------------------------
# test_special_values feeds every case again with special values mixed into its float inputs (and
# float parameters): about one element in eight becomes NaN, +inf, -inf or -0.0, and one line along
# each axis becomes -inf (a fully masked softmax row, an all -inf pooling window). Integer and bool
# inputs (indices, masks, conditions) keep their values: special values do not exist for them.
# Cases left out, each with the reason:
SPECIAL_EXCLUDED: dict[str, dict[int, str]] = {
    # float -> integer conversion of NaN or inf is undefined in C and NumPy alike
    "cast": {1: "float -> int64 of NaN/inf is undefined"},
    # a checked factorization raises where NaN makes a minor fail (the run-time error is tested apart)
    "lu_factor": {2: "a checked factorization of NaN/inf input may raise"},
    "cholesky": {1: "a checked factorization of NaN/inf input raises"},
}


# --- fusion patterns ---------------------------------------------------------------------------------
# name -> (input shape, steps): each step (op, attrs, args) applies op to the previous result, or to
# what ``args`` names: an int is a value (0: the input, k: step k's result, -1: the previous
# result), an Input a parameter of that shape (weights, statistics: random data, placed once).
# Reductions whose kept runs sit on both sides of a reduced one inside an outer loop of more than
# one (issue #14: every channel was read from channel 0) feed ops that fix the group's outer loop at
# the batch. The library patterns are the seed's: a convolution or dense layer with an element-wise
# epilogue that runs on into an I/O-bound op (one fused loop nest per batch and channel).
Step = tuple[str, dict[str, Any], tuple["int | Input", ...]]
_STAT = Input((8,), "float32", 1, 4, static=True)  # positive, integer-valued: a variance, a scale
PATTERNS: dict[str, tuple[tuple[int, ...], list[Step]]] = {
    "conv_bias_relu_avgpool": ((2, 3, 12, 12), [("conv2d", {"padding": 1}, (-1, Input((8, 3, 3, 3), static=True),
                                                                           Input((8,), static=True))),
                                                ("relu", {}, ()), ("avg_pool2d", {"kernel": 2}, ())]),
    "conv_bn_relu_maxpool": ((2, 3, 12, 12), [("conv2d", {}, (-1, Input((8, 3, 3, 3), static=True))),
                                              ("batch_norm", {}, (-1, Input((8,), static=True), _STAT,
                                                                  Input((8,), static=True), _STAT)),
                                              ("relu", {}, ()), ("max_pool2d", {"kernel": 2, "stride": 2}, ())]),
    "dense_gelu_softmax": ((4, 16), [("dense", {}, (-1, Input((10, 16), static=True), Input((10,), static=True))),
                                     ("gelu", {}, ()), ("softmax", {"axis": 1}, ())]),
    "sum_keepdim_softmax": ((2, 3, 4, 5), [("sum", {"axes": (2,), "keepdims": True}, ()),
                                           ("softmax", {"axis": 1}, ())]),
    "mean_keepdim_softmax": ((3, 4, 6, 5), [("mean", {"axes": (2,), "keepdims": True}, ()),
                                            ("softmax", {"axis": 1}, ())]),
    "mean_softmax": ((2, 3, 4, 5), [("mean", {"axes": (2,)}, ()), ("softmax", {"axis": 1}, ())]),
    "sum_keepdim_concat": ((2, 3, 4, 5), [("sum", {"axes": (2,), "keepdims": True}, ()),
                                          ("relu", {}, (0,)),
                                          ("slice", {"axes": (2,), "starts": (0,), "stops": (1,)}, ()),
                                          ("concat", {"axis": 1}, (1, 3))]),
    "variance_keepdim_softmax": ((2, 3, 4, 5), [("mean", {"axes": (2,), "keepdims": True}, ()),
                                                ("variance", {"axes": (2,), "keepdims": True}, (0, 1)),
                                                ("softmax", {"axis": 1}, ())]),
}

# Under ``--sol-quick``: one library pattern, one reduction pattern.
QUICK_PATTERNS: list[str] = ["conv_bias_relu_avgpool", "variance_keepdim_softmax"]
