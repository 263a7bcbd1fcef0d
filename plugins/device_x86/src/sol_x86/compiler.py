"""g++ (or ``$SOL_CXX``) turning a generated network into a shared object.

A network that uses oneDNN links against ``libsol_x86_onednn.so``: the glue between the
generated code and oneDNN's C++ API (``templates/sol_x86_onednn.{hpp,cpp}``), the same for every
network, so it is compiled once per compiler and oneDNN version into the compile cache
(:class:`RuntimeLibrary`) instead of inline into each network (seconds of g++ per network).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from importlib import resources
from pathlib import Path

from sol.plugin_api import CompileError, Compiler, Source, cache_dir, cache_get_or_build, cache_key, progress_step
from sol_x86.libraries import find_onednn
from sol_x86.runtime import abi_renames

log = logging.getLogger("sol")

# -fno-math-errno lets sqrt vectorize; no -ffast-math: NaN and Inf must behave as in the
# frameworks. -fno-delete-null-pointer-checks works around a GCC 12 miscompile
# (tests/x86/test_gcc_null_base.py): when a loop's buffers all lie in the arena, induction
# variable optimization addresses them as "0 + arena*(1-k) + iv*k", and the late pure-const
# pass then takes those stores for stores through a null pointer, which cannot happen, so it
# finds the group function pure and the caller drops the call. With this flag a null-based
# address may point to any memory, which is what it is here. -fno-strict-aliasing: the workspace
# is one byte buffer whose bytes later groups reuse as other element types; once small groups
# are inlined into sol_forward, type-based alias analysis could move a group's store of one type
# above an earlier group's load of another from the same bytes (a group's own pointers are
# __restrict, so its loops vectorize as before: the same 28 loops on EfficientNet-B0).
DEFAULT_FLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno",
                 "-fno-trapping-math", "-fno-delete-null-pointer-checks", "-fno-strict-aliasing",
                 "-Wno-unused-variable", "-Wno-unused-but-set-variable")
# The oneDNN glue is not hot code (oneDNN does the work): -O2, and no -march=native, so its cache
# entry does not depend on the CPU. -fno-semantic-interposition: calls inside the library go
# straight to their targets (nothing interposes on sol's own symbols).
# -fopenmp: the Winograd convolutions split their tiles over the network's OpenMP threads.
RUNTIME_FLAGS = ("-std=c++17", "-O2", "-fopenmp", "-fPIC", "-shared", "-fno-semantic-interposition")
RUNTIME_NAME = "sol_x86_onednn"
RUNTIME_HEADER = f"{RUNTIME_NAME}.hpp"
RUNTIME_SOURCE = f"{RUNTIME_NAME}.cpp"
# Every file of the runtime library's one translation unit (the source includes the others).
RUNTIME_FILES = (RUNTIME_HEADER, "sol_x86_gemv.hpp", "sol_x86_winograd.hpp", RUNTIME_SOURCE)


def cxx() -> str | None:
    """The C++ compiler: ``$SOL_CXX`` if set (checked by :func:`checked_cxx` where it runs), else
    g++ or clang++ from PATH; None when there is none."""
    return os.environ.get("SOL_CXX") or shutil.which("g++") or shutil.which("clang++")


def checked_cxx() -> str:
    """:func:`cxx`, which must exist: a CompileError naming ``$SOL_CXX`` when it names no
    executable (rather than a raw FileNotFoundError from deep inside a compile)."""
    chosen = os.environ.get("SOL_CXX")
    if chosen and shutil.which(chosen) is None:
        raise CompileError(f"SOL_CXX={chosen!r} is not an executable C++ compiler (no such file on PATH or "
                           f"not executable): set SOL_CXX to a compiler such as g++ or clang++ (a name on PATH "
                           f"or a full path), or unset it to use g++ from PATH")
    compiler = cxx()
    if compiler is None:
        raise CompileError("no C++ compiler found for the x86 device (install g++ or set SOL_CXX)")
    return compiler


@functools.cache
def _cxx_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    except OSError as exc:  # vanished or not executable since checked_cxx
        raise CompileError(f"cannot run the C++ compiler {path!r} (SOL_CXX): {exc}") from exc
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


def _extra_flags() -> list[str]:
    return shlex.split(os.environ.get("SOL_CXXFLAGS", ""))


def _run(cmd: list[str], what: str) -> None:
    """Run one compiler command; a failure is a CompileError with the compiler's own output."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:  # the compiler vanished or is not executable
        raise CompileError(f"cannot run the C++ compiler {cmd[0]!r} (set SOL_CXX to a working one) on {what}: "
                           f"{exc}") from exc
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        tail = "\n".join(lines[-40:])
        raise CompileError(f"{cmd[0]} failed (exit {out.returncode}) on {what}:\n{tail}\n"
                           f"command: {shlex.join(cmd)}")


