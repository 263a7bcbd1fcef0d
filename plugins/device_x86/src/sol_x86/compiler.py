"""g++ (or ``$SOL_CXX``) turning a generated network into a shared object."""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from sol.errors import CompileError
from sol.roles import Compiler, Source
from sol_x86.libraries import find_onednn

# -fno-math-errno lets exp/sqrt vectorize; no -ffast-math: NaN and Inf must behave as in the
# frameworks.
DEFAULT_FLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno",
                 "-fno-trapping-math", "-Wno-unused-variable", "-Wno-unused-but-set-variable")


def cxx() -> str | None:
    return os.environ.get("SOL_CXX") or shutil.which("g++") or shutil.which("clang++")


@functools.cache
def _cxx_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else path


@functools.cache
def cpu_signature() -> str:
    """-march=native code is only valid on the same kind of CPU: part of the cache key."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown-cpu"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags") and key not in fields:
            fields[key] = value.strip()
    return fields.get("model name", "?") + " " + hashlib.sha256(fields.get("flags", "").encode()).hexdigest()[:12]


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


class GxxCompiler(Compiler):
    def __init__(self) -> None:
        extra = os.environ.get("SOL_CXXFLAGS", "")
        self.flags = list(DEFAULT_FLAGS) + shlex.split(extra)

    def identity(self) -> str:
        path = cxx() or "no-compiler"
        onednn = find_onednn()
        return f"{path} {_cxx_version(path)} {' '.join(self.flags)} {cpu_signature()} " \
               f"onednn={onednn.version if onednn else 'none'}"

    def compile(self, source: Source, outdir: Path) -> Path:
        compiler = cxx()
        if compiler is None:
            raise CompileError("no C++ compiler found for the x86 device (install g++ or set SOL_CXX)")
        for name, text in source.files.items():
            (outdir / name).write_text(text)
        artifact = outdir / "network.so"
        cmd = [compiler, *self.flags, "-o", str(artifact), str(outdir / source.entry), f"-I{outdir}"]
        if source.meta.get("uses_onednn"):
            onednn = find_onednn()
            if onednn is None:
                raise CompileError("the network needs oneDNN, which is not installed")
            cmd += [f"-I{onednn.include}", f"-L{onednn.lib}", "-ldnnl", f"-Wl,-rpath,{onednn.lib}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            log = (out.stderr or out.stdout).strip().splitlines()
            tail = "\n".join(log[-40:])
            raise CompileError(f"{compiler} failed (exit {out.returncode}) on {outdir / source.entry}:\n{tail}\n"
                               f"command: {shlex.join(cmd)}")
        return artifact
