"""Device memory: the buffer type core knows, and host memory, the default allocator.

A device owns its memory (contract 2, ``/work/shared/DESIGN.md``): it brings an allocator, a
:class:`~sol.roles.DeviceMemory` (``Device.memory``), and a :class:`~sol.program.Program` runs
on :class:`Buffer` s of that memory (``Program.run``). A device whose code runs on the caller's
memory, as x86 does, keeps the default: :data:`HOST`, which hands out NumPy-backed buffers.

Framework tensors cross into sol through DLPack: a memory says which DLPack device it is
(:attr:`~sol.roles.DeviceMemory.dlpack_device`), a frontend compares that with its tensor's
``__dlpack_device__()`` and, where they are the same, uses the tensor's memory in place
(:meth:`~sol.roles.DeviceMemory.from_dlpack`, or the tensor's own data pointer where the
frontend knows its framework: a DLPack capsule costs microseconds per tensor, which at batch 1
is as much as a small network). A buffer of host memory exports itself through DLPack as well
(``torch.from_dlpack(buffer)``), so program-allocated outputs reach a framework without a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.ir import TensorType
from sol.roles import DeviceMemory

DLPACK_CPU = 1
"""DLPack's device type of host memory (``kDLCPU``); ``(DLPACK_CPU, 0)`` is what a CPU tensor's
``__dlpack_device__()`` returns."""


def c_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides, in elements, of a C-contiguous (row-major) tensor of ``shape``."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


class Buffer:
    """A tensor in one device memory: where it is (``memory``, ``ptr``: an address or handle
    that means something only to that memory's device), what it holds (``type``), its layout
    (``strides`` in elements; None: C-contiguous) and ``owner``, the object that keeps the memory
    alive (a NumPy array, a framework tensor, a device allocation): the buffer holds a reference
    to it, so the memory lives at least as long as the buffer.

    A buffer is a view: it never frees memory it did not allocate. ``memory.free(buffer)``
    releases what ``memory.allocate`` gave (``ptr`` becomes 0; using it again is an error).
    ``shape``/``dtype`` mirror ``type`` so core's input check (:func:`sol.program.check_arrays`)
    reads a buffer like an array.
    """

    __slots__ = ("memory", "ptr", "type", "strides", "owner")

    def __init__(self, memory: DeviceMemory, ptr: int, type: TensorType, strides: tuple[int, ...] | None = None,
                 owner: Any = None) -> None:
        self.memory = memory
        self.ptr = ptr
        self.type = type
        self.strides = None if strides is None or tuple(strides) == c_strides(type.shape) else tuple(strides)
        self.owner = owner

    @property
    def device(self) -> str:
        """The name of the device whose memory this is."""
        return self.memory.device

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def nbytes(self) -> int:
        return self.type.nbytes

    @property
    def contiguous(self) -> bool:
        return self.strides is None

    @property
    def freed(self) -> bool:
        return self.ptr == 0 and self.owner is None

    def numpy(self) -> np.ndarray:
        """A NumPy view of the buffer (no copy): only for memory the host can address
        (``memory.shares_host``); other memory is read with ``memory.to_host(buffer)``."""
        if not self.memory.shares_host:
            raise BufferError(f"a buffer in {self.device} memory is not addressable by the host: "
                              f"copy it with memory.to_host(buffer)")
        if self.freed:
            raise BufferError("the buffer was freed")
        owner = self.owner
        if isinstance(owner, np.ndarray) and owner.__array_interface__["data"][0] == self.ptr \
                and owner.shape == self.type.shape and (self.strides is None) == owner.flags.c_contiguous:
            return owner
        return np.asarray(_HostView(self))

    def __dlpack__(self, stream: Any = None, **kwargs: Any) -> Any:
        """Export a host buffer through DLPack (zero-copy): ``torch.from_dlpack(buffer)``."""
        return self.numpy().__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        device = self.memory.dlpack_device
        if device is None:
            raise BufferError(f"{self.device} memory has no DLPack device: frameworks cannot address it")
        return device

    def __repr__(self) -> str:
        layout = "" if self.strides is None else f", strides {self.strides}"
        return f"<sol Buffer {self.type} in {self.device} memory at {self.ptr:#x}{layout}>"


class _HostView:
    """The NumPy array interface of a host buffer; the array keeps this object (and through it
    the buffer's owner) alive as its base."""

    def __init__(self, buffer: Buffer) -> None:
        t = buffer.type
        itemsize = np.dtype(t.dtype).itemsize
        strides = None if buffer.strides is None else tuple(s * itemsize for s in buffer.strides)
        self.owner = buffer.owner
        self.__array_interface__ = {"shape": t.shape, "typestr": np.dtype(t.dtype).str,
                                    "data": (buffer.ptr, False), "strides": strides, "version": 3}


class HostMemory(DeviceMemory):
    """Host memory, the default of every device (``Device.memory``): NumPy arrays. Frameworks'
    CPU tensors (DLPack device ``(1, 0)``) are used in place. Copies are ``memcpy``; there are
    no streams (a ``stream`` argument is accepted and ignored: host copies are done when the
    call returns). Thread-safe: it keeps no state."""

    device = "host"
    shares_host = True
    dlpack_device: tuple[int, int] | None = (DLPACK_CPU, 0)

    def allocate(self, type: TensorType, stream: Any = None) -> Buffer:
        array = np.empty(type.shape, type.dtype)
        return Buffer(self, array.__array_interface__["data"][0], type, None, array)

    def free(self, buffer: Buffer) -> None:
        buffer.ptr, buffer.owner = 0, None  # NumPy frees the array with its last reference

    def copy_from_host(self, dst: Buffer, src: np.ndarray, stream: Any = None) -> None:
        _check_copy(dst.type, np.asarray(src))
        np.copyto(dst.numpy(), src, casting="no")

    def copy_to_host(self, dst: np.ndarray, src: Buffer, stream: Any = None) -> None:
        _check_copy(src.type, dst)
        np.copyto(dst, src.numpy(), casting="no")

    def copy(self, dst: Buffer, src: Buffer, stream: Any = None) -> None:
        if dst.type != src.type:
            raise ValueError(f"copy: {src.type} does not fit {dst.type}")
        np.copyto(dst.numpy(), src.numpy(), casting="no")

    def synchronize(self, stream: Any = None) -> None:
        return None

    def from_host(self, array: np.ndarray, stream: Any = None) -> Buffer:
        """``array`` itself (no copy) when it is C-contiguous, else a contiguous copy."""
        array = np.asarray(array, order="C")
        return Buffer(self, array.__array_interface__["data"][0],
                      TensorType(array.shape, str(array.dtype)), None, array)

    def to_host(self, buffer: Buffer, stream: Any = None) -> np.ndarray:
        return buffer.numpy()

    def from_dlpack(self, tensor: Any) -> Buffer:
        """The framework tensor's memory as a buffer, in place (its DLPack device must be the
        host's; a BufferError otherwise). The buffer keeps the tensor's memory alive."""
        array = np.from_dlpack(tensor)
        itemsize = array.dtype.itemsize
        strides = tuple(s // itemsize for s in array.strides)
        return Buffer(self, array.__array_interface__["data"][0],
                      TensorType(array.shape, str(array.dtype)), strides, array)

    def __repr__(self) -> str:
        return "<sol host memory>"


def _check_copy(t: TensorType, array: np.ndarray) -> None:
    if tuple(array.shape) != t.shape or str(array.dtype) != t.dtype:
        raise ValueError(f"copy: host array {array.dtype}{list(array.shape)} does not fit {t}")


HOST = HostMemory()
"""The host memory every device has unless it brings its own (``Device.memory``)."""


def serialized(runner: Any) -> Any:
    """``runner`` behind a lock: for a device that runs one call of a program at a time
    (``DeviceCapabilities.concurrent_calls=False``); :class:`~sol.program.Program` applies it."""
    lock = threading.Lock()

    def run(*args: Any) -> Any:
        with lock:
            return runner(*args)

    return run
