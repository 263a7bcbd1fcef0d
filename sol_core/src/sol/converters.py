"""What every frontend's converters stand on: the converter table (framework op name -> the
function converting it to sol IR) and the conversion context base (the graph being built and
what each framework tensor has become so far).

Why in core: every frontend needs the same small registry (one converter per op name, refusing a
second one, a lookup, the sorted names for ``supported_ops()`` and for error messages), and MXNet
or ONNX frontends would otherwise write it a third and fourth time. A table is a ``dict`` (tests
and plugins may read or patch entries as with any mapping) with a :meth:`ConverterTable.converts`
decorator for registering.

The context base exists for the same reason: every importer keeps "framework tensor -> what it is
in the IR" (an array known at optimize time, IR values), reads operands that must be known now
(shapes, axes), and builds nodes tagged with the framework op they came from. The TensorFlow,
ONNX and MXNet importers each subclass :class:`ConversionContext` with their own entry type (TF
keeps a tensor in two layouts) and their own ``Unsupported`` exception (each importer turns it
into a fallback or an error naming the op).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from sol.ir import Graph, Value

C = TypeVar("C", bound=Callable[..., object])


class ConverterTable(dict[str, C], Generic[C]):
    """Converters by framework op name (``"aten.relu.default"``, ``"Relu"``)."""

    def __init__(self, framework: str) -> None:
        super().__init__()
        self.framework = framework  # for messages: "PyTorch", "TensorFlow"

    def converts(self, *names: str) -> Callable[[C], C]:
        """Decorator: register the function as the converter of each of ``names``; a name that
        has a converter already is an error (two converters for one op would depend on import
        order)."""

        def register(fn: C) -> C:
            for name in names:
                if name in self:
                    raise ValueError(f"two {self.framework} converters for {name}")
                self[name] = fn
            return fn

        return register

    def lookup(self, name: str) -> C | None:
        """The converter of ``name``, or None where sol has none."""
        return self.get(name)

    def names(self) -> list[str]:
        """Every op name with a converter, sorted: what ``supported_ops()`` lists."""
        return sorted(self)

    def __repr__(self) -> str:
        return f"<ConverterTable {self.framework}: {len(self)} ops>"


class HasStatic(Protocol):
    """An entry of a conversion context: at least the array a tensor is known to be, if any."""

    static: np.ndarray | None


E = TypeVar("E", bound=HasStatic)


class ConversionContext(Generic[E]):
    """The graph being built and the framework tensors converted so far (``env``: key -> entry).

    Subclasses set :attr:`unsupported` (the frontend's exception for "this use of the op cannot
    be expressed") and, where a framework tensor is not its own key, override :meth:`key` and
    :meth:`label` (TensorFlow keys tensors by ``.name``; ONNX and MXNet by the name itself).
    ``source`` is the framework op being converted: every node built is tagged with it, so errors,
    ``sol inspect`` and generated-code comments name the user's layer.
    """

    unsupported: type[Exception] = ValueError

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.env: dict[Any, E] = {}  # key(tensor) -> entry
        self.source: str | None = None

    # --- reading operands -----------------------------------------------------------------
    def key(self, tensor: Any) -> Any:
        """The ``env`` key of a framework tensor (default: the tensor, e.g. its name)."""
        return tensor

    def label(self, tensor: Any) -> str:
        """How messages name a framework tensor."""
        return repr(tensor)

    def entry(self, tensor: Any) -> E:
        try:
            return self.env[self.key(tensor)]
        except KeyError:
            raise self.unsupported(f"input {self.label(tensor)} was not converted") from None

    def static(self, tensor: Any) -> np.ndarray | None:
        """The array ``tensor`` is known to be at optimize time, or None when it is computed at run time."""
        return self.entry(tensor).static

    def need_static(self, tensor: Any, what: str) -> np.ndarray:
        """The known array of ``tensor``; an operand computed at run time (a shape, axes) cannot
        be compiled, which is the frontend's ``unsupported`` (a fallback or a clear error)."""
        value = self.static(tensor)
        if value is None:
            raise self.unsupported(f"{what} ({self.label(tensor)}) must be known when optimizing, "
                                   f"not computed at run time")
        return value

    # --- building -------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        """A new node of ``op`` on ``inputs``, tagged with the framework op being converted."""
        return self.graph.add_node(op, list(inputs), attrs, source=self.source).output

    def const(self, value: Any, dtype: str | None = None) -> Value:
        return self.graph.add_const(np.asarray(value, dtype=dtype), hint="k")

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        """``v`` in ``shape`` (no node when it has that shape already)."""
        shape = tuple(int(d) for d in shape)
        return v if v.shape == shape else self.emit("reshape", [v], shape=shape)
