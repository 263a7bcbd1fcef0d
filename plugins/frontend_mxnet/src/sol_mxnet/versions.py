"""Whether the weights a compiled inference program holds are still the block's: MXNet's write counter.

Why: an inference program is fastest with the weights compiled in (core folds BatchNorm into the
convolutions, the device reorders weights into its library's layout once, at load). A program
holding weights must notice every change of them, or it computes the old model: a silently
wrong result.

The signal is MXNet's own. Every NDArray's memory (its *chunk*, shared by all views of it) has
an engine variable whose version grows by one when an operation that writes it completes
(``NDArray::version()`` in the C++ headers MXNet ships; MXNet's oneDNN operators key their weight
caches on it). Every write MXNet makes goes through its engine, so every way a Gluon user changes
a weight in place bumps it: ``trainer.step`` (``sgd_update(..., out=w)``, a kvstore pull),
``set_data`` and ``load_parameters`` (``arr[:] = data``), ``param.data()[:] = ...``, ``copyto``,
a NumPy value copied in (``_sync_copyfrom``), a BatchNorm running-statistics update, and a
``to_dlpack_for_write`` export (MXNet bumps it when it hands the memory out). The other changes
replace the arrays (``initialize(force_reinit=True)``, ``cast``, ``reset_ctx``, loading a
parameter that had none): :class:`WeightsWatch` holds the arrays it saw and compares identities.

MXNet 1.9 has no Python API for the version. :func:`reader` builds a small C++ function against
the headers of the installed MXNet (with its build's oneDNN flag: it decides where the variable
sits in the chunk), linked against the loaded ``libmxnet``: per array, wait for pending writes
(``WaitToRead``), then read the version. It is compiled once per MXNet installation into sol's
compile cache and tried in a child process before this process loads it (a header that did not
match the library would crash the process reading it); without a C++ compiler, or where the check
fails, :func:`reader` is None and the wrapper reads the weights at every call (exact, slower).

What MXNet does not see cannot be seen here: memory written behind MXNet's back after it handed
it out (a NumPy view of ``to_dlpack_for_write()`` written to later, ``ctypes``). For weights
written that way, ``optimize(..., live_weights=True)`` reads them at every call.

A version bump says *may have changed*: MXNet bumps the running statistics of a BatchNorm it runs
even in inference (its auxiliary states are write dependencies). So where versions moved, the
watch compares the arrays with the copy the programs were built from, bit for bit, and counts a
change only where one differs (a rebuild costs far more than the comparison).
"""

from __future__ import annotations

import ctypes
import logging
import operator
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from sol.plugin_api import cache_get_or_build, cache_key

log = logging.getLogger("sol")

SOURCE = r"""
#include <cstdint>
#include <cstring>
#include <exception>
#include <mxnet/ndarray.h>

// Per NDArray handle: wait for the writes pending on it, then its version (see versions.py).
// 0 on success; -1 with the message of a failed pending write in `error`.
extern "C" int sol_mx_versions(void* const* handles, int64_t n, uint64_t* out, char* error, int64_t size) {
  try {
    for (int64_t i = 0; i < n; ++i) {
      const mxnet::NDArray* a = static_cast<const mxnet::NDArray*>(handles[i]);
      if (a->is_none()) {
        out[i] = 0;
        continue;
      }
      a->WaitToRead();
      out[i] = static_cast<uint64_t>(a->version());
    }
    return 0;
  } catch (const std::exception& e) {
    std::strncpy(error, e.what(), static_cast<size_t>(size - 1));
    error[size - 1] = 0;
  } catch (...) {
    std::strncpy(error, "unknown C++ exception", static_cast<size_t>(size - 1));
    error[size - 1] = 0;
  }
  return -1;
}
"""

# Run in a child process on a freshly built library: the versions must move exactly as MXNet
# documents, through a view too, and a read must not disturb them.
SELF_TEST = r"""
import ctypes, sys
import numpy as np
import mxnet as mx
lib = ctypes.CDLL(sys.argv[1])
fn = lib.sol_mx_versions
fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64]
fn.restype = ctypes.c_int
def versions(*arrays):
    handles = (ctypes.c_void_p * len(arrays))(*[a.handle.value for a in arrays])
    out = np.zeros(len(arrays), np.uint64)
    error = ctypes.create_string_buffer(256)
    assert fn(handles, len(arrays), out.ctypes.data, error, 256) == 0, error.value
    return [int(v) for v in out]
a = mx.nd.zeros((3, 5))
view = a.reshape((15,))
other = mx.nd.ones((4,))
v0, w0 = versions(a, other)
assert versions(view) == [v0]
a[:] = 1
a.asnumpy()
assert versions(a, view, other) == [v0 + 1, v0 + 1, w0], versions(a, view, other)
mx.nd.sgd_update(a, mx.nd.ones((3, 5)), lr=0.5, out=a)
assert versions(a) == [v0 + 2]
assert versions(a) == [v0 + 2]
print("ok")
"""

_READER: Reader | None = None
_TRIED = False
_LOCK = threading.Lock()


