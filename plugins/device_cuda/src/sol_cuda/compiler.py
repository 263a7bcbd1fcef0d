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
    """CUDA C++ -> a cubin for ``sm_<arch>`` through NVRTC."""

    def __init__(self, arch: int) -> None:
        self.arch = arch

    def identity(self) -> str:
        from sol_cuda import nvrtc

        major, minor = nvrtc.load().version()
        return f"nvrtc {major}.{minor} sm_{self.arch} {' '.join(NVRTC_FLAGS)}"

    def compile(self, source: Source, outdir: Path) -> Path:
        from sol_cuda import nvrtc

        text = source.files[source.entry]
        (outdir / source.entry).write_text(text)
        compiled = nvrtc.load().compile(text, source.entry, self.arch, list(NVRTC_FLAGS))
        artifact = outdir / "network.cubin"
        artifact.write_bytes(compiled.cubin)
        return artifact


def host_cxx() -> str | None:
    """The host C++ compiler for the emulation (``SOL_CXX``, else g++), or None."""
    return shutil.which(os.environ.get("SOL_CXX") or "g++")


def nvrtc_check_archs() -> tuple[str, ...]:
    """``SOL_CUDA_NVRTC_CHECK``: what the emulation's compiles also build with NVRTC, so that a
    test suite without a GPU still catches a kernel NVRTC refuses. ``80,90``: cubins for sm_80
    and sm_90 (NVRTC's front end, then ptxas, as for a GPU); ``compute_90``: PTX only, the front
    end without ptxas (about a quarter of the time on large networks: 3.7 s against 13.2 s for
    the grid-sample bundle's cubin). Returns the targets, ``sm_NN`` or ``compute_NN``."""
    raw = os.environ.get("SOL_CUDA_NVRTC_CHECK", "").replace(",", " ").split()
    targets = set()
    for token in raw:
        kind, _, number = token.rpartition("_")
        if kind not in ("", "sm", "compute") or not number.isdigit():
            raise CompileError(f"SOL_CUDA_NVRTC_CHECK={os.environ['SOL_CUDA_NVRTC_CHECK']!r}: expected "
                               f"architectures such as 80,90 (cubins) or compute_90 (PTX only)")
        targets.add(f"{kind or 'sm'}_{int(number)}")
    return tuple(sorted(targets))


def _check_identity(target: str) -> str:
    kind, _, number = target.partition("_")
    compiler = NvrtcCompiler(int(number))
    return compiler.identity() if kind == "sm" else compiler.identity().replace(f" sm_{number} ", f" {target} ")


class EmulationCompiler(Compiler):
    """The same CUDA source as a host shared library (``sol_cuda_emu.h`` stands in for the CUDA
    built-ins), for the host emulation; with :func:`nvrtc_check_archs`, NVRTC compiles it too."""

    def __init__(self) -> None:
        self.check_targets = nvrtc_check_archs()

    def identity(self) -> str:
        cxx = host_cxx()
        if cxx is None:
            raise CompileError("cuda emulation: no host C++ compiler (install g++ or set SOL_CXX)")
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
        header = (templates_dir() / "sol_cuda_emu.h").read_bytes()
        import hashlib

        checks = "".join(f" +{_check_identity(t)}" for t in self.check_targets)
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
        for target in self.check_targets:
            kind, _, number = target.partition("_")
            if kind == "sm":
                NvrtcCompiler(int(number)).compile(source, outdir).rename(outdir / f"network.{target}.cubin")
            else:
                from sol_cuda import nvrtc

                ptx = nvrtc.load().compile_ptx(source.files[source.entry], source.entry, int(number), list(NVRTC_FLAGS))
                (outdir / f"network.{target}.ptx").write_text(ptx)
        return artifact
