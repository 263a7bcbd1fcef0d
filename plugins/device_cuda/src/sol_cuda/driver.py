"""The CUDA driver API (libcuda.so.1) through ctypes: load CUBINs, move memory, launch kernels.

Why the driver API and not the runtime: libcuda comes with the NVIDIA driver, so nothing needs
installing, and its primary context is the one the CUDA runtime (and so PyTorch) uses: device
pointers, streams and modules are shared with PyTorch's tensors without any copy.

Importing this module loads nothing. :func:`probe` says whether a GPU can run here (and why
not), :func:`load` returns the shared :class:`Driver`. Signatures follow ``cuda.h``; the ``_v2``
entry points are the ones ``cuda.h`` maps the plain names to (64-bit CUdeviceptr and size_t).
A CUDA context is current per thread: call :meth:`Driver.primary_context` on each thread
before the other methods.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from sol.plugin_api import SolError

LIBRARY = "libcuda.so.1"
"""The driver's soname: installed by the NVIDIA driver package, never by pip."""

# Handle types of cuda.h: device pointers are 64-bit integers, the rest opaque pointers.
CUdeviceptr = ctypes.c_uint64
CUstream = ctypes.c_void_p
CUmodule = ctypes.c_void_p
CUfunction = ctypes.c_void_p
CUcontext = ctypes.c_void_p
CUdevice = ctypes.c_int
CUresult = ctypes.c_int

# enum values of cuda.h used here
CUDA_SUCCESS = 0
CUDA_ERROR_OUT_OF_MEMORY = 2
CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1
CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

_P = ctypes.POINTER
# name -> argument types; every one returns a CUresult.
_SIGNATURES: dict[str, list[Any]] = {
    "cuInit": [ctypes.c_uint],
    "cuDriverGetVersion": [_P(ctypes.c_int)],
    "cuGetErrorName": [CUresult, _P(ctypes.c_char_p)],
    "cuGetErrorString": [CUresult, _P(ctypes.c_char_p)],
    "cuDeviceGetCount": [_P(ctypes.c_int)],
    "cuDeviceGet": [_P(CUdevice), ctypes.c_int],
    "cuDeviceGetAttribute": [_P(ctypes.c_int), ctypes.c_int, CUdevice],
    "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, CUdevice],
    "cuDeviceTotalMem_v2": [_P(ctypes.c_size_t), CUdevice],
    "cuDevicePrimaryCtxRetain": [_P(CUcontext), CUdevice],
    "cuCtxGetCurrent": [_P(CUcontext)],
    "cuCtxSetCurrent": [CUcontext],
    "cuMemAlloc_v2": [_P(CUdeviceptr), ctypes.c_size_t],
    "cuMemFree_v2": [CUdeviceptr],
    "cuMemcpyHtoDAsync_v2": [CUdeviceptr, ctypes.c_void_p, ctypes.c_size_t, CUstream],
    "cuMemcpyDtoHAsync_v2": [ctypes.c_void_p, CUdeviceptr, ctypes.c_size_t, CUstream],
    "cuMemcpyDtoDAsync_v2": [CUdeviceptr, CUdeviceptr, ctypes.c_size_t, CUstream],
    "cuMemsetD8Async": [CUdeviceptr, ctypes.c_ubyte, ctypes.c_size_t, CUstream],
    "cuStreamSynchronize": [CUstream],
    "cuModuleLoadData": [_P(CUmodule), ctypes.c_void_p],
    "cuModuleUnload": [CUmodule],
    "cuModuleGetFunction": [_P(CUfunction), CUmodule, ctypes.c_char_p],
    "cuFuncSetAttribute": [CUfunction, ctypes.c_int, ctypes.c_int],
    # f, gridDim x/y/z, blockDim x/y/z, sharedMemBytes, hStream, kernelParams, extra
    "cuLaunchKernel": [CUfunction, *[ctypes.c_uint] * 6, ctypes.c_uint, CUstream, _P(ctypes.c_void_p),
                       _P(ctypes.c_void_p)],
}


