"""Compilers of the CUDA device: NVRTC (the GPU's code, a cubin) and the host C++ compiler (the
host emulation, a shared library running the same kernels). ``nvcc`` is never needed.

NVRTC comes from NVIDIA's wheel (``nvidia-cuda-nvrtc-cu12`` for CUDA 12, ``nvidia-cuda-nvrtc``
for CUDA 13: the one matching the user's PyTorch), found by :mod:`sol_cuda.nvrtc`. The cubin is
built for one architecture, the GPU's (``sm_90`` on an H100); the compile cache keys it by
source, architecture and NVRTC version (:meth:`NvrtcCompiler.identity`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from sol.plugin_api import CompileError, Compiler, Source

# -default-device: a function without an execution space is device code. No fast-math: NaN,
# infinity and division behave as IEEE says and as the frameworks' own kernels do (FMA
# contraction stays on, as in PyTorch's kernels).
NVRTC_FLAGS = ("-std=c++17", "-default-device")
# The host emulation: -O1 keeps the compile short (the emulation checks numbers, not speed).
# -fno-gnu-unique: the emulation header's inline variables would otherwise be "unique" symbols,
# which keep the library loaded for good (dropped models must unload theirs).
EMULATION_FLAGS = ("-std=c++17", "-O1", "-fopenmp", "-shared", "-fPIC", "-fno-strict-aliasing",
                   "-fno-delete-null-pointer-checks", "-fno-gnu-unique", "-x", "c++")


def templates_dir() -> Path:
    return Path(str(resources.files("sol_cuda") / "templates"))


class NvrtcCompiler(Compiler):
    """CUDA C++ -> a cubin for ``sm_<arch>`` through NVRTC; with ``ptx``, PTX for
    ``compute_<arch>`` instead (NVRTC's front end only, no ptxas: a compile check)."""

    def __init__(self, arch: int, ptx: bool = False) -> None:
        self.arch = arch
        self.ptx = ptx

    @property
    def target(self) -> str:
        return f"{'compute' if self.ptx else 'sm'}_{self.arch}"

    def identity(self) -> str:
        from sol_cuda import nvrtc

        major, minor = nvrtc.load().version()
        return f"nvrtc {major}.{minor} {self.target} {' '.join(NVRTC_FLAGS)}"

    def compile(self, source: Source, outdir: Path) -> Path:
        from sol_cuda import nvrtc

        text = source.files[source.entry]
        (outdir / source.entry).write_text(text)
        if self.ptx:
            artifact = outdir / "network.ptx"
            artifact.write_text(nvrtc.load().compile_ptx(text, source.entry, self.arch, list(NVRTC_FLAGS)))
            return artifact
        compiled = nvrtc.load().compile(text, source.entry, self.arch, list(NVRTC_FLAGS))
        artifact = outdir / "network.cubin"
        artifact.write_bytes(compiled.cubin)
        return artifact


def host_cxx() -> str | None:
    """The host C++ compiler for the emulation (``SOL_CXX``, else g++), or None."""
    return shutil.which(os.environ.get("SOL_CXX") or "g++")


def nvrtc_checks() -> list[NvrtcCompiler]:
    """``SOL_CUDA_NVRTC_CHECK``: what the emulation's compiles also build with NVRTC, so that a
    test suite without a GPU still catches a kernel NVRTC refuses. ``80,90``: cubins for sm_80
    and sm_90 (NVRTC's front end, then ptxas, as for a GPU); ``compute_90``: PTX only, the front
    end without ptxas (measured by hand on the grid-sample bundle: 3.7 s against 13.2 s for its
    sm_90 cubin)."""
    raw = os.environ.get("SOL_CUDA_NVRTC_CHECK", "").replace(",", " ").split()
    targets = set()
    for token in raw:
        kind, _, number = token.rpartition("_")
        if kind not in ("", "sm", "compute") or not number.isdigit():
            raise CompileError(f"SOL_CUDA_NVRTC_CHECK={os.environ['SOL_CUDA_NVRTC_CHECK']!r}: expected "
                               f"architectures such as 80,90 (cubins) or compute_90 (PTX only)")
        targets.add((kind == "compute", int(number)))
    return [NvrtcCompiler(arch, ptx) for ptx, arch in sorted(targets)]


class EmulationCompiler(Compiler):
    """The same CUDA source as a host shared library (``sol_cuda_emu.h`` stands in for the CUDA
    built-ins), for the host emulation; with :func:`nvrtc_checks`, NVRTC compiles it too."""

    def __init__(self) -> None:
        self.checks = nvrtc_checks()

    def identity(self) -> str:
        cxx = host_cxx()
        if cxx is None:
            raise CompileError("cuda emulation: no host C++ compiler (install g++ or set SOL_CXX)")
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
        header = (templates_dir() / "sol_cuda_emu.h").read_bytes()
        import hashlib

        checks = "".join(f" +{c.identity()}" for c in self.checks)
        return f"{cxx} {version} {' '.join(EMULATION_FLAGS)} emu:{hashlib.sha256(header).hexdigest()[:16]}{checks}"

    def compile(self, source: Source, outdir: Path) -> Path:
        cxx = host_cxx()
        if cxx is None:
            raise CompileError("cuda emulation: no host C++ compiler (install g++ or set SOL_CXX)")
        src = outdir / source.entry
        src.write_text(source.files[source.entry])
        artifact = outdir / "network_emu.so"
        cmd = [cxx, *EMULATION_FLAGS, "-I", str(templates_dir()), str(src), "-o", str(artifact)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"cuda emulation: {Path(cxx).name} failed on {src}:\n{done.stderr[-4000:]}")
        for check in self.checks:
            built = check.compile(source, outdir)
            built.rename(outdir / f"network.{check.target}{built.suffix}")
        return artifact
