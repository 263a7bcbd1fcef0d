"""Compilers for the VE: NEC's ncc where installed, else clang's VE target; plus the host C
compiler that builds the same source against the intrinsics emulation when no VE is present.

* On a VE host the artifact is a VE shared object that AVEO/VEDA loads: ``ncc -O3 -fpic -shared
  -fopenmp`` (``$SOL_NCC`` or ``/opt/nec/ve/bin/ncc``), or ``clang --target=ve-unknown-linux-gnu
  -shared`` (needs NEC's VE binutils to link).
* Without a VE, the same source is still compiled for the VE (clang-19 ``-c``, or ncc) so that
  what would run there is real, inspectable VE object code (``network.ve.o`` in the cache entry),
  and compiled for the host with ``-include velintrin_emu.h`` into ``network.host.so``, which the
  emulated offload process runs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sol.plugin_api import CompileError, Compiler, Source

VE_TARGET = "--target=ve-unknown-linux-gnu"
NCC_DEFAULT = "/opt/nec/ve/bin/ncc"
EMULATION_HEADER = "velintrin_emu.h"
# clang's VE backend does not vectorize loops itself: the vel variant's intrinsics do.
# -fno-strict-aliasing: groups reuse the workspace's bytes as other element types (as on x86).
CLANG_FLAGS = (VE_TARGET, "-std=gnu11", "-O3", "-fno-vectorize", "-fPIC", "-fno-strict-aliasing",
               "-Wno-unknown-pragmas")
NCC_FLAGS = ("-std=gnu11", "-O3", "-fpic", "-fopenmp")
# No -ffast-math: NaN and Inf must behave as in the frameworks. -fno-delete-null-pointer-checks
# and -fno-strict-aliasing: see sol_x86's DEFAULT_FLAGS (a GCC 12 miscompile that dropped a group
# call; workspace bytes reused as other element types).
HOST_FLAGS = ("-std=gnu11", "-O2", "-fPIC", "-shared", "-fno-math-errno", "-fno-delete-null-pointer-checks",
              "-fno-strict-aliasing", "-Wno-unknown-pragmas", "-Wno-unused-variable", "-Wno-unused-function")


@functools.cache
def host_fma() -> bool:
    """The host has fused multiply-add instructions: the emulation's vfmad (one rounding, like
    the VE's) is then an instruction instead of a libm fmaf call per lane."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("flags") and " fma " in f"{line} " for line in text.splitlines())


def host_flags() -> list[str]:
    return [*HOST_FLAGS, *(["-mfma"] if host_fma() else [])]


def ncc() -> str | None:
    path = os.environ.get("SOL_NCC") or NCC_DEFAULT
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


@functools.cache
def _clang_targets_ve(path: str) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text("int sol_probe(void) { return 0; }\n")
        out = subprocess.run([path, VE_TARGET, "-c", str(src), "-o", str(Path(tmp, "probe.o"))],
                             capture_output=True, check=False)
    return out.returncode == 0


def ve_clang() -> str | None:
    """A clang whose VE target works: ``$SOL_VE_CLANG``, clang-19, or clang."""
    for name in (os.environ.get("SOL_VE_CLANG"), "clang-19", "clang"):
        path = shutil.which(name) if name else None
        if path and _clang_targets_ve(path):
            return path
    return None


def host_cc() -> str | None:
    return os.environ.get("SOL_CC") or shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")


@functools.cache
def version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else path


def default_variant() -> str:
    """ncc gets the pragma variant; LLVM's VE backend needs the intrinsics variant."""
    return os.environ.get("SOL_VE_VARIANT") or ("ncc" if ncc() else "vel")


def emulation_header() -> str:
    return resources.files("sol_sxaurora").joinpath("templates", EMULATION_HEADER).read_text()


