"""ONNX's backend API (``onnx.backend.base.Backend``) on sol: what ONNX's own backend test suite
(``onnx.backend.test.BackendTest``) and tools written against that API call.

``device`` is ONNX's device string: ``"CPU"`` is the sol device ``sol.device.get()`` names
(x86 by default), ``"CUDA"`` the ``cuda`` device where one is installed; ``sol_device=NAME``
picks any sol device. Other keyword arguments go to :func:`sol_onnx.optimize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from sol_onnx.session import SolInferenceSession


class SolBackendRep(BackendRep):
    """A prepared model: ``run(inputs)`` with the inputs in order (or by name) -> the outputs in order."""

    def __init__(self, session: SolInferenceSession) -> None:
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            return tuple(self.session.run(None, {k: _array(v) for k, v in inputs.items()}))
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        return tuple(self.session(*(_array(x) for x in inputs)))


def _array(x: Any) -> Any:
    """A NumPy array for an input given as a ``TensorProto`` or a NumPy scalar (as ONNX's tests give some)."""
    if isinstance(x, onnx.TensorProto):
        return onnx.numpy_helper.to_array(x)
    return np.asarray(x) if isinstance(x, np.generic) else x


class SolBackend(Backend):
    """sol as an ONNX backend."""

    @classmethod
    def sol_device(cls, device: str, kwargs: dict[str, Any]) -> str:
        name = kwargs.pop("sol_device", None)
        if name:
            return str(name)
        if Device(device).type == DeviceType.CUDA:
            return "cuda"
        from sol.plugin_api import selected_device

        return str(selected_device())

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> SolBackendRep:
        from sol_onnx import optimize

        options = dict(kwargs)
        return SolBackendRep(optimize(model, device=cls.sol_device(device, options), **options))

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """One node on ``inputs`` (NumPy arrays, in the node's input order), as a model of its own."""
        arrays = [np.asarray(x) for x in inputs]
        names = [n for n in node.input if n]
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                        for n, a in zip(names, arrays)]
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        inferred = _node_output_types(node, graph_inputs, opset)
        outputs = []
        for i, name in enumerate(o for o in node.output if o):
            if outputs_info and i < len(outputs_info):
                dtype, shape = outputs_info[i]
                outputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                                             shape))
            else:
                outputs.append(helper.make_value_info(name, inferred[name]))
        domain = node.domain or ""
        imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        model = helper.make_model(helper.make_graph([node], "run_node", graph_inputs, outputs), opset_imports=imports)
        return cls.run_model(model, dict(zip(names, arrays)), device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        from sol.plugin_api import plugin_roles

        kind = Device(device).type
        if kind == DeviceType.CPU:
            return True
        return kind == DeviceType.CUDA and "cuda" in plugin_roles().devices.names()


def _node_output_types(node: Any, inputs: list[Any], opset: int) -> dict[str, Any]:
    """ONNX's type inference for one node's outputs (a model's outputs need types for the checker)."""
    schema = onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    types = onnx.shape_inference.infer_node_outputs(schema, node, {vi.name: vi.type for vi in inputs})
    return {name: types.get(name, onnx.TypeProto()) for name in node.output if name}


prepare = SolBackend.prepare
run_model = SolBackend.run_model
run_node = SolBackend.run_node
supports_device = SolBackend.supports_device
