"""NVRTC through ctypes: CUDA C++ source to a CUBIN in this process, with no CUDA toolkit installed.

Why ctypes and not cuda-python: the plugin needs a dozen NVRTC calls, and NVRTC ships as a plain
wheel (``nvidia-cuda-nvrtc-cu12`` for CUDA 12, ``nvidia-cuda-nvrtc`` for CUDA 13) that PyTorch
usually brings along anyway; binding those calls directly adds no dependency and no build step.

Importing this module loads nothing: :func:`load` finds and opens the library on first use.
NVRTC is thread-safe as long as one program is not used from two threads at once; every
:meth:`Nvrtc.compile` creates and destroys its own program, so no lock is needed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install nvidia-cuda-nvrtc-cu12 (CUDA 12) or pip install nvidia-cuda-nvrtc (CUDA 13)"
"""What to tell a user whose machine has no NVRTC."""

ENV_VAR = "SOL_NVRTC"
"""An explicit path to libnvrtc.so, checked before anything else (an unusual install, a test)."""

LOG_LIMIT = 4000
"""Characters of the compiler log kept in a CompileError: the first errors are the useful ones."""

# libnvrtc.so.12, libnvrtc.so.13.0.48 ...; not libnvrtc.alt.so.12 (a variant built with a different
# C++ ABI for some hosts) and not libnvrtc-builtins (which libnvrtc opens itself).
_LIBRARY_NAME = re.compile(r"^libnvrtc\.so(?:\.(\d+))?(?:\.\d+)*$")

# Where the pip wheels put the library, under each ``nvidia`` namespace-package folder:
# nvidia-cuda-nvrtc-cu12 (CUDA 12) and nvidia-cuda-nvrtc 13.x (CUDA 13, one shared cu13/ tree).
_WHEEL_DIRS = ("cu13/lib", "cuda_nvrtc/lib")


class NvrtcUnavailable(Exception):
    """NVRTC cannot be used here; the message says why and what to pip install."""


@dataclass(frozen=True)
class Compiled:
    """One compiled program: the CUBIN for cuModuleLoadData and NVRTC's log (warnings, may be empty)."""

    cubin: bytes
    log: str


def _major(name: str) -> int:
    """The major version in a library file name (``libnvrtc.so.12.9`` -> 12; unversioned -> 0)."""
    match = _LIBRARY_NAME.match(os.path.basename(name))
    return int(match.group(1)) if match and match.group(1) else 0


def _nvidia_dirs() -> list[Path]:
    """Every ``nvidia`` package folder on sys.path, without importing it (nor torch).

    find_spec lists the portions of the namespace package; sys.path is scanned too because an
    old wheel may have made ``nvidia`` a regular package, which hides the other portions.
    """
    found: list[Path] = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(p) for p in spec.submodule_search_locations)
    found.extend(Path(p or ".") / "nvidia" for p in sys.path)
    unique: list[Path] = []
    for folder in found:
        if folder.is_dir() and folder not in unique:
            unique.append(folder)
    return unique


def _wheel_libraries() -> list[str]:
    """libnvrtc files of the installed pip wheels, highest major version first."""
    libraries: list[str] = []
    for folder in _nvidia_dirs():
        for sub in _WHEEL_DIRS:
            lib_dir = folder / sub
            if lib_dir.is_dir():
                libraries.extend(str(p) for p in lib_dir.iterdir() if _LIBRARY_NAME.match(p.name))
    return sorted(libraries, key=_major, reverse=True)


