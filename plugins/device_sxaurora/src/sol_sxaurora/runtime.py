"""Load a compiled network into a VE process and run it: the offload protocol.

At load: the library goes into the VE process; every parameter is copied to VE memory once; the
workspace (network state, intermediate tensors, re-laid-out weights) and one buffer per input and
output are allocated on the VE, and the tables of their VE addresses written once; ``sol_create``
runs on the VE. Per forward: copy each input in, ONE offloaded call (``sol_forward``: every kernel
of the network runs on the VE), copy each output back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sol.errors import IndexOutOfRangeError, SolError
from sol.planner.plan import Plan
from sol.program import Program
from sol_sxaurora.offload import DeviceBuffer, OffloadProcess

ABI_VERSION = 1
ERR_LEN = 2048


def _addresses(bufs: list[DeviceBuffer]) -> np.ndarray:
    return np.array([b.addr for b in bufs] or [0], dtype=np.uint64)


class NetworkOnDevice:
    """One network instance living on a VE (or its emulation)."""

    def __init__(self, proc: OffloadProcess, artifact: Path, plan: Plan) -> None:
        self.proc = proc
        self.name = plan.graph.name
        self._owned: list[DeviceBuffer] = []
        self.handle = 0
        self._loaded = False  # the library is in the device process (unloaded by close)
        graph = plan.graph
        with proc.lock:
            self.lib = lib = proc.load_library(artifact)
            self._loaded = True
            abi = proc.call(lib, "sol_abi_version")
            if abi != ABI_VERSION:
                raise SolError(f"{artifact}: network ABI {abi}, this sol-device-sxaurora speaks {ABI_VERSION}")
            self.err = self._alloc(ERR_LEN)
            # Parameters: on the device once, for the network's lifetime.
            self.params = []
            for v in graph.params:
                data = np.ascontiguousarray(v.data)
                buf = self._alloc(data.nbytes)
                proc.write(buf, data)
                self.params.append(buf)
            self.param_table = self._table(self.params)
            self.workspace = self._alloc(proc.call(lib, "sol_workspace_bytes"))
            self.inputs = [self._alloc(v.type.nbytes) for v in graph.inputs]
            self.outputs = [self._alloc(v.type.nbytes) for v in graph.outputs]
            self.in_table = self._table(self.inputs)
            self.out_table = self._table(self.outputs)
            handle = proc.call(lib, "sol_create", self.param_table, self.workspace, self.err, ERR_LEN)
            if not handle:
                raise SolError(f"sol ve: creating network {self.name} failed: {self._message()}")
            self.handle = handle
        self.out_types = [(v.shape, np.dtype(v.dtype)) for v in graph.outputs]

    def _alloc(self, nbytes: int) -> DeviceBuffer:
        buf = self.proc.alloc(nbytes)
        self._owned.append(buf)
        return buf

    def _table(self, bufs: list[DeviceBuffer]) -> DeviceBuffer:
        addrs = _addresses(bufs)
        table = self._alloc(addrs.nbytes)
        self.proc.write(table, addrs)
        return table

    def _message(self) -> str:
        raw = np.zeros(ERR_LEN, np.uint8)
        self.proc.read(self.err, raw)
        return bytes(raw).split(b"\0", 1)[0].decode(errors="replace")

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        proc = self.proc
        outputs = [np.empty(shape, dtype) for shape, dtype in self.out_types]
        for out in outputs:  # NaN until read back: a missing copy can never look like a result
            out.reshape(-1).view(np.uint8).fill(0xFF)
        with proc.lock:  # one set of device buffers: calls on one network are serialized
            for buf, a in zip(self.inputs, inputs):
                proc.write(buf, a)
            rc = proc.call(self.lib, "sol_forward", self.handle, self.in_table, self.out_table, self.err, ERR_LEN)
            if rc != 0:
                error = IndexOutOfRangeError if rc == 2 else SolError  # 2: a gather index out of range
                raise error(f"sol ve: {self.name} failed on {proc.description}: {self._message()}")
            for buf, out in zip(self.outputs, outputs):
                proc.read(buf, out)
        return outputs

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
                proc.free(buf)
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
                   [v.type for v in g.outputs], net, info={**info, "offload": proc, "library": net.lib}, keepalive=net)