def _compile_parts(compiler: str, flags: list[str], entry: Path, parts: int, includes: list[str]) -> list[Path]:
    """Object files of ``entry``: one compile, or one per part (-DSOL_PART=k) run side by side
    (the renderer splits large networks so that each core compiles a share of their loops)."""
    if parts <= 1:
        obj = entry.with_suffix(".o")
        _run([compiler, *flags, "-c", "-o", str(obj), str(entry), *includes], str(entry))
        return [obj]
    objects = [entry.with_name(f"{entry.stem}.part{k}.o") for k in range(parts)]
    commands = [[compiler, *flags, f"-DSOL_PART={k}", "-c", "-o", str(obj), str(entry), *includes]
                for k, obj in enumerate(objects)]
    with ThreadPoolExecutor(max_workers=parts) as pool, progress_step(f"g++: {parts} parts", total=parts) as step:
        jobs = [pool.submit(_try, cmd, str(entry)) for cmd in commands]
        for _ in as_completed(jobs):
            step.advance()
        for job in jobs:  # the first part's error, as before, whichever finished first
            failure = job.result()
            if failure is not None:
                raise failure
    return objects


def _try(cmd: list[str], what: str) -> CompileError | None:
    try:
        _run(cmd, what)
    except CompileError as exc:
        return exc
    return None


def _template(name: str) -> str:
    return resources.files("sol_x86").joinpath("templates", name).read_text()


