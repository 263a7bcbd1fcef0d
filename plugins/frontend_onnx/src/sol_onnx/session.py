"""The object ``sol.onnx.optimize(model)`` returns: ONNX Runtime's ``InferenceSession`` surface.

ONNX users already write ``session.run(None, {"input": x})``, ``session.get_inputs()[0].name``
and ``.shape``: the session here answers the same (``run``, ``get_inputs``, ``get_outputs``,
``get_modelmeta``, ``get_providers``), so swapping ``onnxruntime.InferenceSession(path)`` for
``sol.onnx.optimize(path)`` changes nothing else; it is also callable on NumPy arrays in input
order (``session(x)`` -> the list of outputs).

Variants: sol's programs are specialized on every shape. A model whose inputs leave dimensions
open (a batch named ``N``) is compiled for the example's shapes (or 1 for an open dimension) and,
at the first call with other shapes, imported and compiled again for those, once; the compile
cache makes a shape seen before in any process cheap. ``dynamic=False`` makes another shape a
``ValueError`` instead.

Calls are checked before anything runs: an unknown or missing input name, a dtype other than the
declared one (ONNX Runtime does not cast either), a rank or a fixed dimension other than the
declared ones is a ``TypeError``/``ValueError`` naming the input, the expected and the given value.
Results are new arrays the caller owns.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.plugin_api import (
    Graph,
    PartitionedProgram,
    Program,
    TensorType,
    compile_graph,
    compile_partitioned,
    is_partitioned,
)
from sol_onnx.importer import IMPORT_KEY, Imported, Spec, check_shape, declared_dims, dtype_of, import_loaded
from sol_onnx.importer import model_inputs as _model_inputs
from sol_onnx.loader import Loaded

OPTIONS_KEY = "onnx.options"
_ORT_TYPES = {"float32": "float", "float64": "double", "float16": "float16", "int64": "int64", "int32": "int32",
              "int8": "int8", "uint8": "uint8", "bool": "bool"}

Key = tuple[tuple[tuple[int, ...], str], ...]


@dataclass(frozen=True)
class NodeArg:
    """An input or output as ``onnxruntime.NodeArg`` describes it: ``shape`` has an int per fixed
    dimension, the name of a symbolic one, None for an unnamed open one."""

    name: str
    shape: list[int | str | None] | None
    type: str


@dataclass(frozen=True)
class ModelMeta:
    """``get_modelmeta()``: what the model says about itself."""

    producer_name: str
    graph_name: str
    domain: str
    description: str
    version: int
    custom_metadata_map: dict[str, str]


class Variant:
    """The model compiled for one set of input shapes: a program, or parts with ONNX Runtime steps."""

    def __init__(self, program: Program | PartitionedProgram, graph: Graph) -> None:
        self.imported: Imported = graph.meta[IMPORT_KEY]
        self.program = program
        self.runner: Any = None
        if isinstance(program, PartitionedProgram):
            from sol_onnx.fallback import runner_for

            self.runner = runner_for(self.imported, program)

    @property
    def programs(self) -> list[Program]:
        return self.program.programs if isinstance(self.program, PartitionedProgram) else [self.program]

    @property
    def fallback(self) -> list[str]:
        """The ONNX op types ONNX Runtime runs in this variant."""
        return sorted({t for t, _, _ in self.imported.problems})

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """All the model's outputs, in order, as new arrays."""
        results = self.runner(arrays) if self.runner is not None else self.program(*arrays)  # type: ignore[operator]
        outs = []
        for kind, what in self.imported.outputs:
            if kind == "static":
                outs.append(np.array(what, copy=True))
            else:
                out = results[what]
                fresh = isinstance(out, np.ndarray) and not any(np.may_share_memory(out, a) for a in arrays)
                outs.append(out if fresh else np.array(out, copy=True))
        return outs


