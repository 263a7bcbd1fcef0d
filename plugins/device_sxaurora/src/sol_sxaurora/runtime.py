"""Load a compiled network into a VE process and run it: the offload protocol.

At load: the library goes into the VE process; every parameter is copied to VE memory once; the
workspace (network state, intermediate tensors, re-laid-out weights) and one buffer per input and
output are allocated on the VE, and the tables of their VE addresses written once; ``sol_create``
runs on the VE. Per forward: copy each input in, ONE offloaded call (``sol_forward``: every kernel
of the network runs on the VE), copy each output back.

Every device buffer comes from the process's allocator role (:class:`~sol_sxaurora.offload.VeMemory`,
``program.memory``). ``program.run(buffers)`` runs on buffers already in VE memory: no copy
at all, the network reads and writes them where they are (:meth:`NetworkOnDevice.run_into`);
``program(*arrays)`` copies host arrays in and results out. Calls of networks on one VE process
are serialized (one request at a time per process), whichever thread makes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sol.plugin_api import Buffer, IndexOutOfRangeError, LinAlgError, Plan, Program, SolError, TensorType
from sol_sxaurora.offload import OffloadProcess

ABI_VERSION = 1
ERR_LEN = 2048
# sol_forward's return codes that name a failure in the input data (network.c.j2): 2 an index out
# of range, 4 a checked factorization (a singular matrix); any other is an error of its own.
_ERRORS: dict[int, type[SolError]] = {2: IndexOutOfRangeError, 4: LinAlgError}


def _addresses(bufs: list[Buffer]) -> np.ndarray:
    """A table of device addresses, as int64 (sol's dtypes have no uint64; the bits are the same)."""
    return np.array([b.ptr for b in bufs] or [0], dtype=np.uint64).view(np.int64)


class NetworkOnDevice:
    """One network instance living on a VE (or its emulation)."""

    def __init__(self, proc: OffloadProcess, artifact: Path, plan: Plan) -> None:
        self.proc = proc
        self.memory = memory = proc.memory
        self.name = plan.graph.name
        self._owned: list[Buffer] = []
        self.handle = 0
        self._loaded = False  # the library is in the device process (unloaded by close)
        graph = plan.graph
        with proc.lock:
            self.lib = lib = proc.load_library(artifact)
            self._loaded = True
            abi = proc.call(lib, "sol_abi_version")
            if abi != ABI_VERSION:
                raise SolError(f"{artifact}: network ABI {abi}, this sol-device-sxaurora speaks {ABI_VERSION}")
            self.err = self._alloc(TensorType((ERR_LEN,), "uint8"))
            # Parameters: on the device once, for the network's lifetime.
            self.params = [self._keep(memory.from_host(np.asarray(v.data, order="C"))) for v in graph.params]
            self.param_table = self._table(self.params)
            self.workspace = self._alloc(TensorType((max(proc.call(lib, "sol_workspace_bytes"), 1),), "uint8"))
            self.inputs = [self._alloc(v.type) for v in graph.inputs]
            self.outputs = [self._alloc(v.type) for v in graph.outputs]
            self.in_table = self._table(self.inputs)
            self.out_table = self._table(self.outputs)
            # Address tables for calls on the caller's device buffers (run_into), written per call.
            self.run_in_table = self._alloc(TensorType((max(len(self.inputs), 1),), "int64"))
            self.run_out_table = self._alloc(TensorType((max(len(self.outputs), 1),), "int64"))
            handle = proc.call(lib, "sol_create", self.param_table.owner, self.workspace.owner, self.err.owner,
                               ERR_LEN)
            if not handle:
                raise SolError(f"sol ve: creating network {self.name} failed: {self._message()}")
            self.handle = handle
        self.out_types = [(v.shape, np.dtype(v.dtype)) for v in graph.outputs]

    def _keep(self, buf: Buffer) -> Buffer:
        self._owned.append(buf)
        return buf

    def _alloc(self, t: TensorType) -> Buffer:
        return self._keep(self.memory.allocate(t))

    def _table(self, bufs: list[Buffer]) -> Buffer:
        return self._keep(self.memory.from_host(_addresses(bufs)))

    def _message(self) -> str:
        raw = self.memory.to_host(self.err)
        return bytes(raw).split(b"\0", 1)[0].decode(errors="replace")

    def _forward(self, in_table: Buffer, out_table: Buffer) -> None:
        proc = self.proc
        rc = proc.call(self.lib, "sol_forward", self.handle, in_table.owner, out_table.owner, self.err.owner, ERR_LEN)
        if rc != 0:
            error = _ERRORS.get(rc, SolError)
            raise error(f"sol ve: {self.name} failed on {proc.description}: {self._message()}")

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        proc = self.proc
        outputs = [np.empty(shape, dtype) for shape, dtype in self.out_types]
        for out in outputs:  # NaN until read back: a missing copy can never look like a result
            out.reshape(-1).view(np.uint8).fill(0xFF)
        with proc.lock:  # one set of device buffers: calls on one network are serialized
            for buf, a in zip(self.inputs, inputs):
                proc.write(buf.owner, a)
            self._forward(self.in_table, self.out_table)
            for buf, out in zip(self.outputs, outputs):
                proc.read(buf.owner, out)
        return outputs

    def run_into(self, inputs: list[Buffer], outputs: list[Buffer]) -> None:
        """One forward on buffers in this process's memory (core checked them): the network
        reads and writes them where they are; only their two address tables are written."""
        memory = self.memory
        with self.proc.lock:
            memory.copy_from_host(self.run_in_table, _addresses(inputs))
            memory.copy_from_host(self.run_out_table, _addresses(outputs))
            self._forward(self.run_in_table, self.run_out_table)

    def close(self) -> None:
        """Destroy the network, free its device memory and unload its library from the device
        process (``__del__``: nothing can call it any more), so that dropped models do not
        accumulate libraries there."""
        proc = getattr(self, "proc", None)
        if proc is None:
            return
        with proc.lock:
            if self.handle:
                proc.call(self.lib, "sol_destroy", self.handle)
                self.handle = 0
            for buf in self._owned:
                self.memory.free(buf)
            self._owned.clear()
            if getattr(self, "_loaded", False):
                self._loaded = False
                proc.unload_library(self.lib)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the device process may be gone
            pass


def load(proc: OffloadProcess, artifact: Path, plan: Plan, device: str, info: dict[str, object]) -> Program:
    net = NetworkOnDevice(proc, artifact, plan)
    g = plan.graph
    return Program(g.name, device, [v.name for v in g.inputs], [v.type for v in g.inputs],
                   [v.type for v in g.outputs], net, info={**info, "offload": proc, "library": net.lib}, keepalive=net,
                   memory=proc.memory, run_into=net.run_into)