def _toolkit_libraries() -> list[str]:
    """libnvrtc files of a CUDA toolkit (CUDA_HOME, CUDA_PATH, /usr/local/cuda) not on the loader's path."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    libraries: list[str] = []
    for root in roots:
        lib_dir = Path(root) / "lib64" if root else None
        if lib_dir is not None and lib_dir.is_dir():
            libraries.extend(str(p) for p in lib_dir.iterdir() if _LIBRARY_NAME.match(p.name) and _major(p.name))
    return sorted(libraries, key=_major, reverse=True)


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def find_library() -> str | None:
    """The path (or loader name) of the libnvrtc to use, or None when there is none.

    Order: ``$SOL_NVRTC``; the pip wheels on sys.path (what PyTorch installs, so the version
    matches the user's CUDA stack); a CUDA toolkit; the system loader. Within each, the highest
    major version wins: a newer NVRTC knows newer GPUs and still compiles for older ones.
    """
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return explicit
    for candidates in (_wheel_libraries(), _toolkit_libraries()):
        if candidates:
            return candidates[0]
    system = [name for name in ("libnvrtc.so.13", "libnvrtc.so.12") if _loadable(name)]
    found = ctypes.util.find_library("nvrtc")
    if found and _LIBRARY_NAME.match(found) and found not in system and _loadable(found):
        system.append(found)
    return max(system, key=_major) if system else None


# name -> argument types; every function returns an nvrtcResult (int), except the error string.
_c_int_p = ctypes.POINTER(ctypes.c_int)
_c_size_p = ctypes.POINTER(ctypes.c_size_t)
_SIGNATURES: dict[str, list[Any]] = {
    "nvrtcVersion": [_c_int_p, _c_int_p],
    "nvrtcGetNumSupportedArchs": [_c_int_p],
    "nvrtcGetSupportedArchs": [_c_int_p],
    # prog*, src, name, numHeaders, headers, includeNames
    "nvrtcCreateProgram": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                           ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_char_p)],
    "nvrtcDestroyProgram": [ctypes.POINTER(ctypes.c_void_p)],
    "nvrtcCompileProgram": [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
    "nvrtcGetProgramLogSize": [ctypes.c_void_p, _c_size_p],
    "nvrtcGetProgramLog": [ctypes.c_void_p, ctypes.c_char_p],
    "nvrtcGetCUBINSize": [ctypes.c_void_p, _c_size_p],
    "nvrtcGetCUBIN": [ctypes.c_void_p, ctypes.c_char_p],
    "nvrtcGetPTXSize": [ctypes.c_void_p, _c_size_p],
    "nvrtcGetPTX": [ctypes.c_void_p, ctypes.c_char_p],
}
_NVRTC_SUCCESS = 0
_NVRTC_ERROR_COMPILATION = 6


class Nvrtc:
    """One loaded libnvrtc with typed entry points; get the shared instance from :func:`load`."""

    def __init__(self, path: str) -> None:
        """Open ``path`` and type its functions; NvrtcUnavailable if it is not a usable NVRTC."""
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise NvrtcUnavailable(f"NVRTC at {path} cannot be loaded ({exc}); {INSTALL_HINT}") from exc
        self.path = path
        self._fn: dict[str, Any] = {}
        for name, argtypes in _SIGNATURES.items():
            try:
                fn = getattr(lib, name)
            except AttributeError as exc:  # NVRTC older than 11.2 (no CUBIN output, no arch list)
                raise NvrtcUnavailable(f"NVRTC at {path} is too old (it lacks {name}); {INSTALL_HINT}") from exc
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
            self._fn[name] = fn
        error_string = lib.nvrtcGetErrorString
        error_string.argtypes = [ctypes.c_int]
        error_string.restype = ctypes.c_char_p
        self._error_string = error_string
        self._lib = lib  # keeps the library mapped for as long as the functions are used

    def error_string(self, code: int) -> str:
        """NVRTC's name for a result code (``NVRTC_ERROR_COMPILATION``)."""
        text = self._error_string(code)
        return text.decode(errors="replace") if text else f"NVRTC error {code}"

    def _call(self, name: str, *args: Any) -> int:
        """Call ``name``; raise CompileError naming it on any result but NVRTC_SUCCESS."""
        code = int(self._fn[name](*args))
        if code != _NVRTC_SUCCESS:
            from sol.plugin_api import CompileError

            raise CompileError(f"{name} failed: {self.error_string(code)}")
        return code

    def version(self) -> tuple[int, int]:
        """NVRTC's (major, minor) version, e.g. (12, 9): it bounds which GPUs it can compile for."""
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._call("nvrtcVersion", ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def supported_archs(self) -> list[int]:
        """The sm_XX numbers this NVRTC can emit a CUBIN for, ascending (``[75, 80, 86, ...]``)."""
        count = ctypes.c_int()
        self._call("nvrtcGetNumSupportedArchs", ctypes.byref(count))
        archs = (ctypes.c_int * count.value)()
        self._call("nvrtcGetSupportedArchs", archs)
        return sorted(archs)

    @contextmanager
    def _program(self, source: str, name: str) -> Iterator[ctypes.c_void_p]:
        """A fresh nvrtcProgram for ``source``, destroyed however the caller leaves."""
        prog = ctypes.c_void_p()
        self._call("nvrtcCreateProgram", ctypes.byref(prog), source.encode(), name.encode(), 0, None, None)
        try:
            yield prog
        finally:
            self._fn["nvrtcDestroyProgram"](ctypes.byref(prog))  # a failure here must not hide the real one

    def _log(self, prog: ctypes.c_void_p) -> str:
        size = ctypes.c_size_t()
        self._call("nvrtcGetProgramLogSize", prog, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(max(size.value, 1))
        self._call("nvrtcGetProgramLog", prog, buffer)
        return buffer.value.decode(errors="replace").strip()

    def _compile(self, prog: ctypes.c_void_p, name: str, target: str, options: Sequence[str]) -> str:
        """Compile ``prog``; return the log, or raise CompileError with the log and NVRTC's verdict."""
        encoded = [option.encode() for option in options]
        array = (ctypes.c_char_p * len(encoded))(*encoded)
        code = int(self._fn["nvrtcCompileProgram"](prog, len(encoded), array))
        log = self._log(prog)
        if code != _NVRTC_SUCCESS:
            from sol.plugin_api import CompileError

            shown = log[:LOG_LIMIT]
            if len(log) > LOG_LIMIT:
                shown += f"\n... ({len(log) - LOG_LIMIT} more characters)"
            what = "rejected" if code == _NVRTC_ERROR_COMPILATION else "failed on"
            raise CompileError(f"NVRTC {self.version_text()} {what} {name} for {target}: "
                               f"{self.error_string(code)}\noptions: {' '.join(options)}\n{shown or '(no log)'}")
        return log

    def version_text(self) -> str:
        """``12.9``, for messages; never raises (a message must not fail while being built)."""
        try:
            major, minor = self.version()
        except Exception:
            return "(unknown version)"
        return f"{major}.{minor}"

    def compile(self, source: str, name: str, arch: int, options: Sequence[str] = ()) -> Compiled:
        """Compile CUDA C++ ``source`` to a CUBIN for ``sm_{arch}``; CompileError with the log on failure.

        ``name`` is the program's file name in messages; ``options`` are extra NVRTC flags
        (``--use_fast_math``, ``--std=c++17``, ``-DNAME=value``). A real sm target (not compute_XX) is
        what makes NVRTC produce a CUBIN, which the driver loads without a JIT step.
        """
        target = f"sm_{arch}"
        with self._program(source, name) as prog:
            log = self._compile(prog, name, target, [f"--gpu-architecture={target}", *options])
            size = ctypes.c_size_t()
            self._call("nvrtcGetCUBINSize", prog, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            self._call("nvrtcGetCUBIN", prog, buffer)
            return Compiled(cubin=buffer.raw[: size.value], log=log)

    def compile_ptx(self, source: str, name: str, arch: int, options: Sequence[str] = ()) -> str:
        """Compile ``source`` to PTX text for ``compute_{arch}``: for reading what was generated, or
        for a GPU newer than this NVRTC, whose driver can JIT the PTX."""
        target = f"compute_{arch}"
        with self._program(source, name) as prog:
            self._compile(prog, name, target, [f"--gpu-architecture={target}", *options])
            size = ctypes.c_size_t()
            self._call("nvrtcGetPTXSize", prog, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(max(size.value, 1))
            self._call("nvrtcGetPTX", prog, buffer)
            return buffer.value.decode()


@functools.cache
def load() -> Nvrtc:
    """The process's NVRTC, opened on first call; NvrtcUnavailable saying what to install.

    Only success is cached (functools.cache does not cache exceptions), so installing the wheel
    and retrying in the same process works.
    """
    path = find_library()
    if path is None:
        raise NvrtcUnavailable(f"NVRTC (libnvrtc.so) was not found; {INSTALL_HINT}, "
                               f"or set {ENV_VAR} to the library's path")
    if os.sep in path and not os.path.exists(path):
        source = f"{ENV_VAR}={path}" if path == os.environ.get(ENV_VAR) else path
        raise NvrtcUnavailable(f"NVRTC library {source} does not exist; {INSTALL_HINT}")
    return Nvrtc(path)