@dataclass(frozen=True)
class Toolchain:
    """Which compilers build for which purpose; ``emulated``: the artifact runs on the host."""

    emulated: bool
    ve: str | None  # VE compiler (ncc or clang with the VE target)
    host: str | None  # host C compiler for the emulation

    @property
    def ve_is_ncc(self) -> bool:
        return self.ve is not None and Path(self.ve).name.startswith("ncc")


def toolchain(emulated: bool) -> Toolchain:
    return Toolchain(emulated, ncc() or ve_clang(), host_cc() if emulated else None)


class VeCompiler(Compiler):
    def __init__(self, emulated: bool) -> None:
        self.emulated = emulated

    def _tools(self) -> Toolchain:
        return toolchain(self.emulated)

    def identity(self) -> str:
        t = self._tools()
        parts = [f"emulated={t.emulated}", f"ve={t.ve} {version(t.ve) if t.ve else ''}",
                 f"ve_flags={' '.join(self._ve_flags(t, Path('x')))}", f"cross={self._cross()}"]
        if t.emulated:
            header = hashlib.sha256(emulation_header().encode()).hexdigest()[:16]
            parts += [f"host={t.host} {version(t.host) if t.host else ''}", f"host_flags={' '.join(host_flags())}",
                      f"emulation={header}"]
        return "; ".join(parts)

    @staticmethod
    def _cross() -> bool:
        return os.environ.get("SOL_VE_CROSS_COMPILE", "1") != "0"

    @staticmethod
    def _ve_flags(t: Toolchain, out: Path) -> list[str]:
        if t.ve_is_ncc:
            return [*NCC_FLAGS, "-shared", "-o", str(out)]
        if t.emulated:  # no VE linker needed (nor, on most hosts, present): an object file
            return [*CLANG_FLAGS, "-c", "-o", str(out)]
        return [*CLANG_FLAGS, "-shared", "-o", str(out)]

    def compile(self, source: Source, outdir: Path) -> Path:
        t = self._tools()
        for name, text in source.files.items():
            (outdir / name).write_text(text)
        entry = outdir / source.entry
        jobs: list[tuple[list[str], Path]] = []
        ve_out = outdir / ("libsolnet.so" if t.ve_is_ncc or not t.emulated else "network.ve.o")
        if t.ve is not None and (not t.emulated or self._cross()):
            jobs.append(([t.ve, *self._ve_flags(t, ve_out), str(entry)], ve_out))
        elif not t.emulated:
            raise CompileError("no compiler for the Vector Engine: install NEC's ncc (or set SOL_NCC) or "
                               "LLVM with the VE target (clang-19)")
        if t.emulated:
            if t.host is None:
                raise CompileError("the VE emulation needs a host C compiler (install gcc or set SOL_CC)")
            (outdir / EMULATION_HEADER).write_text(emulation_header())
            host_out = outdir / "network.host.so"
            include = ["-include", str(outdir / EMULATION_HEADER)] if source.meta.get("variant") == "vel" else []
            jobs.append(([t.host, *host_flags(), *include, "-o", str(host_out), str(entry), "-lm"], host_out))
        _run_all(jobs)
        return jobs[-1][1]


def _run_all(jobs: list[tuple[list[str], Path]]) -> None:
    """Run the compilers side by side (the VE and the host build are independent)."""
    procs = [(cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
             for cmd, _ in jobs]
    failures = []
    for cmd, proc in procs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            lines = output.strip().splitlines()
            # A crashing compiler prints its diagnosis first and a long stack trace after it.
            errors = [line for line in lines if "error" in line.lower() and not line.lstrip().startswith("#")][:10]
            shown = "\n".join(dict.fromkeys(errors + ["..."] + lines[-15:])) if len(lines) > 25 else "\n".join(lines)
            name = Path(cmd[0]).name
            failures.append(f"{name} failed (exit {proc.returncode}):\n{shown}\ncommand: {shlex.join(cmd)}")
    if failures:
        raise CompileError("\n\n".join(failures))
