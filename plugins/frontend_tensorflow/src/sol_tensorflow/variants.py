"""Compiled inference variants of a model: one per input signature (shapes and dtypes).

Why variants and not shape-generic code: sol's planner and code generators specialize every loop
bound on static shapes, which is where its speed comes from. A call with new shapes (batch 3
after batch 8) is traced, imported and compiled again, once, and kept; the compile cache makes a
shape seen before in any process cheap.

A variant is *whole* (one program) or *split* (core's parts with TensorFlow running the ops sol
cannot compile between them: :mod:`sol.fallback`, :mod:`sol_tensorflow.fallback`). It holds the variables' values as
they were when it was compiled; :class:`~sol_tensorflow.weights.WeightsWatch` says when they
changed, and the variant is compiled again from the same traced graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from sol.plugin_api import DLPACK_CPU, Buffer, Graph, PartitionedProgram, Program, compile_partitioned, is_partitioned
from sol_tensorflow.fallback import Runner, runner_for
from sol_tensorflow.graphcall import numpy_call
from sol_tensorflow.importer import (
    DEVICE_KEY,
    FALLBACK_KEY,
    FORCED_KEY,
    MARKED_KEY,
    TRACED_KEY,
    Traced,
    convert,
    import_traced,
)
from sol_tensorflow.support import DeviceSupport
from sol_tensorflow.weights import WeightsWatch

Key = tuple[tuple[tuple[int, ...], str], ...]
"""Per input: its shape and dtype name."""


def key_of(values: Sequence[Any]) -> Key | None:
    """The signature a call's inputs select, or None when a shape is not fully known (inside a
    ``tf.function`` traced with open dimensions)."""
    key = []
    for v in values:
        shape = tf.TensorShape(v.shape)
        if not shape.is_fully_defined():
            return None
        key.append((tuple(int(d) for d in shape), tf.as_dtype(v.dtype).name))
    return tuple(key)


def key_of_specs(specs: Sequence[Any]) -> Key:
    return tuple((tuple(int(d) for d in s.shape), s.dtype.name) for s in specs)


def describe(key: Key) -> str:
    return ", ".join(f"{dtype}[{', '.join(map(str, shape))}]" for shape, dtype in key)


@dataclass
class Inference:
    """One compiled inference variant (see the module doc)."""

    traced: Traced
    program: Program | None  # the whole model, or the first compiled part (None: TensorFlow runs everything)
    runner: Runner | None  # where TensorFlow runs some ops
    fallback: list[str]  # op types TensorFlow runs
    watch: WeightsWatch | None

    @property
    def programs(self) -> list[Program]:
        if self.runner is not None:
            return self.runner.programs
        assert self.program is not None
        return [self.program]

    @property
    def key(self) -> Key:
        return key_of_specs(self.traced.specs)

    @property
    def sol_programs(self) -> list[Program]:
        """Per step sol runs (compiled or on the host), its program (what ``run_graph`` resolves)."""
        assert self.runner is not None
        return self.runner.program.sol_programs

    def output_types(self) -> list[tuple[Any, Any]]:
        """(dtype, static shape) of each flat output, as TensorFlow traced them."""
        return [(t.dtype, t.shape) for t in self.traced.fn.outputs]

    def run_arrays(self, arrays: Sequence[Any]) -> list[Any]:
        """Run on NumPy arrays (or eager tensors) now; returns NumPy arrays or eager tensors."""
        if self.runner is not None:
            return self.runner([tf.convert_to_tensor(a) for a in arrays])
        assert self.program is not None
        return list(self.program(*host_arrays(arrays)))

    def run_eager(self, inputs: Sequence[Any]) -> list[Any]:
        if self.runner is not None:
            return [tf.convert_to_tensor(o) for o in self.run_arrays(inputs)]
        assert self.program is not None
        return run_eager(self.program, inputs)

    def run_graph(self, inputs: Sequence[Any], current: Callable[[], Inference]) -> list[Any]:
        """Inside a ``tf.function``: the programs run through ``tf.numpy_function`` and look up
        ``current()`` when they run, so a variant compiled again later (new weights) is the one
        that runs."""
        if self.runner is not None:
            return self.runner(list(inputs), resolve=lambda i: current().sol_programs[i])
        program = self.program
        assert program is not None
        return numpy_call(lambda *a: current().program(*a), inputs,  # type: ignore[misc]
                          [(tf.as_dtype(t.dtype), t.shape) for t in program.output_types], "sol_program")


def from_graph(program: Program | PartitionedProgram, graph: Graph, check_weights: bool = True) -> Inference:
    """The variant ``import_graph`` + core's compile made (a model compiled in parts where
    TensorFlow runs some ops)."""
    traced: Traced = graph.meta[TRACED_KEY]
    runner: Runner | None = None
    whole: Program | None
    if isinstance(program, PartitionedProgram):
        runner = runner_for(traced, graph.meta[MARKED_KEY], program)
        whole = next(iter(program.programs), None)
    else:
        whole = program
    watch = WeightsWatch(list(traced.snapshots.values())) if check_weights else None
    return Inference(traced, whole, runner, list(graph.meta.get(FALLBACK_KEY) or []), watch)


def compile_variant(traced: Traced, device: str, options: dict[str, Any], warned: set[str]) -> Inference:
    """Import ``traced`` (fresh variable snapshots) for ``device`` and compile it (in parts where
    TensorFlow runs some ops; nothing at all where it runs every op)."""
    from sol.plugin_api import compile_graph

    options = {k: v for k, v in options.items() if k != "training"}
    fresh = dataclasses.replace(traced, snapshots={})
    graph = import_traced(fresh, dict(options, device=device), warned)
    program: Program | PartitionedProgram
    if is_partitioned(graph):
        program = compile_partitioned(graph, device, options=options)
    else:
        program = compile_graph(graph, device, options=options)
    return from_graph(program, graph, options.get("check_weights", True) is not False)


def probed_for(graph: Graph, device: str) -> bool:
    """Whether the import that made ``graph`` asked ``device`` what it can compile, or another
    device that answers the same for this model (then what core compiled is what ``device``
    needs)."""
    if graph.meta.get(DEVICE_KEY) == device:
        return True
    traced: Traced = graph.meta[TRACED_KEY]
    probe = dataclasses.replace(traced, snapshots={})
    return set(convert(probe, DeviceSupport(device)).forced) == set(graph.meta[FORCED_KEY])


# --- crossing between TensorFlow and sol ------------------------------------------------------

ALIGN = 64
"""TensorFlow's tensor alignment (``EIGEN_MAX_ALIGN_BYTES``): its kernels map tensors as aligned
Eigen tensors, so memory handed to TensorFlow in place must be aligned so."""


def host_arrays(values: Sequence[Any]) -> list[np.ndarray]:
    """NumPy views of eager CPU tensors through DLPack, with no copy (``tensor.numpy()`` copies:
    120 us for a 4 MB tensor, against about 1 us); NumPy arrays as they are."""
    return [host_array(v) for v in values]


def host_array(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, tf.Tensor) and hasattr(v, "__dlpack__"):
        try:
            return np.from_dlpack(v)  # read-only: sol never writes an input
        except (BufferError, TypeError, RuntimeError):  # not in host memory, or a dtype DLPack lacks
            pass
    return v.numpy() if hasattr(v, "numpy") else np.asarray(v)


def to_tensor(a: np.ndarray) -> Any:
    """A host array as an eager tensor, in place (DLPack) where TensorFlow can take its memory as
    it is (C-contiguous, writable, aligned as TensorFlow aligns), else a copy
    (``tf.convert_to_tensor`` always copies: 15 us for 64 bytes, 0.5 ms for 4 MB)."""
    if a.flags.c_contiguous and a.flags.writeable and a.__array_interface__["data"][0] % ALIGN == 0:
        try:
            return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
        except Exception:  # noqa: BLE001 - a dtype TensorFlow takes no DLPack for (bool): copy it
            pass
    return tf.convert_to_tensor(a)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGN` boundary."""
    nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.__array_interface__["data"][0] % ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def run_eager(program: Program, values: Sequence[Any]) -> list[Any]:
    """``program`` on eager tensors, returning eager tensors. Where the program's memory is
    the host's (DLPack device CPU, x86) and its device runs on buffers directly, no copy is
    made: the inputs are the tensors' own memory (DLPack), the outputs are aligned arrays the
    program writes into and TensorFlow then takes in place (DLPack). Elsewhere host arrays in,
    host arrays out (the device copying), taken in place where aligned."""
    arrays = host_arrays(values)
    memory = program.memory
    if program.runs_in_place and memory.dlpack_device == (DLPACK_CPU, 0) and len(arrays) == len(program.input_types) \
            and all(a.shape == t.shape and a.dtype == t.dtype and a.flags.c_contiguous
                    for a, t in zip(arrays, program.input_types)):
        ins = [Buffer(memory, a.__array_interface__["data"][0], t, None, a)
               for a, t in zip(arrays, program.input_types)]
        outs = [aligned_empty(t.shape, np.dtype(t.dtype)) for t in program.output_types]
        program.run(ins, [Buffer(memory, o.__array_interface__["data"][0], t, None, o)
                          for o, t in zip(outs, program.output_types)])
        return [to_tensor(o) for o in outs]
    return [to_tensor(np.asarray(o)) for o in program(*arrays)]