class CudaError(SolError):
    """A CUDA driver call failed; ``code`` is the CUresult, ``name`` its enum name."""

    def __init__(self, message: str, code: int, name: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


class CudaOutOfMemory(CudaError, MemoryError):
    """CUDA_ERROR_OUT_OF_MEMORY: also a MemoryError, so callers that free caches and retry on
    MemoryError (as they would for host memory) handle the GPU the same way."""


Dim = int | tuple[int, int, int]
"""A launch dimension: ``n`` (1-D) or ``(x, y, z)``."""


def _dim3(dim: Dim) -> tuple[int, int, int]:
    return (dim, 1, 1) if isinstance(dim, int) else (dim[0], dim[1], dim[2])


def kernel_args(*values: Any) -> tuple[tuple[Any, ...], ctypes.Array[ctypes.c_void_p]]:
    """The ``void** kernelParams`` of cuLaunchKernel for ``values``, plus what keeps them alive.

    Each value must be a ctypes object of the parameter's exact C type (``c_uint64(ptr)`` for a
    pointer, ``c_int64(n)`` for a ``long``, a ctypes.Structure for a struct): the driver copies
    as many bytes from each address as the kernel's parameter has, so a plain Python int, whose
    width is unknown, is refused. Keep the returned holder referenced until the launch returns.
    """
    addresses = []
    for value in values:
        try:
            addresses.append(ctypes.addressof(value))
        except TypeError:
            raise TypeError(f"kernel argument {value!r} is not a ctypes object (wrap it: c_uint64, c_int64, ...)") \
                from None
    return tuple(values), (ctypes.c_void_p * len(values))(*addresses)


class Driver:
    """The loaded libcuda with typed entry points; get the shared instance from :func:`load`."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        """Type ``lib``'s functions; AttributeError names a function an old driver lacks."""
        self._fn: dict[str, Any] = {}
        for name, argtypes in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = CUresult
            self._fn[name] = fn
        self._lib = lib  # keeps the library mapped for as long as the functions are used
        self._contexts: dict[int, int] = {}  # device index -> retained primary context
        self._images: dict[int, bytes] = {}  # module -> its CUBIN, alive until unloaded (see load_module)

    # errors

    def error_name(self, code: int) -> str:
        """``CUDA_ERROR_OUT_OF_MEMORY`` for 2; a plain text for codes this driver does not know."""
        text = ctypes.c_char_p()
        if self._fn["cuGetErrorName"](code, ctypes.byref(text)) != CUDA_SUCCESS or not text.value:
            return f"CUDA error {code}"
        return text.value.decode(errors="replace")

    def error_string(self, code: int) -> str:
        """The driver's sentence for ``code`` (``out of memory``)."""
        text = ctypes.c_char_p()
        if self._fn["cuGetErrorString"](code, ctypes.byref(text)) != CUDA_SUCCESS or not text.value:
            return "unknown error"
        return text.value.decode(errors="replace")

    def check(self, rc: int, what: str) -> None:
        """Raise CudaError (CudaOutOfMemory for out of memory) naming ``what`` unless ``rc`` is success."""
        if rc == CUDA_SUCCESS:
            return
        name = self.error_name(rc)
        cls = CudaOutOfMemory if rc == CUDA_ERROR_OUT_OF_MEMORY else CudaError
        raise cls(f"{what} failed: {name} ({self.error_string(rc)})", rc, name)

    def _call(self, name: str, *args: Any, what: str | None = None) -> None:
        self.check(int(self._fn[name](*args)), what or name)

    # driver and devices

    def init(self) -> None:
        """cuInit: required once per process before any other call; repeating it is harmless."""
        self._call("cuInit", 0)

    def driver_version(self) -> tuple[int, int]:
        """The CUDA version the driver supports, (13, 0) for 13000: bounds the PTX it can JIT."""
        version = ctypes.c_int()
        self._call("cuDriverGetVersion", ctypes.byref(version))
        return version.value // 1000, version.value % 1000 // 10

    def device_count(self) -> int:
        count = ctypes.c_int()
        self._call("cuDeviceGetCount", ctypes.byref(count))
        return count.value

    def device(self, index: int) -> int:
        """The CUdevice of ordinal ``index``."""
        device = CUdevice()
        self._call("cuDeviceGet", ctypes.byref(device), index, what=f"cuDeviceGet({index})")
        return device.value

    def attribute(self, index: int, attribute: int) -> int:
        """A CU_DEVICE_ATTRIBUTE_* value of device ``index``."""
        value = ctypes.c_int()
        self._call("cuDeviceGetAttribute", ctypes.byref(value), attribute, self.device(index))
        return value.value

    def arch(self, index: int) -> int:
        """The compute capability as NVRTC's sm number: 90 for 9.0, 120 for 12.0."""
        major = self.attribute(index, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        return major * 10 + self.attribute(index, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)

    def device_name(self, index: int) -> str:
        buffer = ctypes.create_string_buffer(256)
        self._call("cuDeviceGetName", buffer, len(buffer), self.device(index))
        return buffer.value.decode(errors="replace")

    def total_memory(self, index: int) -> int:
        """Device memory in bytes."""
        size = ctypes.c_size_t()
        self._call("cuDeviceTotalMem_v2", ctypes.byref(size), self.device(index))
        return size.value

    def device_info(self, index: int) -> dict[str, Any]:
        """What a device plugin sizes its kernels by, for device ``index``."""
        return {
            "arch": self.arch(index),
            "name": self.device_name(index),
            "memory": self.total_memory(index),
            "sms": self.attribute(index, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            "max_threads_per_block": self.attribute(index, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
            "max_shared_per_block": self.attribute(index, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
        }

    # contexts

    def current_context(self) -> int:
        """This thread's current context, 0 if none."""
        ctx = CUcontext()
        self._call("cuCtxGetCurrent", ctypes.byref(ctx))
        return ctx.value or 0

    def primary_context(self, device_index: int) -> int:
        """Make device ``device_index``'s primary context current on this thread and return it.

        The primary context is the one the CUDA runtime, and so PyTorch, uses: pointers from
        ``tensor.data_ptr()`` and streams from ``torch.cuda.current_stream()`` are valid in it.
        It is retained once per device and never released: it lives as long as the process,
        like PyTorch's.
        """
        ctx = self._contexts.get(device_index)
        if ctx is None:
            self.init()
            handle = CUcontext()
            self._call("cuDevicePrimaryCtxRetain", ctypes.byref(handle), self.device(device_index))
            ctx = self._contexts.setdefault(device_index, handle.value or 0)
        if self.current_context() != ctx:
            self._call("cuCtxSetCurrent", ctx)
        return ctx

    # memory (streams are ints: torch.cuda.current_stream().cuda_stream; 0 is the legacy default stream)

    def mem_alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; 0 for 0 bytes (the driver refuses empty allocations,
        and an empty tensor is legitimate)."""
        if nbytes == 0:
            return 0
        ptr = CUdeviceptr()
        self._call("cuMemAlloc_v2", ctypes.byref(ptr), nbytes, what=f"cuMemAlloc({nbytes} bytes)")
        return ptr.value

    def mem_free(self, ptr: int) -> None:
        if ptr:
            self._call("cuMemFree_v2", ptr)

    def memcpy_htod(self, dst: int, host_ptr: Any, nbytes: int, stream: int = 0) -> None:
        """Copy host -> device, ordered on ``stream``. ``host_ptr``: an address or a ctypes buffer.
        From pageable memory the call returns once the data is staged, so the source may be reused."""
        if nbytes:
            self._call("cuMemcpyHtoDAsync_v2", dst, host_ptr, nbytes, stream)

    def memcpy_dtoh(self, host_ptr: Any, src: int, nbytes: int, stream: int = 0) -> None:
        """Copy device -> host, ordered on ``stream``; into pageable memory it has completed on return,
        into pinned memory only after :meth:`synchronize`."""
        if nbytes:
            self._call("cuMemcpyDtoHAsync_v2", host_ptr, src, nbytes, stream)

    def memcpy_dtod(self, dst: int, src: int, nbytes: int, stream: int = 0) -> None:
        if nbytes:
            self._call("cuMemcpyDtoDAsync_v2", dst, src, nbytes, stream)

    def memset_d8(self, ptr: int, value: int, nbytes: int, stream: int = 0) -> None:
        """Set ``nbytes`` bytes at ``ptr`` to ``value`` (0 to 255), ordered on ``stream``."""
        if nbytes:
            self._call("cuMemsetD8Async", ptr, value, nbytes, stream)

    def synchronize(self, stream: int = 0) -> None:
        """Wait for ``stream``; this is where errors of earlier asynchronous launches surface."""
        self._call("cuStreamSynchronize", stream)

    # modules and kernels

    def load_module(self, cubin: bytes) -> int:
        """Load a CUBIN into the current context and return the CUmodule."""
        module = CUmodule()
        self._call("cuModuleLoadData", ctypes.byref(module), cubin)
        # With lazy loading (the default since CUDA 12.2) functions are loaded on first use; the
        # image is kept until unload in case the driver reads it then, at the cost of its bytes.
        self._images[module.value or 0] = cubin
        return module.value or 0

    def unload_module(self, module: int) -> None:
        self._call("cuModuleUnload", module)
        self._images.pop(module, None)

    def function(self, module: int, name: str) -> int:
        """The CUfunction of the ``extern "C"`` kernel ``name`` in ``module``."""
        fn = CUfunction()
        self._call("cuModuleGetFunction", ctypes.byref(fn), module, name.encode(),
                   what=f"cuModuleGetFunction({name!r})")
        return fn.value or 0

    def set_max_dynamic_shared(self, func: int, nbytes: int) -> None:
        """Allow ``func`` more than 48 KiB of dynamic shared memory (the default limit) per block."""
        self._call("cuFuncSetAttribute", func, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, nbytes)

    def launch(self, func: int, grid: Dim, block: Dim, shared: int, stream: int,
               args: ctypes.Array[ctypes.c_void_p] | None) -> None:
        """Launch ``func`` on ``stream``; ``args`` is the second value of :func:`kernel_args`.

        Asynchronous: a fault inside the kernel is reported by a later call (synchronize).
        """
        gx, gy, gz = _dim3(grid)
        bx, by, bz = _dim3(block)
        self._call("cuLaunchKernel", func, gx, gy, gz, bx, by, bz, shared, stream, args, None,
                   what=f"cuLaunchKernel(grid=({gx}, {gy}, {gz}), block=({bx}, {by}, {bz}), shared={shared})")


def _open() -> Driver:
    """libcuda opened and typed; OSError when absent, AttributeError when too old."""
    return Driver(ctypes.CDLL(LIBRARY))


@functools.cache
def _probe() -> tuple[tuple[bool, str, dict[str, Any]], Driver | None]:
    try:
        driver = _open()
    except OSError:
        return (False, f"no NVIDIA driver ({LIBRARY} not found)", {}), None
    except AttributeError as exc:
        return (False, f"the NVIDIA driver is too old ({LIBRARY} lacks {exc.name or exc})", {}), None
    try:
        rc = int(driver._fn["cuInit"](0))
        if rc != CUDA_SUCCESS:
            return (False, f"cuInit failed: {driver.error_name(rc)} ({driver.error_string(rc)})", {}), None
        count = driver.device_count()
        if count == 0:
            return (False, "no CUDA device", {}), None
        version = driver.driver_version()
        info = {**driver.device_info(0), "driver": version, "count": count}
    except Exception as exc:  # probe never raises: it is asked while choosing a device
        return (False, f"CUDA driver probe failed: {exc}", {}), None
    more = f", {count} devices" if count > 1 else ""
    text = f"{info['name']} (sm_{info['arch']}, driver {version[0]}.{version[1]}{more})"
    return (True, text, info), driver


def probe() -> tuple[bool, str, dict[str, Any]]:
    """Whether a CUDA GPU can run kernels here, a description or the reason why not, and device 0's
    facts (``arch``, ``name``, ``driver``, ``count``, ``memory``, ``sms``, ...). Never raises;
    answered once per process (the driver does not gain devices while it runs)."""
    return _probe()[0]


def load() -> Driver:
    """The process's driver, initialised; DeviceUnavailableError with probe's reason if none."""
    (ok, reason, _), driver = _probe()
    if not ok or driver is None:
        from sol.plugin_api import DeviceUnavailableError

        raise DeviceUnavailableError(f"CUDA is not available: {reason}")
    return driver