class SolInferenceSession:
    """An ONNX model compiled by sol, with the ``onnxruntime.InferenceSession`` surface (see the module doc)."""

    def __init__(self, loaded: Loaded, device: str, options: dict[str, Any], first: Variant | None = None) -> None:
        self._loaded = loaded
        self._device = device
        self._options = dict(options)
        self._inputs = _model_inputs(loaded.model)
        self._variants: dict[Key, Variant] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        if first is not None:
            self._variants[_key(first.imported.specs)] = first
            self._warned.update(_lines(first.imported))

    @classmethod
    def from_compiled(cls, program: Program | PartitionedProgram, graph: Graph) -> SolInferenceSession:
        """The session of what ``sol.optimize`` imported and compiled."""
        first = Variant(program, graph)
        imported, options = first.imported, graph.meta.get(OPTIONS_KEY, {})
        if imported.device != program.device:  # imported for another device (not through optimize)
            warned = set(_lines(imported))
            again = import_loaded(imported.loaded, imported.specs, dict(options, device=program.device), warn=False)
            if _nodes(again.meta[IMPORT_KEY]) != _nodes(imported):  # that device needs another cut
                first = compile_variant(imported.loaded, imported.specs, program.device, options, warned)
        return cls(imported.loaded, program.device, options, first)

    # --- onnxruntime's surface ----------------------------------------------------------------
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(vi) for vi in self._loaded.model.graph.output]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return []  # sol compiles the weights in

    def get_providers(self) -> list[str]:
        return [f"sol:{self._device}"]

    def get_modelmeta(self) -> ModelMeta:
        m = self._loaded.model
        return ModelMeta(m.producer_name, m.graph.name, m.domain, m.doc_string, int(m.model_version),
                         {p.key: p.value for p in m.metadata_props})

    def run(self, output_names: Sequence[str] | None, input_feed: Mapping[str, Any],
            run_options: Any = None) -> list[np.ndarray]:
        """The outputs named (all, in the model's order, for None) for the inputs ``input_feed``
        (input name -> NumPy array)."""
        names = [vi.name for vi in self._inputs]
        unknown = [k for k in input_feed if k not in names]
        if unknown:
            raise ValueError(f"{self._loaded.name} has no input {unknown[0]!r}; its inputs are {', '.join(names)}")
        missing = [n for n in names if n not in input_feed]
        if missing:
            raise ValueError(f"{self._loaded.name}: no value given for input(s) {', '.join(repr(m) for m in missing)}")
        outs = self(*(input_feed[n] for n in names))
        if output_names is None:
            return outs
        all_names = [o.name for o in self._loaded.model.graph.output]
        picked = []
        for n in output_names:
            if n not in all_names:
                raise ValueError(f"{self._loaded.name} has no output {n!r}; its outputs are {', '.join(all_names)}")
            picked.append(outs[all_names.index(n)])
        return picked

    def __call__(self, *arrays: Any) -> list[np.ndarray]:
        """The model's outputs (a list, also for one) for its inputs in order."""
        if len(arrays) != len(self._inputs):
            raise TypeError(f"{self._loaded.name} takes {len(self._inputs)} input(s) "
                            f"({', '.join(vi.name for vi in self._inputs)}), got {len(arrays)}")
        checked = [self._check(vi, a) for vi, a in zip(self._inputs, arrays)]
        return self.variant_for(checked).run(checked)

    # --- variants -----------------------------------------------------------------------------
    @property
    def variants(self) -> dict[Key, Variant]:
        """The compiled variants by input signature (shapes and dtypes)."""
        return dict(self._variants)

    @property
    def device(self) -> str:
        return self._device

    def variant_for(self, arrays: Sequence[np.ndarray]) -> Variant:
        key: Key = tuple((tuple(a.shape), str(a.dtype)) for a in arrays)
        found = self._variants.get(key)
        if found is not None:
            return found
        if self._options.get("dynamic", True) is False and self._variants:
            compiled = ", ".join(_describe(k) for k in self._variants)
            raise ValueError(f"{self._loaded.name} was compiled for {compiled} (dynamic=False); got {_describe(key)}")
        with self._lock:  # one compile per new shape, also when threads meet it together
            if key not in self._variants:
                specs = [(vi.name, TensorType(shape, dtype)) for vi, (shape, dtype) in zip(self._inputs, key)]
                self._variants[key] = compile_variant(self._loaded, specs, self._device, self._options, self._warned)
            return self._variants[key]

    def _check(self, vi: Any, a: Any) -> np.ndarray:
        if not isinstance(a, np.ndarray):
            if not hasattr(a, "__array__"):
                raise TypeError(f"input {vi.name!r} of {self._loaded.name} must be a NumPy array, got "
                                f"{type(a).__name__}")
            a = np.asarray(a)
        want = dtype_of(vi.type)
        check_shape(self._loaded.name, vi.name, tuple(a.shape), str(a.dtype), declared_dims(vi.type), str(want))
        return np.asarray(a, order="C")

    def __repr__(self) -> str:
        return (f"<sol_onnx.SolInferenceSession {self._loaded.name} on {self._device}: "
                f"{len(self._variants)} compiled variant(s)>")


def compile_variant(loaded: Loaded, specs: list[Spec], device: str, options: dict[str, Any],
                    warned: set[str]) -> Variant:
    """Import ``loaded`` for ``specs`` and compile it for ``device`` (in parts where ONNX Runtime runs some nodes)."""
    graph = import_loaded(loaded, specs, dict(options, device=device), warned)
    program: Program | PartitionedProgram
    if is_partitioned(graph):
        program = compile_partitioned(graph, device, options=options)
    else:
        program = compile_graph(graph, device, options=options)
    return Variant(program, graph)


def _key(specs: list[Spec]) -> Key:
    return tuple((t.shape, t.dtype) for _, t in specs)


def _describe(key: Key) -> str:
    return "(" + ", ".join(f"{dtype}[{', '.join(map(str, shape))}]" for shape, dtype in key) + ")"


def _nodes(imported: Imported) -> set[tuple[str, str]]:
    """(op type, node name) of the nodes ONNX Runtime runs (the reasons name the device)."""
    return {(t, n) for t, n, _ in imported.problems}


def _lines(imported: Imported) -> list[str]:
    from sol_onnx.importer import problem_lines

    return problem_lines(imported.problems)


def _node_arg(vi: Any) -> NodeArg:
    dtype = dtype_of(vi.type)
    elem = _ORT_TYPES.get(dtype or "", "unknown")
    return NodeArg(vi.name, declared_dims(vi.type), f"tensor({elem})")
