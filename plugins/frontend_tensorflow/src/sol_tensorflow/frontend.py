"""The TensorFlow frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from sol.ir import Graph
from sol.program import Program
from sol.roles import Availability, Frontend

MISSING = "tensorflow is not installed (pip install tensorflow)"
"""Why this frontend is unavailable without TensorFlow: ``sol plugins`` and ``from
sol.tensorflow import SolKerasModel`` say the same."""


def availability() -> Availability:
    """TensorFlow is importable here (looked up, not imported: importing it takes seconds). No
    version in the detail: TensorFlow ships under several distribution names."""
    if not _findable("tensorflow"):
        return Availability(False, MISSING)
    return Availability(True)


def _findable(name: str) -> bool:
    """Importable without importing it. An imported module counts even without a ``__spec__``
    (find_spec raises then); one blocked with ``sys.modules[name] = None`` does not."""
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class TensorFlowFrontend(Frontend):
    name = "tensorflow"
    module = "sol_tensorflow"

    def availability(self) -> Availability:
        return availability()

    def accepts(self, model: Any) -> bool:
        # No TensorFlow/Keras imported: no model of theirs can exist, and importing them here
        # would cost seconds for every other framework's model.
        keras = sys.modules.get("keras")
        if keras is not None and isinstance(model, keras.layers.Layer):
            return True
        tf = sys.modules.get("tensorflow")
        if tf is None:
            return False
        return isinstance(model, (tf.types.experimental.PolymorphicFunction,
                                  tf.types.experimental.ConcreteFunction))

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        from sol_tensorflow.importer import import_model

        return import_model(model, example_inputs, options)

    def wrap(self, program: Program, model: Any, graph: Graph) -> Any:
        from sol_tensorflow.wrapper import SolKerasModel

        return SolKerasModel(program, model, graph)
