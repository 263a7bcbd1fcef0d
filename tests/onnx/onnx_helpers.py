"""Small ONNX models built with ``onnx.helper`` for the frontend's tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: Sequence[Any] = (), opset: int = 17,
          name: str = "g", domains: dict[str, int] | None = None) -> Any:
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    return helper.make_model(helper.make_graph(nodes, name, inputs, outputs, list(inits)), opset_imports=imports)


def tensor(name: str, shape: list[Any], elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def init(name: str, array: Any) -> Any:
    return numpy_helper.from_array(np.asarray(array), name)


def mlp_with(op: str = "CumSum", batch: Any = "N", seed: int = 0) -> Any:
    """x (batch, 4) -> MatMul -> Relu -> ``op`` (a node sol may not convert) -> Tanh -> y."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Relu", ["h"], ["r"], name="relu")]
    inits = [init("W", rng.standard_normal((4, 6)).astype(np.float32))]
    if op == "CumSum":
        # reverse=1: a running sum from the end, which sol does not convert (ONNX Runtime runs it)
        nodes.append(helper.make_node("CumSum", ["r", "axis"], ["c"], name="my_cumsum", reverse=1))
        inits.append(init("axis", np.array(1, np.int64)))
    else:
        nodes.append(helper.make_node(op, ["r"], ["c"], name=f"my_{op.lower()}"))
    nodes.append(helper.make_node("Tanh", ["c"], ["y"], name="tanh"))
    return model(nodes, [tensor("x", [batch, 4])], [tensor("y", [batch, 6])], inits, name="mlp")


def run_ort(proto: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