class Reader:
    """The loaded C++ function: versions of NDArrays, by handle."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        fn = self._lib.sol_mx_versions
        fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int64]
        fn.restype = ctypes.c_int
        self._fn = fn

    def read(self, handles: Any, count: int) -> np.ndarray:
        """The versions of ``count`` arrays (``handles``: a ctypes array of their handles, which
        the caller keeps alive) after their pending writes; ``MXNetError`` if one of those failed."""
        out = np.empty(count, np.uint64)
        error = ctypes.create_string_buffer(1024)
        if self._fn(handles, count, out.ctypes.data, error, len(error)) != 0:
            raise mx.base.MXNetError(error.value.decode(errors="replace"))
        return out


def reader() -> Reader | None:
    """The version reader of this MXNet installation, built (and checked) once; None where it
    cannot be had, with one log message saying why (see the module doc)."""
    global _READER, _TRIED
    if _TRIED:
        return _READER
    with _LOCK:
        if not _TRIED:
            try:
                _READER = _load()
            except Exception as exc:  # noqa: BLE001 - any failure: the exact, slower path
                log.warning("sol: the MXNet frontend cannot read MXNet's weight versions (%s); compiled blocks "
                            "read their weights at every call (exact, slower)", exc)
                _READER = None
            _TRIED = True
    return _READER


def _load() -> Reader:
    root = Path(mx.__file__).parent
    include = root / "include"
    library = Path(mx.base._LIB._name)  # noqa: SLF001 - the libmxnet this process loaded
    headers = [include / "mxnet" / n for n in ("ndarray.h", "engine.h", "storage.h", "base.h")]
    missing = [str(h) for h in headers + [library] if not h.is_file()]
    if missing:
        raise RuntimeError(f"MXNet's C++ headers or library are missing ({', '.join(missing)})")
    compiler = os.environ.get("SOL_CXX") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None or shutil.which(compiler) is None:
        raise RuntimeError("no C++ compiler (install g++ or set SOL_CXX)")
    onednn = int(mx.runtime.Features().is_enabled("MKLDNN"))
    flags = ["-std=c++17", "-O2", "-fPIC", "-shared", f"-DMXNET_USE_MKLDNN={onednn}", "-DMSHADOW_USE_MKL=0",
             "-DMSHADOW_USE_CBLAS=0", "-DMSHADOW_USE_CUDA=0", "-DMSHADOW_USE_SSE=0", "-DDMLC_USE_CXX11=1",
             f"-I{include}", f"-I{include / 'mkldnn'}"]
    stat = library.stat()
    key = cache_key("sol_mxnet.versions", SOURCE, SELF_TEST, compiler, " ".join(flags), mx.__version__,
                    str(library), str(stat.st_size), str(stat.st_mtime_ns),
                    *(h.read_text(errors="replace") for h in headers))

    def build(tmp: Path) -> Path:
        src = tmp / "versions.cc"
        out = tmp / "sol_mx_versions.so"
        src.write_text(SOURCE)
        run = subprocess.run([compiler, *flags, str(src), "-o", str(out), f"-L{library.parent}",
                              f"-l:{library.name}", f"-Wl,-rpath,{library.parent}"],
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            raise RuntimeError(f"compiling the version reader failed: {run.stderr.strip()[-400:]}")
        check = subprocess.run([sys.executable, "-c", SELF_TEST, str(out)], capture_output=True, text=True,
                               timeout=300)
        if check.returncode != 0 or check.stdout.strip() != "ok":
            raise RuntimeError(f"the version reader failed its check (exit {check.returncode}): "
                               f"{(check.stderr or check.stdout).strip()[-400:]}")
        return out

    path, _ = cache_get_or_build(key, build)
    return Reader(path)


class WeightsWatch:
    """The parameters' arrays on one context and their versions as of the last :meth:`check`;
    :attr:`generation` grows with every change seen. :meth:`values` gives host copies of the
    arrays of the current generation (what a program is built from). Thread-safe."""

    def __init__(self, params: list[tuple[str, Any]], read: Reader) -> None:
        self.names = [n for n, _ in params]
        self.params = [p for _, p in params]
        self.generation = 0
        self._read = read
        self._lock = threading.Lock()
        self._arrays: list[Any] = []  # held: their handles stay valid, their ids unique
        self._handles: Any = (ctypes.c_void_p * 1)()
        self._versions = np.zeros(0, np.uint64)
        self._values: list[np.ndarray] | None = None  # copies of the current generation's arrays

    def check(self, ctx: Any) -> int:
        """The generation of the weights as they are now (raises MXNet's error where a parameter
        has no array on ``ctx``)."""
        arrays = [p.data(ctx) for p in self.params]
        with self._lock:
            if len(arrays) != len(self._arrays) or not all(map(operator.is_, arrays, self._arrays)):
                self._arrays = arrays
                self._handles = (ctypes.c_void_p * max(len(arrays), 1))(*[a.handle.value for a in arrays])
                self._versions = self._read.read(self._handles, len(arrays))
                self._changed()
                return self.generation
            versions = self._read.read(self._handles, len(arrays))
            moved = np.flatnonzero(versions != self._versions)
            if len(moved):
                if self._values is None or not all(_same(arrays[i], self._values[i]) for i in moved):
                    self._changed()
                self._versions = versions
            return self.generation

    def values(self, ctx: Any) -> tuple[int, dict[str, np.ndarray]]:
        """``(generation, {parameter name: host copy})`` for the weights now."""
        generation = self.check(ctx)
        with self._lock:
            if generation == self.generation and self._values is not None:
                return generation, dict(zip(self.names, self._values))
            # Copied after the versions were read: a write completed in between bumps a version
            # past the one held, so the next check compares again (see the module doc).
            values = [np.ascontiguousarray(a.asnumpy()) for a in self._arrays]
            if generation == self.generation:
                self._values = values
            return generation, dict(zip(self.names, values))

    def _changed(self) -> None:
        self.generation += 1
        self._values = None


def _same(array: Any, saved: np.ndarray) -> bool:
    """The array holds exactly ``saved`` (bit for bit: NaN payloads and -0.0 included)."""
    now = array.asnumpy()
    return bool(now.shape == saved.shape and now.dtype == saved.dtype
                and np.array_equal(now.reshape(-1).view(np.uint8), saved.reshape(-1).view(np.uint8)))