class RuntimeLibrary:
    """``libsol_x86_onednn.so`` in the compile cache, keyed by its header, source, flags, compiler
    and oneDNN. :meth:`start` builds it on a daemon thread (the device's ``prepare``, while the
    frontend still traces the model); :meth:`path` waits for that build, or builds here when none
    was started. A failed build raises its CompileError from :meth:`path` (and is tried again at
    the next call); two processes building it at once are safe (the cache's atomic rename)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (cache dir, key) -> the build's outcome; the cache dir is part of the job's identity
        # because an artifact's path is (a test or a user may switch SOL_CACHE_DIR).
        self._jobs: dict[tuple[str, str], Future[Path]] = {}
        # A forked child (a DataLoader worker) has none of the parent's threads: a build in flight
        # there would never finish, so the child starts with no jobs.
        os.register_at_fork(after_in_child=self._forget_all)

    def _forget_all(self) -> None:
        self._lock = threading.Lock()
        self._jobs = {}

    def flags(self) -> list[str]:
        return list(RUNTIME_FLAGS) + _extra_flags()

    def key(self) -> str:
        return self._spec()[0]

    def _spec(self) -> tuple[str, str | None, list[str]]:
        """(cache key, compiler, flags) as the environment says now: a build uses what its key
        was made of, even when the environment changes while it runs."""
        compiler, flags = checked_cxx() if os.environ.get("SOL_CXX") else cxx(), self.flags()
        path = compiler or "no-compiler"
        onednn = find_onednn()
        where = f"{onednn.version} {onednn.include} {onednn.lib}" if onednn else "none"
        identity = f"{path} {_cxx_version(path)} {' '.join(flags)} onednn={where}"
        return cache_key(*map(_template, RUNTIME_FILES), identity), compiler, flags

    def start(self) -> None:
        """Start building (or finding) the library on a daemon thread, unless that has begun."""
        spec, future, mine = self._job()
        if mine:
            threading.Thread(target=self._work, args=(spec, future, True), name="sol-x86-runtime", daemon=True).start()

    def path(self) -> Path:
        """The built library (waiting for a build in progress; building it here if none is)."""
        for _ in range(2):
            spec, future, mine = self._job()
            if mine:
                self._work(spec, future)
            elif not future.done():  # building on another thread (prepare): say what this waits for
                with progress_step("waiting for the x86 runtime library (built once)"):
                    future.exception()  # only waits; the outcome is taken below
            try:
                found = future.result()
            except BaseException:
                self._forget(spec[0], future)  # the next compile tries again (e.g. a fixed $SOL_CXX)
                raise
            if found.exists():
                return found
            self._forget(spec[0], future)  # the cache was cleared since: build it again
        raise CompileError(f"{RUNTIME_NAME}: the built library vanished from the compile cache twice")

    def _job(self) -> tuple[tuple[str, str | None, list[str]], Future[Path], bool]:
        """This environment's build: (spec, its future, whether the caller must run it)."""
        spec = self._spec()
        with self._lock:
            slot = (str(cache_dir()), spec[0])
            future = self._jobs.get(slot)
            if future is not None:
                return spec, future, False
            future = self._jobs[slot] = Future()
            return spec, future, True

    def _forget(self, key: str, future: Future[Path]) -> None:
        with self._lock:
            slot = (str(cache_dir()), key)
            if self._jobs.get(slot) is future:
                del self._jobs[slot]

    def _work(self, spec: tuple[str, str | None, list[str]], future: Future[Path], background: bool = False) -> None:
        key, compiler, flags = spec
        try:
            artifact, cached = cache_get_or_build(key, lambda outdir: self._build(compiler, flags, outdir, background))
            if not cached:
                log.info("sol: built the x86 runtime library %s", artifact)
            future.set_result(artifact)
        except BaseException as exc:  # handed to whoever waits in path()
            future.set_exception(exc)

    def _build(self, compiler: str | None, flags: list[str], outdir: Path, background: bool = False) -> Path:
        if compiler is None:
            raise CompileError("no C++ compiler found for the x86 device (install g++ or set SOL_CXX)")
        onednn = find_onednn()
        if onednn is None:
            raise CompileError("the x86 runtime library needs oneDNN, which is not installed")
        for name in RUNTIME_FILES:
            (outdir / name).write_text(_template(name))
        artifact = outdir / f"lib{RUNTIME_NAME}.so"
        cmd = [compiler, *flags, "-o", str(artifact), str(outdir / RUNTIME_SOURCE), f"-I{outdir}",
               f"-I{onednn.include}", f"-L{onednn.lib}", "-ldnnl", f"-Wl,-rpath,{onednn.lib}"]
        with progress_step("building the x86 runtime library (once per compiler and oneDNN)", background=background):
            _run(cmd, f"the x86 runtime library {outdir / RUNTIME_SOURCE}")
        return artifact


RUNTIME = RuntimeLibrary()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def batch_prefix(index: int) -> str:
    """The C ABI names of network ``index`` of a batch compile: ``sol3_create``, ``sol3_forward``..."""
    return f"sol{index}_"


