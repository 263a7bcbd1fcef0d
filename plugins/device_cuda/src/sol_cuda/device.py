"""The CUDA device: renderer (jinja2 CUDA C++ templates), NVRTC compiler and driver runtime, or,
where the user asks for it, the host emulation of the same kernels.

Without a GPU the device is not available and says why (no driver, no device, no NVRTC);
``SOL_CUDA_EMULATE=1`` (or ``auto``: only without a GPU) makes it available as "emulated on
host", running every kernel on the CPU (:mod:`sol_cuda.runtime`): slow, but the generated
code's numbers are checked everywhere, as the VE plugin's emulation checks its kernels.
"""

from __future__ import annotations

import os
from pathlib import Path

from sol.plugin_api import (
    HOST_MEMORY,
    Availability,
    Compiler,
    Device,
    DeviceCapabilities,
    DeviceMemory,
    DeviceUnavailableError,
    Plan,
    Program,
    SolError,
    Source,
    selected_device_index,
)
from sol_cuda import compiler as cc
from sol_cuda import runtime
from sol_cuda.render import LOCAL_BYTES, THREADS, CudaDialect, NetworkRenderer

DIALECT = CudaDialect()
EMULATION_THREADS = 4  # threads per block in the emulation (OpenMP threads: few, but more than one warp lane)
DEFAULT_SMS = 108  # an A100's, for planning where no GPU says how many it has


def emulation_requested(gpu: bool) -> bool:
    """``SOL_CUDA_EMULATE``: 1 runs the kernels in the host emulation even with a GPU; ``auto``
    only where there is none (what the test suite sets); unset or 0: never."""
    value = os.environ.get("SOL_CUDA_EMULATE", "").strip().lower()
    return value in ("1", "true", "yes", "on") or (value == "auto" and not gpu)


def emulation_threads() -> int:
    """Threads per block in the emulation: ``SOL_CUDA_EMULATION_THREADS`` (a power of two up to the
    GPU's THREADS; more threads exercise more of a kernel's cross-thread code, more slowly), else
    EMULATION_THREADS."""
    raw = os.environ.get("SOL_CUDA_EMULATION_THREADS", "").strip()
    if not raw:
        return EMULATION_THREADS
    n = int(raw) if raw.isdigit() else 0
    if n < 1 or n > THREADS or n & (n - 1):
        raise SolError(f"SOL_CUDA_EMULATION_THREADS={raw!r}: expected a power of two from 1 to {THREADS}")
    return n


def nvrtc_status() -> tuple[bool, str]:
    """Whether NVRTC loads here, and its version or why not."""
    from sol_cuda import nvrtc

    try:
        major, minor = nvrtc.load().version()
    except nvrtc.NvrtcUnavailable as exc:
        return False, str(exc)
    return True, f"NVRTC {major}.{minor}"


class CudaDevice(Device):
    name = "cuda"

    def __init__(self) -> None:
        self._memories: dict[int, DeviceMemory] = {}

    def availability(self) -> Availability:
        from sol_cuda import driver

        gpu, why, _ = driver.probe()
        if emulation_requested(gpu):
            if cc.host_cxx() is None:
                return Availability(False, "SOL_CUDA_EMULATE is set, but there is no host C++ compiler for the "
                                           "emulation (install g++ or set SOL_CXX)")
            setting = f"SOL_CUDA_EMULATE={os.environ['SOL_CUDA_EMULATE'].strip()}"
            return Availability(True, f"emulated on host ({setting}; {why})", emulated=True)
        if not gpu:
            return Availability(False, why)
        ok, nvrtc_detail = nvrtc_status()
        if not ok:
            return Availability(False, f"{why}, but {nvrtc_detail}")
        return Availability(True, f"{why}, {nvrtc_detail}")

    @property
    def emulated(self) -> bool:
        return self.availability().emulated

    @property
    def memory(self) -> DeviceMemory:
        """The selected GPU's memory (``sol.device.set("cuda", index)``); host memory in the
        emulation, which runs on the host's. Without a GPU it exists, and its first use raises
        DeviceUnavailableError saying why."""
        if self.emulated:
            return HOST_MEMORY
        from sol_cuda.gpu import CudaMemory

        index = selected_device_index()
        if index not in self._memories:
            self._memories[index] = CudaMemory(index)
        return self._memories[index]

    @property
    def capabilities(self) -> DeviceCapabilities:
        from sol_cuda import driver

        _, _, info = driver.probe()
        sms = int(info.get("sms", DEFAULT_SMS))
        # What the C-family generator lowers (sol.lowering): every fusible op renders, op stages
        # without a CUDA form on one thread (render.py); recurrent groups as one block (recurrent.j2).
        unsupported = {op: "channels-last ops are for devices whose convolution library prefers them; "
                           "sol's CUDA kernels compute NCHW"
                       for op in ("conv2d_nhwc", "max_pool2d_nhwc", "avg_pool2d_nhwc")}
        return DeviceCapabilities(vector_width=DIALECT.vector_width, fusible_ops=DIALECT.fusible_ops(),
                                  local_bytes=LOCAL_BYTES, min_parallel=sms, recurrent_ops=DIALECT.recurrent_ops(),
                                  extra={"threads": THREADS, "sms": sms}, unsupported_ops=unsupported,
                                  concurrent_calls=False)

    @property
    def compiler(self) -> Compiler:
        if self.emulated:
            return cc.EmulationCompiler()
        from sol_cuda import driver

        available, why, info = driver.probe()
        if not available:
            raise DeviceUnavailableError(f"cuda: {why}")
        return cc.NvrtcCompiler(int(info["arch"]))

    def render(self, plan: Plan) -> Source:
        # One source for the GPU and the emulation: the emulation launches the same kernels
        # with fewer threads per block (every loop strides by blockDim.x).
        return NetworkRenderer(plan, DIALECT, threads=THREADS).render()

    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        if self.emulated:
            return runtime.load_emulated(artifact, plan, source, self.name, emulation_threads(),
                                         {"emulated": True, "runs_on": "host emulation of the CUDA kernels"})
        from sol_cuda import gpu

        memory = self.memory
        assert isinstance(memory, gpu.CudaMemory)
        return gpu.load(artifact, plan, source, self.name, memory)
