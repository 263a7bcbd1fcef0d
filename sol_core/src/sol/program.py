"""A compiled network, loaded on its device: what a frontend wraps.

Core validates every call (rank, shape, dtype) before the device sees a pointer, so a bad input
is a clear ``ValueError``/``TypeError``, never a crash or a wrong result.

Two ways to call a program:

* ``program(*arrays)``: host NumPy arrays in, host arrays out (the device copies in and out
  where its memory is its own). The default, and the fast path at batch 1.
* ``program.run(inputs, outputs=None)``: :class:`~sol.memory.Buffer` s of the device's memory
  (``program.memory``) in, buffers out: written into ``outputs`` where given, else into new
  buffers of that memory. A device that runs on buffers directly passes ``run_into``; for one
  that does not, core stages the buffers through host arrays, so every program can be run so.

Threading: a program runs on the calling thread; several threads may call one program at once
unless its device says otherwise (``concurrent_calls=False``: core serializes the calls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sol.ir import TensorType
from sol.memory import HOST, Buffer, serialized
from sol.roles import DeviceMemory

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
IntoRunner = Callable[[list[Buffer], list[Buffer]], None]
"""Runs one call on device buffers: inputs, then the outputs to write (validated by core: the
program's types, C-contiguous, in its memory, outputs not overlapping inputs)."""
Profiler = Callable[[], Sequence[float] | None]


class Program:
    """Runs one network on one device. ``runner`` gets validated, C-contiguous host arrays and
    returns host arrays; ``run_into`` (optional) runs on buffers of ``memory`` (default: host
    memory) and writes the outputs it is given. ``concurrent_calls=False``: one call at a time
    (core holds a lock around the runners), for devices that cannot run calls concurrently."""

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
        memory: DeviceMemory | None = None,
        run_into: IntoRunner | None = None,
        concurrent_calls: bool = True,
    ) -> None:
        self.name = name
        self.device = device
        self.input_names = list(input_names)
        self.input_types = list(input_types)
        self.output_types = list(output_types)
        self.memory: DeviceMemory = HOST if memory is None else memory
        self.concurrent_calls = concurrent_calls
        if not concurrent_calls:  # wrapped once here: the default path pays nothing
            runner = serialized(runner)
            run_into = None if run_into is None else serialized(run_into)
        self._runner = runner
        self._run_into = run_into
        self._in_bytes = [t.nbytes for t in self.input_types]
        self._out_bytes = [t.nbytes for t in self.output_types]
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
        return self._runner([np.asarray(a, order="C") for a in arrays])

    @property
    def runs_in_place(self) -> bool:
        """True when :meth:`run` hands the buffers to the device as they are (no staging copy):
        then a frontend whose tensors live in :attr:`memory` passes them with no copy at all."""
        return self._run_into is not None

    def run(self, inputs: Sequence[Buffer], outputs: Sequence[Buffer] | None = None) -> list[Buffer]:
        """Run on buffers of :attr:`memory`: ``inputs`` in the program's input types, results
        written into ``outputs`` (the output types; none may overlap an input) or, without
        them, into new buffers of :attr:`memory`. Returns the output buffers. Raises
        TypeError/ValueError, before the device sees a pointer, for a buffer of the wrong type,
        of another memory, non-contiguous or freed."""
        inputs = list(inputs)
        memory = self.memory
        # The common case (buffers that fit, given outputs apart from the inputs, a device that
        # runs on buffers) in a few attribute reads: this is a frontend's per-call path.
        if self._run_into is not None and _fit(inputs, self.input_types, memory):
            if outputs is None:
                outs = [memory.allocate(t) for t in self.output_types]
                self._run_into(inputs, outs)
                return outs
            outs = list(outputs)
            if _fit(outs, self.output_types, memory) and _apart(inputs, outs, self._in_bytes, self._out_bytes):
                self._run_into(inputs, outs)
                return outs
        self._check_buffers("input", inputs, self.input_types)
        if outputs is None:
            outs = [memory.allocate(t) for t in self.output_types]
        else:
            outs = list(outputs)
            self._check_buffers("output", outs, self.output_types)
            _check_disjoint(self.name, inputs, outs)
        if self._run_into is not None:
            self._run_into(inputs, outs)
            return outs
        # The device runs on host arrays only: stage through them (views where the host
        # addresses the memory, copies otherwise), and copy the results into the outputs.
        arrays = [b.numpy() if memory.shares_host else memory.to_host(b) for b in inputs]
        for out, result in zip(outs, self._runner(arrays)):
            memory.copy_from_host(out, np.asarray(result, order="C"))
        return outs

    def _check_buffers(self, what: str, buffers: list[Buffer], types: list[TensorType]) -> None:
        memory = self.memory
        if _fit(buffers, types, memory):
            return
        for i, b in enumerate(buffers):
            if not isinstance(b, Buffer):
                raise TypeError(f"{self.name}: {what} {i} is a {type(b).__name__}, not a sol.memory.Buffer "
                                f"(program.memory.from_host(array) makes one; program(*arrays) takes host arrays)")
            if b.memory is not memory:
                raise ValueError(f"{self.name}: {what} {i} is in {b.memory.device} memory ({b.memory!r}); this "
                                 f"program runs on {memory.device} memory ({memory!r}): copy it there first")
            if b.freed or (not b.ptr and b.type.nbytes):
                raise ValueError(f"{self.name}: {what} {i} was freed")
            if b.strides is not None:
                raise ValueError(f"{self.name}: {what} {i} is not C-contiguous (strides {b.strides}): "
                                 f"copy it into a contiguous buffer first")
        check_arrays(self.name, self.input_names, types, buffers, what)

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.input_types))
        outs = ", ".join(map(str, self.output_types))
        return f"<sol Program {self.name} on {self.device}: ({ins}) -> ({outs})>"


