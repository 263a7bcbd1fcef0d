"""Compiled training: the forward and backward graphs of :func:`differentiate` as two Programs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.autodiff.differentiate import Differentiated, differentiate
from sol.ir import Graph, Value
from sol.program import Program


class TrainingProgram:
    """Two compiled programs sharing one device.

    ``forward(*inputs) -> (outputs, saved)``: ``inputs`` are the graph's inputs followed by the
    trained parameters given in ``wrt`` (see ``wrt_inputs``); ``saved`` is a list of arrays to
    keep until the backward (some are the caller's own inputs, passed through uncopied).
    ``backward(saved, grad_outputs) -> grads``: one gradient per entry of ``grad_outputs`` (the
    outputs listed in ``grad_output_indices``; None means zeros), returns one gradient per ``wrt``.
    Both are ordinary :class:`~sol.program.Program` objects (``forward_program``,
    ``backward_program``), built by ``compile_graph`` with ``training=True`` (no BatchNorm
    folding, no dropout removal)."""

    def __init__(self, diff: Differentiated, forward_program: Program, backward_program: Program) -> None:
        self.diff = diff
        self.forward_program = forward_program
        self.backward_program = backward_program

    @property
    def device(self) -> str:
        return self.forward_program.device

    @property
    def num_outputs(self) -> int:
        return self.diff.num_outputs

    @property
    def grad_output_indices(self) -> list[int]:
        return list(self.diff.grad_outputs)

    @property
    def wrt_inputs(self) -> list[int]:
        return list(self.diff.wrt_inputs)

    def forward(self, *inputs: Any) -> tuple[list[np.ndarray], list[Any]]:
        results = self.forward_program(*inputs)
        saved = [inputs[s.index] if s.kind == "input" else results[s.index] for s in self.diff.saved]
        return results[:self.diff.num_outputs], saved

    def backward(self, saved: Sequence[Any], grad_outputs: Sequence[Any]) -> list[np.ndarray]:
        if len(saved) != len(self.diff.saved):
            raise TypeError(f"backward expects the {len(self.diff.saved)} saved tensor(s) forward returned, "
                            f"got {len(saved)}")
        if len(grad_outputs) != len(self.diff.grad_outputs):
            raise TypeError(f"backward expects {len(self.diff.grad_outputs)} output gradient(s), "
                            f"got {len(grad_outputs)}")
        types = self.backward_program.input_types[len(saved):]
        grads = [np.zeros(t.shape, t.dtype) if g is None else g for g, t in zip(grad_outputs, types)]
        return self.backward_program(*saved, *grads)

    def __repr__(self) -> str:
        return f"<sol TrainingProgram on {self.device}: {self.diff.describe()}>"


def compile_training(graph: Graph, wrt: Sequence[Value | str], device: str | None = None,
                     options: dict | None = None, outputs: Sequence[int] | None = None) -> TrainingProgram:
    """Differentiate ``graph`` with respect to ``wrt`` (inputs or parameters, values or names) and
    compile both graphs for ``device`` through the normal path (passes with ``training=True``,
    the same planner, codegen and cache). ``graph`` is left unchanged."""
    from sol.api import compile_graph

    diff = differentiate(graph, wrt, outputs)
    forward_program = compile_graph(diff.forward, device, training=True, options=options)
    backward_program = compile_graph(diff.backward, forward_program.device, training=True, options=options)
    return TrainingProgram(diff, forward_program, backward_program)
