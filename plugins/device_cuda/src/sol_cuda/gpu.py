"""The CUDA runtime on a GPU: device memory and a loaded network, through the driver API
(:mod:`sol_cuda.driver`).

NEVER RUN ON A GPU YET: no GPU was lent to the sessions that wrote it. It follows the same
kernel ABI as the host emulation (:mod:`sol_cuda.runtime`), which the test suite runs, but
the driver calls, the stream handling and the zero-copy route have not executed anywhere.

Memory: buffers are ``cuMemAlloc`` allocations in the primary context of the selected GPU
(the context PyTorch's CUDA runtime uses, so its tensors' pointers are valid here), and a
framework tensor that exposes ``__cuda_array_interface__`` (PyTorch, CuPy) on that GPU is used
in place (:meth:`CudaMemory.from_dlpack`). Streams: work is queued on the caller's stream
(PyTorch's current stream where PyTorch is loaded, else the legacy default stream, which
PyTorch's default stream is).
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sol.plugin_api import Buffer, DeviceMemory, Plan, Program, Source, TensorType
from sol_cuda import driver
from sol_cuda.runtime import SolErrorRecord, io_struct, net_struct, raise_recorded

DLPACK_CUDA = 2  # DLPack's kDLCUDA


def current_stream(index: int) -> int:
    """The stream to queue work on: PyTorch's current stream on GPU ``index`` where PyTorch is
    loaded (so sol's kernels order with the framework's own work), else 0 (the legacy default
    stream, which is PyTorch's default too)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    return int(torch.cuda.current_stream(index).cuda_stream)


class _Allocation:
    """Owns one cuMemAlloc block (freed with the last reference to it)."""

    def __init__(self, drv: driver.Driver, ptr: int) -> None:
        self.drv, self.ptr = drv, ptr

    def release(self) -> None:
        if self.ptr:
            self.drv.mem_free(self.ptr)
            self.ptr = 0

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the driver may be gone
            pass


class CudaMemory(DeviceMemory):
    """The memory of GPU ``index``: device allocations and copies on streams."""

    device = "cuda"
    shares_host = False

    def __init__(self, index: int) -> None:
        self.index = index
        self.dlpack_device = (DLPACK_CUDA, index)
        self.lock = threading.Lock()

    def _ready(self) -> driver.Driver:
        """The driver, with this GPU's primary context current on the calling thread (contexts
        are per thread). Loaded on first use: without a GPU the memory exists (a device's
        ``memory`` is asked while choosing a device) and its first use raises why not."""
        drv = driver.load()
        drv.primary_context(self.index)
        return drv

    def allocate(self, type: TensorType, stream: Any = None) -> Buffer:
        drv = self._ready()
        ptr = drv.mem_alloc(max(type.nbytes, 1))
        return Buffer(self, ptr, type, None, _Allocation(drv, ptr))

    def free(self, buffer: Buffer) -> None:
        if isinstance(buffer.owner, _Allocation):
            buffer.owner.release()
        buffer.ptr, buffer.owner = 0, None

    def copy_from_host(self, dst: Buffer, src: np.ndarray, stream: Any = None) -> None:
        src = np.ascontiguousarray(src)
        if tuple(src.shape) != dst.type.shape or str(src.dtype) != dst.type.dtype:
            raise ValueError(f"copy: host array {src.dtype}{list(src.shape)} does not fit {dst.type}")
        # From pageable memory the driver stages the bytes before returning: src may go away.
        self._ready().memcpy_htod(dst.ptr, src.ctypes.data, src.nbytes, int(stream or 0))

    def copy_to_host(self, dst: np.ndarray, src: Buffer, stream: Any = None) -> None:
        if tuple(dst.shape) != src.type.shape or str(dst.dtype) != src.type.dtype or not dst.flags.c_contiguous:
            raise ValueError(f"copy: host array {dst.dtype}{list(dst.shape)} does not fit {src.type}")
        self._ready().memcpy_dtoh(dst.ctypes.data, src.ptr, dst.nbytes, int(stream or 0))

    def copy(self, dst: Buffer, src: Buffer, stream: Any = None) -> None:
        if dst.type != src.type:
            raise ValueError(f"copy: {src.type} does not fit {dst.type}")
        self._ready().memcpy_dtod(dst.ptr, src.ptr, src.nbytes, int(stream or 0))

    def synchronize(self, stream: Any = None) -> None:
        self._ready().synchronize(int(stream or 0))

    def from_dlpack(self, tensor: Any) -> Buffer:
        """A framework's CUDA tensor on this GPU, in place (``__cuda_array_interface__``: its
        pointer, shape, type and strides; the buffer keeps the tensor alive)."""
        device = tensor.__dlpack_device__()
        if tuple(device) != self.dlpack_device:
            raise BufferError(f"a tensor on DLPack device {tuple(device)} is not in the memory of cuda:{self.index}")
        cai = tensor.__cuda_array_interface__
        dtype = np.dtype(cai["typestr"])
        shape = tuple(cai["shape"])
        strides = None if cai.get("strides") is None else tuple(s // dtype.itemsize for s in cai["strides"])
        return Buffer(self, int(cai["data"][0]), TensorType(shape, str(dtype)), strides, tensor)

    def __repr__(self) -> str:
        return f"<sol cuda:{self.index} memory>"


class GpuNetwork:
    """A network's kernels loaded on GPU ``index``: parameters copied there once, one workspace."""

    def __init__(self, cubin: bytes, plan: Plan, source: Source, memory: CudaMemory) -> None:
        graph = plan.graph
        self.name = graph.name
        self.source = source
        self.memory = memory
        self.index = memory.index
        self.drv = drv = memory._ready()
        self.module = drv.load_module(cubin)
        self.launches = [(drv.function(self.module, ln["kernel"]), ln["grid"], ln["block"], ln["label"])
                         for ln in source.meta["launches"]]
        self.params = [memory.from_host(np.ascontiguousarray(np.asarray(v.data), dtype=np.dtype(v.dtype)))
                       for v in graph.params + graph.consts]
        self.arena = memory.allocate(TensorType((max(int(source.meta["arena_bytes"]), 1),), "uint8"))
        self.err = memory.allocate(TensorType((ctypes.sizeof(SolErrorRecord),), "uint8"))
        net = net_struct(len(self.params))()
        for i, p in enumerate(self.params):
            net.params[i] = p.ptr
        net.arena, net.err = self.arena.ptr, self.err.ptr
        self.net = memory.allocate(TensorType((ctypes.sizeof(net),), "uint8"))
        drv.memcpy_htod(self.net.ptr, ctypes.addressof(net), ctypes.sizeof(net), 0)
        drv.synchronize(0)
        self.io_type = io_struct(len(graph.inputs), len(graph.outputs))
        self.net_arg = ctypes.c_uint64(self.net.ptr)
        self.checks = bool(source.meta.get("checks_errors"))
        self.in_types = [v.type for v in graph.inputs]
        self.out_types = [v.type for v in graph.outputs]

    def run_into(self, inputs: list[Buffer], outputs: list[Buffer]) -> None:
        """One forward on buffers in this GPU's memory (core checked their types), queued on the
        caller's stream; returns once queued, unless the network can report a bad index, which
        is read back (a synchronization) and raised."""
        drv = self.memory._ready()
        stream = current_stream(self.index)
        io = self.io_type()
        for i, b in enumerate(inputs):
            io.inp[i] = b.ptr
        for i, b in enumerate(outputs):
            io.out[i] = b.ptr
        _, args = driver.kernel_args(self.net_arg, io)
        if self.checks:
            drv.memset_d8(self.err.ptr, 0, self.err.nbytes, stream)
        for func, grid, block, label in self.launches:
            if grid == 0:
                continue  # an empty batch: no blocks
            try:
                drv.launch(func, grid, block, 0, stream, args)
            except driver.CudaError as exc:
                raise type(exc)(f"{self.name}, group {label}: {exc}", exc.code, exc.name) from None
        if self.checks:
            record = SolErrorRecord()
            drv.memcpy_dtoh(ctypes.addressof(record), self.err.ptr, ctypes.sizeof(record), stream)
            drv.synchronize(stream)
            raise_recorded(record, self.name, self.source, f"cuda:{self.index}")

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Host arrays in, host arrays out (copies both ways, then a synchronization)."""
        memory = self.memory
        stream = current_stream(self.index)
        ins = [memory.from_host(np.ascontiguousarray(a), stream) for a in inputs]
        outs = [memory.allocate(t, stream) for t in self.out_types]
        self.run_into(ins, outs)
        results = [np.empty(t.shape, np.dtype(t.dtype)) for t in self.out_types]
        for host, buf in zip(results, outs):
            memory.copy_to_host(host, buf, stream)
        memory.synchronize(stream)
        return results

    def close(self) -> None:
        module = getattr(self, "module", 0)
        if module:
            self.module = 0
            self.drv.unload_module(module)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the driver may be gone
            pass


def load(artifact: Path, plan: Plan, source: Source, device: str, memory: CudaMemory) -> Program:
    index = memory.index
    net = GpuNetwork(artifact.read_bytes(), plan, source, memory)
    g = plan.graph
    info = {"runs_on": f"cuda:{index}", "kernels": len(net.launches)}
    return Program(g.name, device, [v.name for v in g.inputs], [v.type for v in g.inputs],
                   [v.type for v in g.outputs], net, info=info, keepalive=net, memory=memory,
                   run_into=net.run_into, concurrent_calls=False)
