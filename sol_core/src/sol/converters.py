"""The converter table a frontend keeps: framework op name -> the function converting it to sol IR.

Why in core: every frontend needs the same small registry (one converter per op name, refusing a
second one, a lookup, the sorted names for ``supported_ops()`` and for error messages), and MXNet
or ONNX frontends would otherwise write it a third and fourth time. A table is a ``dict`` (tests
and plugins may read or patch entries as with any mapping) with a :meth:`ConverterTable.converts`
decorator for registering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

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
