"""Run a compiled network: on a GPU through the CUDA driver (:class:`GpuNetwork`), or in the host
emulation (:class:`EmulatedNetwork`). Both speak the same kernel ABI (network.cu.j2): every
kernel takes the network's state (``SolNet``: parameter pointers, the workspace, the error
record) by pointer and the call's inputs and outputs (``SolIO``) by value, and the launch list
(``Source.meta["launches"]``) says which kernel runs, in order, on how many blocks.

Errors found by a kernel (an index out of range, a failed factorization check) are written to
the error record; the runtime reads it after a call of a network whose source can report one
(``meta["checks_errors"]``; otherwise no read, no synchronization) and raises the frameworks'
exception types, naming the group.
"""

from __future__ import annotations

import _ctypes
import ctypes
import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from sol.plugin_api import Buffer, IndexOutOfRangeError, LinAlgError, Plan, Program, SolError, Source

ALIGN = 256  # cudaMalloc's alignment: the emulation's workspace has the same


class SolErrorRecord(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("group", ctypes.c_int), ("line", ctypes.c_int), ("unused", ctypes.c_int),
                ("index", ctypes.c_longlong), ("size", ctypes.c_longlong), ("axis", ctypes.c_longlong)]


_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\([0-7]{3}|.)")


def _c_literals(line: str) -> list[str]:
    """The string literals of a generated source line (sol.sourcetext.c_string's escapes)."""
    def unescape(m: re.Match[bytes]) -> bytes:
        e = m.group(1)
        return bytes([int(e, 8)]) if len(e) == 3 else e

    return [_ESCAPE.sub(unescape, lit.encode()).decode("utf-8", errors="replace") for lit in _LITERAL.findall(line)]


def net_struct(num_params: int) -> type[ctypes.Structure]:
    class SolNet(ctypes.Structure):
        _fields_ = [("params", ctypes.c_void_p * max(num_params, 1)), ("arena", ctypes.c_void_p),
                    ("err", ctypes.c_void_p)]

    return SolNet


def io_struct(num_inputs: int, num_outputs: int) -> type[ctypes.Structure]:
    class SolIO(ctypes.Structure):
        _fields_ = [("inp", ctypes.c_void_p * max(num_inputs, 1)), ("out", ctypes.c_void_p * max(num_outputs, 1))]

    return SolIO


def raise_recorded(err: SolErrorRecord, name: str, source: Source, where: str) -> None:
    """Raise what a kernel recorded (nothing when the record is clear)."""
    if err.code == 0:
        return
    group, title = source.meta["groups"].get(str(err.group), (f"#{err.group}", ""))
    lines = source.files[source.entry].split("\n")
    # The reporting call's literals: (where) for an index, (where, head, tail) for a factorization.
    said = _c_literals(lines[err.line - 1]) if 0 < err.line <= len(lines) else []
    context = f"sol cuda: {name} failed in group {group} ({title}) on {where}"
    if err.code == 2:
        op = said[0] if said else "gather"
        raise IndexOutOfRangeError(f"{context}: {op}: index {err.index} is out of range for axis {err.axis} of "
                                   f"size {err.size}")
    if err.code == 4:
        if len(said) >= 3:
            raise LinAlgError(f"{context}: {said[0]}: {said[1]}{err.index}{said[2]}")
        raise LinAlgError(f"{context}: a factorization check failed (info {err.index})")
    raise SolError(f"{context}: kernel error code {err.code}")


def _aligned_empty(nbytes: int) -> tuple[np.ndarray, int]:
    raw = np.empty(nbytes + ALIGN, np.uint8)
    base = raw.__array_interface__["data"][0]
    return raw, (base + ALIGN - 1) // ALIGN * ALIGN


