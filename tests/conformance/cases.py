"""Sample instances of every builtin op: (input shapes, attrs). The conformance suite compiles
each op's cases on a device and checks them against the NumPy reference."""

from __future__ import annotations

from typing import Any

Case = tuple[list[tuple[int, ...]], dict[str, Any]]

UNARY = ["relu", "sigmoid", "tanh", "exp", "neg", "abs", "silu", "hardswish", "hardsigmoid", "erf"]
POSITIVE_UNARY = ["log", "sqrt", "rsqrt"]  # inputs are made positive
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]

CASES: dict[str, list[Case]] = {
    **{op: [([(2, 3, 5, 7)], {}), ([(4, 33)], {})] for op in UNARY + POSITIVE_UNARY},
    **{op: [([(2, 3, 5, 7), (2, 3, 5, 7)], {}), ([(2, 3, 5, 7), (3, 1, 1)], {}), ([(4, 33), (33,)], {}),
            ([(2, 1, 6), (1, 5, 1)], {})] for op in BINARY},
    "pow": [([(2, 3, 4), (2, 3, 4)], {})],
    "gelu": [([(2, 3, 5, 7)], {"approximate": "none"}), ([(4, 33)], {"approximate": "tanh"})],
    "leaky_relu": [([(2, 3, 5, 7)], {"alpha": 0.2}), ([(4, 33)], {})],
    "clamp": [([(2, 3, 5, 7)], {"min": 0.0, "max": 6.0}), ([(4, 33)], {"min": -0.5}), ([(4, 33)], {"max": 0.3})],
    "batch_norm": [([(2, 3, 5, 7), (3,), (3,), (3,), (3,)], {"eps": 1e-3}),
                   ([(4, 6), (6,), (6,), (6,), (6,)], {})],
    "dropout": [([(2, 3, 4)], {"p": 0.5})],
    "identity": [([(2, 3, 4)], {})],
    "cast": [([(2, 3, 4)], {"dtype": "float32"})],
    "max_pool2d": [([(2, 3, 9, 9)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 2, 8, 7)], {"kernel": 2}),
                   ([(1, 2, 10, 10)], {"kernel": 3, "stride": 2, "ceil_mode": True}),
                   ([(1, 2, 9, 9)], {"kernel": 3, "dilation": 2})],
    "avg_pool2d": [([(2, 3, 13, 13)], {"kernel": 13}),
                   ([(1, 2, 8, 8)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 2, 8, 8)], {"kernel": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
                   ([(1, 2, 9, 9)], {"kernel": 2, "ceil_mode": True})],
    "adaptive_avg_pool2d": [([(2, 3, 7, 7)], {"output_size": (1, 1)}), ([(1, 2, 10, 9)], {"output_size": (3, 4)})],
    "softmax": [([(4, 10)], {"axis": 1}), ([(2, 3, 4, 5)], {"axis": 1}), ([(2, 3, 4)], {"axis": 2})],
    "log_softmax": [([(4, 10)], {"axis": 1}), ([(2, 3, 4, 5)], {"axis": 3})],
    "mean": [([(2, 3, 4, 5)], {"axes": (2, 3)}), ([(2, 3, 4, 5)], {"axes": (1,), "keepdims": True}),
             ([(4, 10)], {"axes": (1,)})],
    "sum": [([(2, 3, 4, 5)], {"axes": (2, 3), "keepdims": True}), ([(4, 10)], {"axes": (0,)})],
    "concat": [([(2, 3, 4, 4), (2, 5, 4, 4)], {"axis": 1}), ([(2, 3), (2, 4), (2, 1)], {"axis": 1}),
               ([(1, 2, 3), (2, 2, 3)], {"axis": 0})],
    "transpose": [([(2, 3, 4, 5)], {"perm": (0, 2, 3, 1)}), ([(3, 7)], {"perm": (1, 0)}),
                  ([(2, 3, 4)], {"perm": (0, 2, 1)})],
    "pad": [([(2, 3, 4, 5)], {"pads": ((0, 0), (0, 0), (1, 2), (2, 1))}),
            ([(2, 3, 4)], {"pads": ((0, 0), (1, 0), (0, 0)), "value": -1.5}),
            ([(3, 7)], {"pads": ((2, 1), (0, 3))})],
    "slice": [([(2, 6, 5, 7)], {"axes": (2, 3), "starts": (1, -5), "stops": (4, 100), "steps": (1, 2)}),
              ([(4, 9)], {"axes": (1,), "starts": (2,), "stops": (3,)}),
              ([(6, 3, 4)], {"axes": (0, 2), "starts": (1, 0), "stops": (6, 4), "steps": (3, 2)})],
    "reshape": [([(2, 3, 4, 5)], {"shape": (2, -1)}), ([(6, 4)], {"shape": (2, 3, 4)})],
    "conv2d": [([(2, 3, 9, 9), (8, 3, 3, 3)], {}),
               ([(1, 4, 10, 10), (6, 4, 3, 3), (6,)], {"stride": 2, "padding": 1}),
               ([(1, 4, 11, 11), (4, 1, 3, 3)], {"padding": 2, "dilation": 2, "groups": 4}),
               ([(2, 6, 7, 7), (6, 3, 1, 1), (6,)], {"groups": 2}),
               ([(1, 3, 8, 8), (5, 3, 2, 3)], {"padding": ((1, 0), (2, 1))})],
    "dense": [([(4, 16), (8, 16), (8,)], {}), ([(2, 3, 16), (5, 16)], {})],
    "matmul": [([(4, 16), (16, 8)], {}), ([(2, 3, 4, 5), (2, 3, 5, 6)], {}), ([(2, 3, 4, 5), (5, 6)], {})],
}