def check_arrays(name: str, input_names: Sequence[str], input_types: Sequence[TensorType],
                 arrays: Sequence[Any], what: str = "input") -> None:
    """Raise TypeError/ValueError naming expected and given if ``arrays`` do not fit ``input_types``
    (count, dtype, rank, shape): the check of every call of a :class:`Program` or of a program
    compiled in parts (:class:`sol.fallback.PartitionedProgram`)."""
    if len(arrays) != len(input_types):
        raise TypeError(f"{name} expects {len(input_types)} {what}(s) "
                        f"({', '.join(map(str, input_types))}), got {len(arrays)}")
    for i, (a, t) in enumerate(zip(arrays, input_types)):
        label = f"{what} {i} ({input_names[i]})" if what == "input" else f"{what} {i}"
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


def _fit(buffers: list[Buffer], types: list[TensorType], memory: DeviceMemory) -> bool:
    """Whether ``buffers`` are live, C-contiguous buffers of ``memory`` of exactly ``types``."""
    if len(buffers) != len(types):
        return False
    for b, t in zip(buffers, types):
        if type(b) is not Buffer or b.memory is not memory or b.strides is not None or not b.ptr or b.type != t:
            return False
    return True


def _apart(inputs: list[Buffer], outputs: list[Buffer], in_bytes: list[int], out_bytes: list[int]) -> bool:
    """Whether no output overlaps an input or another output (:func:`_check_disjoint` says which);
    ``in_bytes``/``out_bytes``: their sizes (known per program: the buffers fit its types)."""
    spans = [(b.ptr, b.ptr + n) for b, n in zip(inputs, in_bytes)]
    for out, n in zip(outputs, out_bytes):
        lo, hi = out.ptr, out.ptr + n
        for lo2, hi2 in spans:
            if lo < hi2 and lo2 < hi:
                return False
        spans.append((lo, hi))
    return True


def _check_disjoint(name: str, inputs: list[Buffer], outputs: list[Buffer]) -> None:
    """Outputs must not overlap inputs or each other: a device may read an input after writing
    an output, so an overlap would be a wrong result, not an error, without this check."""
    seen = inputs
    for i, out in enumerate(outputs):
        lo, hi = out.ptr, out.ptr + out.nbytes
        for j, other in enumerate(seen):
            if lo < other.ptr + other.nbytes and other.ptr < hi:
                what = f"input {j}" if j < len(inputs) else f"output {j - len(inputs)}"
                raise ValueError(f"{name}: output {i} overlaps {what}: outputs need memory of their own")
        seen = [*seen, out]