@functools.cache
def _keep_openmp_loaded() -> ctypes.CDLL:
    """Hold the process's OpenMP runtime open for good before the first emulation library. A
    network library may be the first to load libgomp; unloading the network (dlclose, when a
    model is dropped) would then unload libgomp under its pool's idle worker threads, which
    crash the process the next moment (seen with 64 threads per block)."""
    return ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)


class EmulatedNetwork:
    """A network's kernels in the host emulation, on host memory (NumPy arrays)."""

    def __init__(self, artifact: Path, plan: Plan, source: Source, threads: int) -> None:
        _keep_openmp_loaded()
        graph = plan.graph
        self.name = graph.name
        self.source = source
        self.lib = lib = ctypes.CDLL(str(artifact))
        lib.sol_emu_launch.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.sol_emu_launch.restype = ctypes.c_int
        # Fewer threads per block than on a GPU (OpenMP threads on a few cores): every kernel
        # strides its loops by blockDim.x, so the same source computes the same result.
        self.launches = [(i, ln["grid"], min(threads, ln["block"]), ln["label"])
                         for i, ln in enumerate(source.meta["launches"])]
        # Parameters are read where they are (host memory): contiguous views, copies only where
        # the framework's array is not contiguous; never written.
        self.params = [np.ascontiguousarray(np.asarray(v.data), dtype=np.dtype(v.dtype))
                       for v in graph.params + graph.consts]
        self.arena_raw, arena = _aligned_empty(max(int(source.meta["arena_bytes"]), 1))
        self.err = SolErrorRecord()
        self.net = net_struct(len(self.params))()
        for i, p in enumerate(self.params):
            self.net.params[i] = p.__array_interface__["data"][0]
        self.net.arena = arena
        self.net.err = ctypes.addressof(self.err)
        self.io_type = io_struct(len(graph.inputs), len(graph.outputs))
        self.out_types = [(v.shape, np.dtype(v.dtype)) for v in graph.outputs]
        self.checks = bool(source.meta.get("checks_errors"))

    def _run(self, inputs: list[Any], outputs: list[np.ndarray]) -> None:
        io = self.io_type()
        for i, a in enumerate(inputs):
            io.inp[i] = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a
        for i, a in enumerate(outputs):
            io.out[i] = a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a
        self.err.code = 0
        for k, grid, block, label in self.launches:
            if grid == 0:
                continue  # an empty batch: no blocks (CUDA refuses a launch of none)
            rc = self.lib.sol_emu_launch(k, grid, block, ctypes.byref(self.net), ctypes.byref(io))
            if rc != 0:
                raise SolError(f"cuda emulation: {self.name}, group {label}: launch failed ({rc}: OpenMP gave "
                               f"fewer than {block} threads to a block)")
        if self.checks:
            raise_recorded(self.err, self.name, self.source, "the host emulation")

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        inputs = [np.ascontiguousarray(a) for a in inputs]
        outputs = [np.empty(shape, dtype) for shape, dtype in self.out_types]
        self._run(inputs, outputs)
        return outputs

    def run_into(self, inputs: list[Buffer], outputs: list[Buffer]) -> None:
        """One forward on host buffers (core checked them): read and written where they are."""
        self._run([b.ptr for b in inputs], [b.ptr for b in outputs])  # type: ignore[misc]

    def close(self) -> None:
        """Unload the library (dropped models must not keep theirs mapped)."""
        lib, self.lib = getattr(self, "lib", None), None  # type: ignore[assignment]
        if lib is not None:
            _ctypes.dlclose(lib._handle)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: ctypes may be torn down already
            pass


def load_emulated(artifact: Path, plan: Plan, source: Source, device: str, threads: int,
                  info: dict[str, Any]) -> Program:
    net = EmulatedNetwork(artifact, plan, source, threads)
    g = plan.graph
    return Program(g.name, device, [v.name for v in g.inputs], [v.type for v in g.inputs],
                   [v.type for v in g.outputs], net, info=info, keepalive=net, run_into=net.run_into,
                   concurrent_calls=False)