class GxxCompiler(Compiler):
    batch_compiles = True

    def __init__(self) -> None:
        extra = os.environ.get("SOL_CXXFLAGS", "")
        self.flags = list(DEFAULT_FLAGS) + shlex.split(extra)

    def identity(self) -> str:
        path = checked_cxx()
        onednn = find_onednn()
        # The runtime library's key: a network is linked against one build of it (and its header
        # describes the class layouts the network embeds), so a changed library changes the key.
        runtime = f" runtime={RUNTIME.key()}" if onednn else ""
        return f"{path} {_cxx_version(path)} {' '.join(self._flags(path))} {cpu_signature()} " \
               f"onednn={onednn.version if onednn else 'none'}{runtime}"

    def _flags(self, compiler: str) -> list[str]:
        """The flags for ``compiler``. With g++, -fno-gnu-unique: a network library that is the
        first in the process to define one of libstdc++'s "unique" template statics (e.g. inside
        std::to_string) would otherwise be marked never-unloadable, and every dropped network
        of that kind would stay mapped (clang does not know the flag and needs none)."""
        if "clang" in _cxx_version(compiler).lower():
            return self.flags
        return [*self.flags, "-fno-gnu-unique"]

    def compile(self, source: Source, outdir: Path) -> Path:
        for name, text in source.files.items():
            (outdir / name).write_text(text)
        return self._build(outdir / source.entry, outdir / "network.so", int(source.meta.get("parts", 1)),
                           bool(source.meta.get("uses_onednn")), [outdir])

    def compile_batch(self, sources: list[Source], outdir: Path) -> Path:
        """Every network in one translation unit, one g++ run: each network's source is included
        in turn, renamed by the preprocessor (its own C++ namespace and C ABI names,
        :func:`batch_prefix`). Their headers are parsed once: for a small network that is most of
        a compile (by hand: about 0.45 of 0.55 s of g++ -O3 for a network of two element-wise ops), so an
        op-by-op test suite compiles hundreds of networks in a few runs."""
        lines = ["// Generated by sol-device-x86: several networks in one translation unit (a batch compile)."]
        folders = []
        for k, source in enumerate(sources):
            folder = outdir / f"net{k}"
            folder.mkdir()
            folders.append(folder)
            for name, text in source.files.items():
                (folder / name).write_text(text)
            renames = abi_renames(batch_prefix(k), f"sol_network_{k}")
            lines += [f"#define {old} {new}" for old, new in renames.items()]
            lines.append(f'#include "net{k}/{source.entry}"')
            lines += [f"#undef {old}" for old in renames]
        entry = outdir / "batch.cpp"
        entry.write_text("\n".join(lines) + "\n")
        uses_onednn = any(s.meta.get("uses_onednn") for s in sources)
        return self._build(entry, outdir / "networks.so", 1, uses_onednn, [outdir, *folders[:1]])

    def _build(self, entry: Path, artifact: Path, parts: int, uses_onednn: bool, folders: list[Path]) -> Path:
        """Compile ``entry`` (in ``parts`` side by side) and link ``artifact``, with the oneDNN
        runtime library where the network uses it."""
        compiler = checked_cxx()
        flags = self._flags(compiler)
        includes = [f"-I{folder}" for folder in folders]
        if not uses_onednn:
            objects = _compile_parts(compiler, flags, entry, parts, includes)
            _run([compiler, *flags, "-o", str(artifact), *map(str, objects)], str(entry))
            return artifact
        onednn = find_onednn()
        if onednn is None:
            raise CompileError("the network needs oneDNN, which is not installed")
        # Compile the network while the runtime library builds on another thread (if it is not
        # cached yet and the device's prepare() did not start it already), then link the two.
        RUNTIME.start()
        objects = _compile_parts(compiler, flags, entry, parts, [*includes, f"-I{onednn.include}"])
        runtime = RUNTIME.path()
        where = runtime.parent.resolve()
        # Linked, not preloaded by runtime.py: the network records its dependency (DT_NEEDED) and
        # where to find it (rpath), so its C ABI works from any program that dlopens it, without
        # Python. $ORIGIN/../<key> first: the runtime's cache entry next to the network's own,
        # which survives moving the whole cache directory; the absolute path covers a network
        # copied out of the cache.
        _run([compiler, *flags, "-o", str(artifact), *map(str, objects), f"-L{where}", f"-l{RUNTIME_NAME}",
              f"-Wl,-rpath,$ORIGIN/../{where.name}", f"-Wl,-rpath,{where}",
              f"-L{onednn.lib}", "-ldnnl", f"-Wl,-rpath,{onednn.lib}"], str(entry))
        for obj in objects:
            obj.unlink()
        return artifact
