"""Running the operators sol cannot compile in MXNet, between the compiled parts (core's
partitioned programs: :class:`sol.plugin_api.PartitionedProgram` calls :class:`Runner`).

Each framework node is the MXNet node itself (its JSON: op, name, attributes), rebuilt as a
one-node Symbol over variables for its inputs and run with MXNet's executor; the parameters it
reads come from the block's ``Parameter``\\ s at every call.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from typing import Any

import mxnet as mx
import numpy as np

from sol.plugin_api import FrameworkStep, Program, call_of
from sol_mxnet.arrays import to_numpy
from sol_mxnet.importer import MXCall, SymbolModel


def node_symbol(call: MXCall) -> Any:
    """The MXNet node of ``call`` as a Symbol over variables ``in0``, ``in1``, ... (one per input)."""
    node = dict(call.node)
    n = len(node["inputs"])
    nodes: list[dict[str, Any]] = [{"op": "null", "name": f"in{i}", "inputs": []} for i in range(n)]
    nodes.append(dict(node, inputs=[[i, 0, 0] for i in range(n)]))
    graph = {"nodes": nodes, "arg_nodes": list(range(n)), "node_row_ptr": list(range(n + 2)),
             "heads": [[n, i, 0] for i in range(call.num_outputs)], "attrs": {"mxnet_version": ["int", 10901]}}
    return mx.sym.load_json(json.dumps(graph))


_SYMBOLS: weakref.WeakKeyDictionary[MXCall, Any] = weakref.WeakKeyDictionary()


class Runner:
    """The :class:`~sol.plugin_api.StepRunner` of an inference call: NumPy arrays between steps."""

    def __init__(self, model: SymbolModel) -> None:
        self.model = model

    def sol(self, index: int, program: Program, values: list[Any]) -> Sequence[Any]:
        return program(*[np.asarray(v, order="C") for v in values])

    def framework(self, step: FrameworkStep, values: list[Any]) -> Sequence[Any]:
        env = dict(zip(step.inputs, values))
        for node in step.nodes:
            call: MXCall = call_of(node).handle
            args: dict[str, Any] = {}
            reads = iter(node.inputs)
            params = dict(call.params)
            for pos in range(len(call.node["inputs"])):
                if pos in params:
                    args[f"in{pos}"] = self.model.params[params[pos]].data()
                else:
                    value = np.asarray(env[next(reads)])
                    args[f"in{pos}"] = mx.nd.array(value, dtype=value.dtype)  # (MXNet's default: float32)
            sym = _SYMBOLS.get(call)
            if sym is None:
                sym = _SYMBOLS[call] = node_symbol(call)
            outs = sym.eval(ctx=mx.cpu(), **args)
            for v, o in zip(node.outputs, outs):
                env[v] = to_numpy(o)
        return [env[v] for v in step.outputs]
