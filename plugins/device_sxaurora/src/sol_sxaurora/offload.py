"""The offload interface to a Vector Engine, and its two implementations.

The VE is an accelerator with its own memory: the host loads a library into a process on the VE,
allocates VE memory, copies data in and out and calls functions there with VE addresses. sol's
runtime speaks only this interface, so the same protocol runs

* on a real VE, through AVEO (``py-veo``): :class:`VeoProcess`;
* on a machine without one: :class:`EmulatedProcess` runs the same kernels compiled for the host,
  against a separate emulated device memory: private buffers that only ``write``/``read`` fill
  and drain, pre-filled with NaN bytes. A runtime that forgets a copy therefore computes NaN (or
  returns NaN), never silently the right answer from host memory it should not see.

The process's memory is the device's allocator in sol's plugin contract: :class:`VeMemory`
(``Device.memory``, ``Program.memory``), whose buffers (:class:`sol.memory.Buffer`, owned by a
:class:`DeviceBuffer`) are what the network runtime allocates too. Each emulated process is an
address space of its own: a buffer of one is refused by another, as on a real VE.
"""

from __future__ import annotations

import abc
import ctypes
import importlib.util
import mmap
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sol.plugin_api import Buffer, DeviceMemory, SolError, TensorType

UNWRITTEN = 0xFF  # fresh emulated device memory: every float reads as NaN


@dataclass(eq=False)
class DeviceBuffer:
    """A block of device memory: ``addr`` is a VE address, meaningful only on the device."""

    addr: int
    nbytes: int
    owner: OffloadProcess
    handle: Any = None  # the implementation's own object (py-veo's VEMemPtr, an mmap)
    freed: bool = False
    release: Any = None  # frees the allocation once: explicitly (OffloadProcess.free) or as garbage


@dataclass(eq=False)
class Library:
    """A network library loaded into a device process; its functions are looked up in it alone
    (several networks share one VE process, and every one exports ``sol_forward``)."""

    path: Path
    handle: Any
    functions: dict[tuple[str, int], Any] = field(default_factory=dict)


@dataclass
class Counters:
    """What crossed the host/device boundary: tests check the protocol with these."""

    writes: int = 0
    reads: int = 0
    calls: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    by_function: dict[str, int] = field(default_factory=dict)


