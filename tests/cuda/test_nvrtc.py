"""The CUDA plugin's ctypes bindings: NVRTC compiles for real here (the pip wheel needs no GPU); the
driver binding is checked for its answers on a machine without a GPU, and runs a kernel where
there is one.

sol_cuda is imported inside fixtures, not at the top: the tests must skip, with NVRTC's reason,
rather than fail to collect where the plugin's dependencies are missing.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sol.plugin_api import CompileError, DeviceUnavailableError, SolError

KERNEL = r"""
#ifndef SCALE
#define SCALE 2.0f
#endif
extern "C" __global__ void sol_scale(float* y, const float* x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = SCALE * x[i];
}
"""


@pytest.fixture(scope="module")
def nvrtc_module() -> ModuleType:
    from sol_cuda import nvrtc

    return nvrtc


@pytest.fixture(scope="module")
def nv(nvrtc_module: ModuleType):
    """The loaded NVRTC, or a skip saying what to install."""
    try:
        return nvrtc_module.load()
    except nvrtc_module.NvrtcUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def driver_module() -> ModuleType:
    from sol_cuda import driver

    return driver


def elf_symbols(image: bytes) -> set[str]:
    """Names in the symbol tables of a little-endian ELF64 image (a CUBIN): where kernels are listed."""
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", image, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2:  # SHT_SYMTAB
            continue
        strtab_offset = sections[link][4]
        for entry in range(offset, offset + size, entsize or 24):
            st_name, = struct.unpack_from("<I", image, entry)
            end = image.index(b"\0", strtab_offset + st_name)
            names.add(image[strtab_offset + st_name:end].decode())
    return names


# NVRTC


def test_version_and_archs(nv) -> None:
    major, minor = nv.version()
    assert major in (12, 13) and minor >= 0
    archs = nv.supported_archs()
    assert 80 in archs and 90 in archs
    assert archs == sorted(archs)


@pytest.mark.parametrize("arch", [80, 90])
def test_compile_to_cubin(nv, arch: int) -> None:
    compiled = nv.compile(KERNEL, "sol_scale.cu", arch, ["--std=c++17", "--use_fast_math"])
    assert compiled.cubin.startswith(b"\x7fELF")
    assert "sol_scale" in elf_symbols(compiled.cubin)
    assert isinstance(compiled.log, str)


def test_options_reach_the_compiler(nv) -> None:
    # a macro the source needs, given only as an option: compiles only if options are passed
    source = 'extern "C" __global__ void sol_k(float* y) { y[0] = VALUE; }'
    with pytest.raises(CompileError):
        nv.compile(source, "needs_value.cu", 80)
    assert "sol_k" in elf_symbols(nv.compile(source, "needs_value.cu", 80, ["-DVALUE=3.0f"]).cubin)


def test_compile_ptx(nv) -> None:
    ptx = nv.compile_ptx(KERNEL, "sol_scale.cu", 80)
    assert ".entry sol_scale" in ptx
    assert ".target sm_80" in ptx


def test_syntax_error_raises_compile_error_with_log(nv) -> None:
    source = 'extern "C" __global__ void broken(float* y) {\n    y[0] = undeclared_name_xyz + ;\n}\n'
    with pytest.raises(CompileError) as info:
        nv.compile(source, "broken.cu", 80)
    message = str(info.value)
    assert "NVRTC_ERROR_COMPILATION" in message
    assert "broken.cu" in message and "error" in message
    assert "undeclared_name_xyz" in message  # the log's own text, not only NVRTC's verdict


def test_bad_option_raises_compile_error(nv) -> None:
    with pytest.raises(CompileError, match="NVRTC_ERROR_INVALID_OPTION"):
        nv.compile(KERNEL, "sol_scale.cu", 80, ["--no-such-option"])


def test_long_log_is_cut(nv, nvrtc_module: ModuleType) -> None:
    body = "\n".join(f"    y[{i}] = missing_{i};" for i in range(400))
    with pytest.raises(CompileError) as info:
        nv.compile(f'extern "C" __global__ void many(float* y) {{\n{body}\n}}\n', "many.cu", 80)
    assert "more characters" in str(info.value)
    assert len(str(info.value)) < nvrtc_module.LOG_LIMIT + 1000


# finding the library


def test_found_library_is_a_wheel_or_system_nvrtc(nvrtc_module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(nvrtc_module.ENV_VAR, raising=False)
    path = nvrtc_module.find_library()
    if path is None:
        pytest.skip("no NVRTC installed")
    name = os.path.basename(path)
    assert name.startswith("libnvrtc.so") and ".alt." not in name


def test_wheel_layouts_prefer_the_highest_major(nvrtc_module: ModuleType, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # the CUDA 12 wheel (nvidia-cuda-nvrtc-cu12) and the CUDA 13 one (nvidia-cuda-nvrtc), side by side
    for relative in ("nvidia/cuda_nvrtc/lib/libnvrtc.so.12", "nvidia/cuda_nvrtc/lib/libnvrtc.alt.so.12",
                     "nvidia/cuda_nvrtc/lib/libnvrtc-builtins.so.12.9", "nvidia/cu13/lib/libnvrtc.so.13",
                     "nvidia/cu13/lib/libnvrtc-builtins.so.13.0"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).touch()
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.delenv(nvrtc_module.ENV_VAR, raising=False)
    assert nvrtc_module.find_library() == str(tmp_path / "nvidia/cu13/lib/libnvrtc.so.13")
    found = [os.path.basename(p) for p in nvrtc_module._wheel_libraries()]
    assert "libnvrtc.so.12" in found and not any("alt" in p or "builtins" in p for p in found)


def test_env_var_wins_and_is_named_when_wrong(nvrtc_module: ModuleType, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "libnvrtc.so.99")
    monkeypatch.setenv(nvrtc_module.ENV_VAR, missing)
    assert nvrtc_module.find_library() == missing
    nvrtc_module.load.cache_clear()
    try:
        with pytest.raises(nvrtc_module.NvrtcUnavailable, match="SOL_NVRTC") as info:
            nvrtc_module.load()
        assert "pip install nvidia-cuda-nvrtc-cu12" in str(info.value)
    finally:
        nvrtc_module.load.cache_clear()  # later tests load the real one again


def test_unloadable_library_names_the_fix(nvrtc_module: ModuleType, tmp_path: Path) -> None:
    bogus = tmp_path / "libnvrtc.so.12"
    bogus.write_bytes(b"not a library")
    with pytest.raises(nvrtc_module.NvrtcUnavailable, match="nvidia-cuda-nvrtc"):
        nvrtc_module.Nvrtc(str(bogus))


# driver


def _driver_installed() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def test_probe_says_why(driver_module: ModuleType) -> None:
    ok, why, info = driver_module.probe()
    assert driver_module.probe() == (ok, why, info)  # answered once, never raises
    if not _driver_installed():
        assert (ok, info) == (False, {})
        assert "libcuda.so.1" in why and "driver" in why
    elif os.path.exists("/dev/nvidia0"):
        assert ok, why
        assert info["arch"] >= 50 and info["count"] >= 1 and f"sm_{info['arch']}" in why
        assert info["driver"][0] >= 12
    else:  # driver libraries without a GPU (a container without --gpus)
        assert not ok
        assert why.startswith(("cuInit failed", "no CUDA device"))


def test_load_without_gpu_says_why(driver_module: ModuleType) -> None:
    ok, why, _ = driver_module.probe()
    if ok:
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceUnavailableError) as info:
        driver_module.load()
    assert why in str(info.value)


def test_kernel_args_point_at_their_values(driver_module: ModuleType) -> None:
    y, x, n = ctypes.c_uint64(0x7F0000001000), ctypes.c_uint64(0x7F0000002000), ctypes.c_int64(1000)
    holder, array = driver_module.kernel_args(y, x, n)
    assert len(array) == 3 and holder == (y, x, n)
    assert [array[i] for i in range(3)] == [ctypes.addressof(v) for v in (y, x, n)]
    assert ctypes.c_int64.from_address(array[2]).value == 1000
    with pytest.raises(TypeError, match="ctypes"):
        driver_module.kernel_args(5)


def test_cuda_errors_are_sol_errors(driver_module: ModuleType) -> None:
    oom = driver_module.CudaOutOfMemory("cuMemAlloc failed", 2, "CUDA_ERROR_OUT_OF_MEMORY")
    assert (oom.code, oom.name) == (2, "CUDA_ERROR_OUT_OF_MEMORY")
    assert isinstance(oom, MemoryError) and isinstance(oom, SolError) and isinstance(oom, driver_module.CudaError)


def test_kernel_runs_on_gpu(nv, driver_module: ModuleType) -> None:
    """End to end where a GPU exists: NVRTC's CUBIN loaded and launched through the driver."""
    ok, why, info = driver_module.probe()
    if not ok:
        pytest.skip(why)
    if info["arch"] not in nv.supported_archs():
        pytest.skip(f"NVRTC {nv.version()} cannot compile for sm_{info['arch']}")
    cuda = driver_module.load()
    cuda.primary_context(0)
    n = 1000
    host_x = (ctypes.c_float * n)(*range(n))
    host_y = (ctypes.c_float * n)()
    module = cuda.load_module(nv.compile(KERNEL, "sol_scale.cu", info["arch"]).cubin)
    x = y = 0
    try:
        x, y = cuda.mem_alloc(4 * n), cuda.mem_alloc(4 * n)
        cuda.memcpy_htod(x, host_x, 4 * n)
        cuda.memset_d8(y, 0, 4 * n)
        holder, args = driver_module.kernel_args(ctypes.c_uint64(y), ctypes.c_uint64(x), ctypes.c_int64(n))
        cuda.launch(cuda.function(module, "sol_scale"), (n + 255) // 256, 256, 0, 0, args)
        cuda.memcpy_dtoh(host_y, y, 4 * n)
        cuda.synchronize(0)
        assert list(host_y) == [2.0 * i for i in range(n)]
        with pytest.raises(driver_module.CudaError, match="no_such_kernel"):
            cuda.function(module, "no_such_kernel")
    finally:
        cuda.mem_free(x)
        cuda.mem_free(y)
        cuda.unload_module(module)


# the driver binding against a stub libcuda: the real C signatures, so a wrong argtype (a 32-bit
# size, swapped arguments, a lost stream) shows here, on a machine without a GPU

STUB_LIBCUDA = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult; typedef int CUdevice; typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUstream;

static CUcontext current;
unsigned int last_launch[7];
void *last_stream, *last_extra;
int max_dynamic_shared;
unsigned char loaded_image[4];

CUresult cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
CUresult cuDriverGetVersion(int *v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult e, const char **s) {
    *s = e == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : e == 500 ? "CUDA_ERROR_NOT_FOUND" : 0;
    return *s ? 0 : 1;
}
CUresult cuGetErrorString(CUresult e, const char **s) {
    *s = e == 2 ? "out of memory" : e == 500 ? "named symbol not found" : 0;
    return *s ? 0 : 1;
}
CUresult cuDeviceGetCount(int *c) { *c = 2; return 0; }
CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    if (ordinal < 0 || ordinal > 1) return 101;
    *d = 10 + ordinal; return 0;
}
CUresult cuDeviceGetAttribute(int *pi, int attrib, CUdevice d) {
    if (d < 10) return 101;
    switch (attrib) {
    case 75: *pi = 9; return 0;
    case 76: *pi = 0; return 0;
    case 16: *pi = 132; return 0;
    case 1: *pi = 1024; return 0;
    case 97: *pi = 232448; return 0;
    }
    return 1;
}
CUresult cuDeviceGetName(char *name, int len, CUdevice d) { strncpy(name, "Stub GPU", len); return 0; }
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice d) { *bytes = (size_t)80 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { *c = (void *)(uintptr_t)(0x1000 + d); return 0; }
CUresult cuCtxGetCurrent(CUcontext *c) { *c = current; return 0; }
CUresult cuCtxSetCurrent(CUcontext c) { current = c; return 0; }
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) {
    if (n > ((size_t)1 << 40)) return 2;
    *p = (CUdeviceptr)(uintptr_t)malloc(n); return 0;
}
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)(uintptr_t)p); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, CUstream st) {
    memcpy((void *)(uintptr_t)d, s, n); last_stream = st; return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, CUstream st) {
    memcpy(d, (void *)(uintptr_t)s, n); last_stream = st; return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) {
    memcpy((void *)(uintptr_t)d, (void *)(uintptr_t)s, n); last_stream = st; return 0;
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream st) {
    memset((void *)(uintptr_t)d, v, n); last_stream = st; return 0;
}
CUresult cuStreamSynchronize(CUstream st) { last_stream = st; return 0; }
CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    memcpy(loaded_image, image, 4); *m = (void *)0x2000; return 0;
}
CUresult cuModuleUnload(CUmodule m) { return m == (void *)0x2000 ? 0 : 400; }
CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
    if (m != (void *)0x2000 || strcmp(name, "sol_scale")) return 500;
    *f = (void *)0x3000; return 0;
}
CUresult cuFuncSetAttribute(CUfunction f, int attrib, int value) {
    if (f != (void *)0x3000 || attrib != 8) return 1;
    max_dynamic_shared = value; return 0;
}
/* runs sol_scale(float* y, const float* x, long n) on the host, from kernelParams */
CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int shared, CUstream st, void **params,
                        void **extra) {
    unsigned int dims[7] = {gx, gy, gz, bx, by, bz, shared};
    memcpy(last_launch, dims, sizeof dims); last_stream = st; last_extra = extra;
    if (f != (void *)0x3000) return 400;
    float *y = (float *)(uintptr_t)*(CUdeviceptr *)params[0];
    const float *x = (const float *)(uintptr_t)*(CUdeviceptr *)params[1];
    long n = *(long *)params[2];
    for (long i = 0; i < n; i++) y[i] = 2.0f * x[i];
    return 0;
}
"""


@pytest.fixture(scope="module")
def stub_libcuda(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler to build the stub libcuda")
    folder = tmp_path_factory.mktemp("stub_libcuda")
    (folder / "stub.c").write_text(STUB_LIBCUDA)
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(folder / "libcuda_stub.so"), str(folder / "stub.c")],
                   check=True, capture_output=True)
    return ctypes.CDLL(str(folder / "libcuda_stub.so"))


def test_driver_calls_reach_c_with_the_right_types(driver_module: ModuleType, stub_libcuda: ctypes.CDLL) -> None:
    cuda = driver_module.Driver(stub_libcuda)
    assert cuda.driver_version() == (13, 0)
    assert cuda.device_info(1) == {"arch": 90, "name": "Stub GPU", "memory": 80 << 30, "sms": 132,
                                   "max_threads_per_block": 1024, "max_shared_per_block": 232448}
    assert cuda.primary_context(1) == 0x1000 + 11 == cuda.current_context()

    stream = 0x7F00DEADBEE0  # a 64-bit handle must arrive whole
    n = 1000
    host_x = (ctypes.c_float * n)(*range(n))
    host_y = (ctypes.c_float * n)()
    x, y, z = cuda.mem_alloc(4 * n), cuda.mem_alloc(4 * n), cuda.mem_alloc(4 * n)
    try:
        cuda.memcpy_htod(x, host_x, 4 * n, stream)
        assert ctypes.c_void_p.in_dll(stub_libcuda, "last_stream").value == stream
        cuda.memset_d8(y, 0xFF, 4 * n, 0)
        assert ctypes.c_void_p.in_dll(stub_libcuda, "last_stream").value is None  # 0: the legacy default stream
        module = cuda.load_module(b"\x7fELF rest of a cubin")
        assert bytes((ctypes.c_ubyte * 4).in_dll(stub_libcuda, "loaded_image")) == b"\x7fELF"
        func = cuda.function(module, "sol_scale")
        cuda.set_max_dynamic_shared(func, 100_000)
        assert ctypes.c_int.in_dll(stub_libcuda, "max_dynamic_shared").value == 100_000
        holder, args = driver_module.kernel_args(ctypes.c_uint64(y), ctypes.c_uint64(x), ctypes.c_int64(n))
        cuda.launch(func, (4, 2, 1), 256, 49152, stream, args)
        assert list((ctypes.c_uint * 7).in_dll(stub_libcuda, "last_launch")) == [4, 2, 1, 256, 1, 1, 49152]
        assert ctypes.c_void_p.in_dll(stub_libcuda, "last_extra").value is None
        cuda.memcpy_dtod(z, y, 4 * n, stream)
        cuda.memcpy_dtoh(host_y, z, 4 * n, stream)
        cuda.synchronize(stream)
        assert list(host_y) == [2.0 * i for i in range(n)]
        with pytest.raises(driver_module.CudaError, match="'missing'.*CUDA_ERROR_NOT_FOUND.*named symbol") as info:
            cuda.function(module, "missing")
        assert (info.value.code, info.value.name) == (500, "CUDA_ERROR_NOT_FOUND")
        cuda.unload_module(module)
    finally:
        for ptr in (x, y, z):
            cuda.mem_free(ptr)


def test_driver_errors(driver_module: ModuleType, stub_libcuda: ctypes.CDLL) -> None:
    cuda = driver_module.Driver(stub_libcuda)
    with pytest.raises(driver_module.CudaOutOfMemory, match="CUDA_ERROR_OUT_OF_MEMORY"):
        cuda.mem_alloc(1 << 41)  # needs the full 64-bit size_t
    with pytest.raises(MemoryError):
        cuda.mem_alloc(1 << 41)
    assert cuda.mem_alloc(0) == 0
    with pytest.raises(driver_module.CudaError, match="cuDeviceGet.*CUDA error 101"):
        cuda.device(7)


def test_probe_describes_device_zero(driver_module: ModuleType, stub_libcuda: ctypes.CDLL,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver_module, "_open", lambda: driver_module.Driver(stub_libcuda))
    (ok, why, info), _ = driver_module._probe.__wrapped__()  # uncached: the process's answer stays
    assert ok and why == "Stub GPU (sm_90, driver 13.0, 2 devices)"
    assert (info["arch"], info["driver"], info["count"]) == (90, (13, 0), 2)
