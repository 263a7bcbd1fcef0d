"""Core autodiff, framework-neutral: a forward graph becomes a forward graph that also returns
the tensors the backward needs, plus a backward graph computing gradients, both compiled through
the same passes, planner and devices as inference.

* :func:`differentiate` (``graph, wrt -> Differentiated``): the two graphs and how their inputs
  and outputs line up.
* :func:`compile_training` (``graph, wrt, device -> TrainingProgram``): both graphs compiled;
  ``forward(*inputs) -> (outputs, saved)`` and ``backward(saved, grad_outputs) -> grads``.
* :func:`params_to_inputs`: parameters being trained change every step, so they are run-time
  inputs of the training programs, not constants placed once; frontends call this (or pass the
  parameters in ``wrt``, which converts them).
* Gradient rules live on each op's :class:`~sol.ops.registry.OpDef` (``gradient``); core's are in
  :mod:`sol.autodiff.rules`, which documents the rule contract (:class:`GradContext`).
"""

from __future__ import annotations

from sol.autodiff.builder import GradContext
from sol.autodiff.differentiate import Differentiated, SavedSource, differentiate
from sol.autodiff.graphs import clone_graph, params_to_inputs
from sol.autodiff.training import TrainingProgram, compile_training

__all__ = ["Differentiated", "GradContext", "SavedSource", "TrainingProgram", "clone_graph",
           "compile_training", "differentiate", "params_to_inputs"]
