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
Profiler = Callable[[], Sequence[float] | None]


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
        profiler: Profiler | None = None,
    ) -> None:
        self.name = name
        self.device = device
        self.input_names = list(input_names)
        self.input_types = list(input_types)
        self.output_types = list(output_types)
        self._runner = runner
        self.info = dict(info or {})
        self._keepalive = keepalive  # e.g. the loaded library, which must outlive calls
        self._profiler = profiler
        # Per input, (shape, NumPy dtype) for the per-call fast check; None where the dtype has no
        # NumPy equivalent (then every call takes the general check).
        try:
            expected: list[tuple[tuple[int, ...], np.dtype]] | None = [
                (tuple(t.shape), np.dtype(t.dtype)) for t in self.input_types]
        except TypeError:
            expected = None
        self._expected = expected

    def group_seconds(self) -> list[float] | None:
        """Seconds spent in each planned group since the program was loaded, indexed by group id
        (``plan.groups[i].id``), summed over all calls; None unless the program was built with
        ``profile=True`` on a device that times its groups. Callers take differences between
        two readings, so the device never needs to reset its counters."""
        if self._profiler is None:
            return None
        seconds = self._profiler()
        return None if seconds is None else [float(s) for s in seconds]

    def check_inputs(self, arrays: Sequence[Any]) -> None:
        """Raise TypeError/ValueError naming expected and given if the inputs don't fit."""
        check_arrays(self.name, self.input_names, self.input_types, arrays)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        # The common case, C-contiguous NumPy arrays of the compiled shapes and dtypes, is
        # recognised in a few attribute reads: on small networks at batch 1 the general
        # check's string work costs as much as the network itself.
        expected = self._expected
        if expected is not None and len(arrays) == len(expected) and all(
                type(a) is np.ndarray and a.shape == s and a.dtype == d and a.flags.c_contiguous
                for a, (s, d) in zip(arrays, expected)):
            return self._runner(list(arrays))
        self.check_inputs(arrays)
        return self._runner([np.ascontiguousarray(a) for a in arrays])

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.input_types))
        outs = ", ".join(map(str, self.output_types))
        return f"<sol Program {self.name} on {self.device}: ({ins}) -> ({outs})>"


def check_arrays(name: str, input_names: Sequence[str], input_types: Sequence[TensorType],
                 arrays: Sequence[Any]) -> None:
    """Raise TypeError/ValueError naming expected and given if ``arrays`` do not fit ``input_types``
    (count, dtype, rank, shape): the check of every call of a :class:`Program` or of a program
    compiled in parts (:class:`sol.fallback.PartitionedProgram`)."""
    if len(arrays) != len(input_types):
        raise TypeError(f"{name} expects {len(input_types)} input(s) "
                        f"({', '.join(map(str, input_types))}), got {len(arrays)}")
    for i, (a, t) in enumerate(zip(arrays, input_types)):
        label = f"input {i} ({input_names[i]})"
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
