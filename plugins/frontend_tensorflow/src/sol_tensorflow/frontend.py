"""The TensorFlow frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import sys
from typing import Any

from sol.plugin_api import Availability, Frontend, Graph, PartitionedProgram, Program, framework_availability


def availability() -> Availability:
    """TensorFlow is importable here (looked up, not imported): ``sol plugins`` and ``from sol.tensorflow
    import ...`` say the same."""
    return framework_availability("tensorflow", "pip install tensorflow")


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

    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> Any:
        from sol_tensorflow.wrapper import SolKerasModel

        return SolKerasModel(program, model, graph)