class OffloadProcess(abc.ABC):
    """One process on one VE (or its emulation): memory, copies, library calls."""

    description: str

    def __init__(self) -> None:
        self.counters = Counters()
        # One request at a time per process; re-entrant: the network runtime holds it across a
        # whole call while allocating and copying through the memory role (which takes it too).
        self.lock = threading.RLock()
        self.memory = VeMemory(self)

    @abc.abstractmethod
    def load_library(self, path: Path) -> Library:
        """Load a network's VE shared object into the device process."""

    @abc.abstractmethod
    def unload_library(self, lib: Library) -> None:
        """Unload a library nothing will call again (its network was destroyed)."""

    @abc.abstractmethod
    def _alloc(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def _free(self, handle: Any) -> None:
        """Release the allocation ``handle`` (a DeviceBuffer's) stands for."""

    @abc.abstractmethod
    def _write(self, buf: DeviceBuffer, data: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _read(self, buf: DeviceBuffer, out: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _call(self, lib: Library, function: str, args: list[int]) -> int: ...

    def alloc(self, nbytes: int) -> DeviceBuffer:
        """Device memory of ``nbytes``; released by :meth:`free`, or when the returned object is
        garbage (a buffer a caller dropped does not stay allocated on the device)."""
        buf = self._alloc(max(int(nbytes), 1))
        buf.release = weakref.finalize(buf, self._release, buf.handle)
        return buf

    def free(self, buf: DeviceBuffer) -> None:
        if not buf.freed:
            self._check(buf, 0)
            buf.freed = True
            buf.handle = None
            if buf.release is not None:
                buf.release()

    def _release(self, handle: Any) -> None:
        try:
            self._free(handle)
        except Exception:  # noqa: BLE001 - at interpreter exit the device process may be gone
            pass

    def write(self, buf: DeviceBuffer, data: np.ndarray) -> None:
        """Copy a C-contiguous host array to the start of ``buf``."""
        data = np.asarray(data, order="C")
        self._check(buf, data.nbytes)
        self.counters.writes += 1
        self.counters.bytes_in += data.nbytes
        if data.nbytes:
            self._write(buf, data)

    def read(self, buf: DeviceBuffer, out: np.ndarray) -> None:
        """Copy the start of ``buf`` into the C-contiguous host array ``out``."""
        if not out.flags.c_contiguous:
            raise SolError("ve: read target must be C-contiguous")
        self._check(buf, out.nbytes)
        self.counters.reads += 1
        self.counters.bytes_out += out.nbytes
        if out.nbytes:
            self._read(buf, out)

    def call(self, lib: Library, function: str, *args: DeviceBuffer | int) -> int:
        """Run ``function`` of ``lib`` on the device with 64-bit arguments (device buffers pass
        their address); return its 64-bit result."""
        raw = []
        for a in args:
            if isinstance(a, DeviceBuffer):
                self._check(a, 0)
                raw.append(a.addr)
            else:
                raw.append(int(a))
        self.counters.calls += 1
        self.counters.by_function[function] = self.counters.by_function.get(function, 0) + 1
        return self._call(lib, function, raw)

    def _check(self, buf: DeviceBuffer, nbytes: int) -> None:
        if buf.owner is not self:
            raise SolError("ve: a device buffer of another VE process was used")
        if buf.freed:
            raise SolError("ve: a freed device buffer was used")
        if nbytes > buf.nbytes:
            raise SolError(f"ve: {nbytes} bytes do not fit a device buffer of {buf.nbytes} bytes")


class EmulatedProcess(OffloadProcess):
    """The host pretending to be a VE: the kernels (compiled for the host against
    velintrin_emu.h) run in this process, on device memory that lives in private mappings."""

    description = "emulated on host"

    def load_library(self, path: Path) -> Library:
        return Library(path, ctypes.CDLL(str(path)))

    def unload_library(self, lib: Library) -> None:
        import _ctypes

        lib.functions.clear()
        _ctypes.dlclose(lib.handle._handle)

    def _alloc(self, nbytes: int) -> DeviceBuffer:
        size = (nbytes + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(region))
        ctypes.memset(addr, UNWRITTEN, size)
        return DeviceBuffer(addr, nbytes, self, region)

    def _free(self, handle: Any) -> None:
        # The mapping is unmapped once nothing refers to it (a live ctypes view pins it until then).
        return None

    def _write(self, buf: DeviceBuffer, data: np.ndarray) -> None:
        ctypes.memmove(buf.addr, data.ctypes.data, data.nbytes)

    def _read(self, buf: DeviceBuffer, out: np.ndarray) -> None:
        ctypes.memmove(out.ctypes.data, buf.addr, out.nbytes)

    def _call(self, lib: Library, function: str, args: list[int]) -> int:
        key = (function, len(args))
        fn = lib.functions.get(key)
        if fn is None:
            fn = getattr(lib.handle, function)
            fn.restype = ctypes.c_int64
            fn.argtypes = [ctypes.c_uint64] * len(args)
            lib.functions[key] = fn
        return int(fn(*args))


class VeoProcess(OffloadProcess):
    """A process on a real VE through AVEO (``py-veo``): ``veo.VeoProc(node)``, one context."""

    def __init__(self, node: int) -> None:
        super().__init__()
        import veo  # only on hosts with a VE: imported here, never at plugin load

        self.node = node
        self.description = f"VE {node} via AVEO"
        self.proc = veo.VeoProc(node)
        self.ctx = self.proc.open_context()

    def load_library(self, path: Path) -> Library:
        return Library(path, self.proc.load_library(str(path)))

    def unload_library(self, lib: Library) -> None:
        lib.functions.clear()
        self.proc.unload_library(lib.handle)

    def _alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self.proc.alloc_mem(nbytes)
        return DeviceBuffer(int(ptr.addr), nbytes, self, ptr)

    def _free(self, handle: Any) -> None:
        self.proc.free_mem(handle)

    def _write(self, buf: DeviceBuffer, data: np.ndarray) -> None:
        self.proc.write_mem(buf.handle, data, data.nbytes)

    def _read(self, buf: DeviceBuffer, out: np.ndarray) -> None:
        self.proc.read_mem(out, buf.handle, out.nbytes)

    def _call(self, lib: Library, function: str, args: list[int]) -> int:
        key = (function, len(args))
        fn = lib.functions.get(key)
        if fn is None:
            fn = lib.handle.find_function(function)
            if fn is None:
                raise SolError(f"ve: {function} not found in {lib.path}")
            fn.args_type(*(["unsigned long"] * len(args)))
            fn.ret_type("long")
            lib.functions[key] = fn
        return int(fn(self.ctx, *args).wait_result())


# --- the allocator role -------------------------------------------------------------------------

class VeMemory(DeviceMemory):
    """The memory of one VE process (or its emulation) as sol's allocator role: buffers are
    :class:`DeviceBuffer` s of the process (a VE address each), copies are the process's
    explicit writes and reads (counted in ``counters``). No framework addresses VE memory
    (no DLPack device): tensors cross through host arrays. There are no streams here: every
    copy is complete when it returns. Thread-safe: each request holds the process's lock."""

    device = "ve"
    shares_host = False
    dlpack_device = None

    def __init__(self, proc: OffloadProcess) -> None:
        self.proc = proc

    def allocate(self, type: TensorType, stream: Any = None) -> Buffer:
        """Fresh device memory: on the emulation, NaN bytes until written."""
        with self.proc.lock:
            buf = self.proc.alloc(type.nbytes)
        return Buffer(self, buf.addr, type, None, buf)

    def free(self, buffer: Buffer) -> None:
        owner = self._owned(buffer)
        with self.proc.lock:
            self.proc.free(owner)
        buffer.ptr, buffer.owner = 0, None

    def copy_from_host(self, dst: Buffer, src: np.ndarray, stream: Any = None) -> None:
        _fits(dst.type, src)
        with self.proc.lock:
            self.proc.write(self._owned(dst), src)

    def copy_to_host(self, dst: np.ndarray, src: Buffer, stream: Any = None) -> None:
        _fits(src.type, dst)
        with self.proc.lock:
            self.proc.read(self._owned(src), dst)

    def _owned(self, buffer: Buffer) -> DeviceBuffer:
        owner = buffer.owner
        if buffer.memory is not self or not isinstance(owner, DeviceBuffer):
            raise SolError(f"ve: {buffer!r} is not a buffer of this VE process")
        return owner

    def __repr__(self) -> str:
        return f"<sol VE memory, {self.proc.description}>"


def _fits(t: TensorType, array: np.ndarray) -> None:
    if tuple(array.shape) != t.shape or str(array.dtype) != t.dtype:
        raise SolError(f"ve: a host array {array.dtype}{list(array.shape)} does not fit a device buffer of {t}")


# --- hardware detection -------------------------------------------------------------------------

def ve_present(node: int) -> bool:
    """A VE card with this node number is visible to this host."""
    return Path(f"/dev/veslot{node}").exists() or Path(f"/sys/class/ve/ve{node}").exists()


def veo_installed() -> bool:
    return importlib.util.find_spec("veo") is not None


def node_number() -> int:
    """The VE to use: ``$VE_NODE_NUMBER`` (NEC's convention), else ``sol.device.set("ve", i)``'s i."""
    env = os.environ.get("VE_NODE_NUMBER")
    if env not in (None, ""):
        try:
            return int(env)
        except ValueError:
            raise SolError(f"VE_NODE_NUMBER must be a VE node number, got {env!r}") from None
    from sol.plugin_api import selected_device_index

    return selected_device_index()


_processes: dict[int, VeoProcess] = {}
_processes_lock = threading.Lock()


def veo_process(node: int) -> VeoProcess:
    """One AVEO process per VE node, shared by every network on it (starting one takes seconds)."""
    with _processes_lock:
        if node not in _processes:
            _processes[node] = VeoProcess(node)
        return _processes[node]
