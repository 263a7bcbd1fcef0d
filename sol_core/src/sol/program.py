"""A compiled network, loaded on its device: what a frontend wraps.

Core validates every call (rank, shape, dtype) before the device sees a pointer, so a bad input
is a clear ``ValueError``/``TypeError``, never a crash or a wrong result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sol.ir import TensorType

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


class Program:
    """Runs one network on one device. ``runner`` gets validated, C-contiguous host arrays."""

    def __init__(
        self,
        name: str,
        device: str,
        input_names: Sequence[str],
        input_types: Sequence[TensorType],
        output_types: Sequence[TensorType],
        runner: Runner,
        info: dict[str, Any] | None = None,
        keepalive: Any = None,
    ) -> None:
        self.name = name
        self.device = device
        self.input_names = list(input_names)
        self.input_types = list(input_types)
        self.output_types = list(output_types)
        self._runner = runner
        self.info = dict(info or {})
        self._keepalive = keepalive  # e.g. the loaded library, which must outlive calls

    def check_inputs(self, arrays: Sequence[Any]) -> None:
        """Raise TypeError/ValueError naming expected and given if the inputs don't fit."""
        if len(arrays) != len(self.input_types):
            raise TypeError(f"{self.name} expects {len(self.input_types)} input(s) "
                            f"({', '.join(map(str, self.input_types))}), got {len(arrays)}")
        for i, (a, t) in enumerate(zip(arrays, self.input_types)):
            label = f"input {i} ({self.input_names[i]})"
            shape = tuple(getattr(a, "shape", ()))
            # "float32" from NumPy, "torch.float32" and the like from frameworks' own dtypes.
            dtype = str(getattr(a, "dtype", type(a).__name__)).rsplit(".", 1)[-1]
            if dtype != t.dtype:
                raise TypeError(f"{label}: expected dtype {t.dtype}, got {dtype}")
            if len(shape) != t.rank:
                raise ValueError(f"{label}: expected rank {t.rank} with shape {t.shape}, "
                                 f"got rank {len(shape)} with shape {shape}")
            if shape != t.shape:
                raise ValueError(f"{label}: expected shape {t.shape}, got {shape}")

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        self.check_inputs(arrays)
        return self._runner([np.ascontiguousarray(a) for a in arrays])

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.input_types))
        outs = ", ".join(map(str, self.output_types))
        return f"<sol Program {self.name} on {self.device}: ({ins}) -> ({outs})>"
