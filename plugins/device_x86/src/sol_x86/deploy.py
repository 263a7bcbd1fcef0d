"""Deployment on x86 (``sol.deploy(..., device="x86")``): the network as a C library.

The deployed library is the code ``sol.optimize`` runs: each plan rendered by the same templates
(``network.cpp.j2``), compiled with the same flags, with its C ABI (``sol_create``,
``sol_forward``...) renamed per network by the preprocessor (``-Dsol_create=sol_NAME_v0_create``)
so that several networks live in one library: one per batch size, and for a batch size whose
plan has finite-only fusions (:mod:`sol_x86.libraries`) its exact twin, which the C API runs
where the fast one reports a non-finite input (what :class:`sol_x86.runtime.FiniteGuard` does in
Python). A wrapper (``templates/deploy/api.cpp.j2``) gives the C API of ``NAME.h`` over them.

The oneDNN glue (``sol_x86_onednn.cpp``) is compiled into the library rather than shipped as
``libsol_x86_onednn.so``: the compile cache's copy records the absolute path of the Python
environment's oneDNN as its rpath, and nothing here can rewrite an rpath (no patchelf); inside
the library it needs no rpath of its own, and ``libNAME.a`` needs only oneDNN beside it. oneDNN's
own ``libdnnl.so.3`` is copied from its wheel (``libdnnl.so`` links to it, for ``-ldnnl``).

Weights: every parameter and large constant of every network, each distinct array once, 64-byte
aligned, after a 64-byte header: magic, format, the version stamp (a hash of the generated
sources and the weights' layout: the same stamp means the same code reading the same layout),
the data's size and a checksum the library checks (``check_weights`` in the wrapper). With
``embed_weights`` the same bytes are assembled into the library (``.incbin``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.plugin_api import (
    CompileError,
    DeployTarget,
    Plan,
    SolError,
    Source,
    c_string,
    physical_cores,
    progress_step,
    replan,
)
from sol.plugin_api import plugin_roles as roles
from sol.plugin_api import render_template as render
from sol_x86 import compiler as cc
from sol_x86.libraries import OneDNNBackend, find_onednn
from sol_x86.runtime import abi_renames

if TYPE_CHECKING:
    from sol_x86.device import X86Device

PACKAGE = "sol_x86"
FOLDER = "templates/deploy"
MAGIC = b"SOLDEPW1"
FORMAT = 1
HEADER_BYTES = 64
ALIGN = 64
# sol's dtypes as the header's NAME_<DTYPE> codes (api.h.j2).
DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "int64": 3, "int32": 4, "int8": 5, "uint8": 6, "bool": 7}
# The C API (api.h.j2) without the name: the only symbols libNAME.so exports.
API_FUNCTIONS = ("create", "create_from_memory", "create_embedded", "has_embedded_weights", "destroy", "run",
                 "error_message", "status_name", "num_inputs", "num_outputs", "input_name", "output_name",
                 "input_dtype", "output_dtype", "input_rank", "output_rank", "input_shape", "output_shape",
                 "input_bytes", "output_bytes", "num_batch_sizes", "batch_size", "workspace_bytes", "version_stamp",
                 "build_info")
WRAPPER_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-Wall")  # exports: the version script (.so), objcopy (.a)
ONEDNN_SONAME = "libdnnl.so.3"
# The checksum's constants (api.cpp.j2's checksum() uses the same).
_GOLDEN, _MIX1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_CHUNK = 1 << 20


@dataclass
class Variant:
    """One compiled network of the library: ``batch`` is the batch index it serves, ``exact``
    whether it is the exact twin run for non-finite inputs; ``params``: the weight blob of each
    of its parameters (the network's order: graph parameters, then constants)."""

    index: int
    batch: int
    exact: bool
    plan: Plan
    source: Source
    params: list[int] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"v{self.index}"


@dataclass
class Weights:
    """The distinct parameter arrays of all networks, laid out 64-byte aligned."""

    arrays: list[np.ndarray] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    size: int = 0
    _index: dict[bytes, int] = field(default_factory=dict)

    def add(self, array: Any) -> int:
        """The blob index of ``array`` (an equal one, bytes for bytes, is stored once)."""
        a = np.asarray(array, order="C")
        digest = hashlib.sha256(a.reshape(-1).view(np.uint8).data if a.size else b"").digest()
        if digest not in self._index:
            self._index[digest] = len(self.arrays)
            self.arrays.append(a)
            self.offsets.append(self.size)
            self.size += -(-max(a.nbytes, 1) // ALIGN) * ALIGN
        return self._index[digest]

    def data(self) -> bytearray:
        out = bytearray(self.size)
        for a, offset in zip(self.arrays, self.offsets):
            out[offset:offset + a.nbytes] = a.reshape(-1).view(np.uint8).tobytes()
        return out

    def layout(self) -> str:
        return ";".join(f"{o}:{a.nbytes}:{a.dtype.str}" for a, o in zip(self.arrays, self.offsets))


def checksum(data: bytes | bytearray) -> int:
    """The weights' checksum (api.cpp.j2): each little-endian 64-bit word ``w_i`` mixed with its
    position, ``x = w_i ^ (i * golden)``, ``x ^= x >> 31; x *= m; x ^= x >> 29``, summed modulo 2^64."""
    words = np.frombuffer(bytes(data), dtype="<u8")
    total = 0
    for start in range(0, len(words), _CHUNK):
        w = words[start:start + _CHUNK].astype(np.uint64)
        x = w ^ (np.arange(start, start + len(w), dtype=np.uint64) * _GOLDEN)
        x ^= x >> np.uint64(31)
        x *= _MIX1
        x ^= x >> np.uint64(29)
        total = (total + int(x.sum(dtype=np.uint64))) & 0xFFFFFFFFFFFFFFFF
    return total


def weights_file(stamp: int, weights: Weights) -> bytes:
    """Header (64 bytes: magic, format, header size, stamp, data size, checksum, blob count) + data."""
    data = weights.data()
    header = bytearray(HEADER_BYTES)
    header[0:8] = MAGIC
    header[8:12] = FORMAT.to_bytes(4, "little")
    header[12:16] = HEADER_BYTES.to_bytes(4, "little")
    header[16:24] = stamp.to_bytes(8, "little")
    header[24:32] = len(data).to_bytes(8, "little")
    header[32:40] = checksum(data).to_bytes(8, "little")
    header[40:44] = len(weights.arrays).to_bytes(4, "little")
    return bytes(header) + bytes(data)


# --- variants -------------------------------------------------------------------------------------


def variants(device: X86Device, plans: Sequence[Plan]) -> tuple[list[Variant], list[int], list[int]]:
    """The networks of the library, and per batch index the one run first (main) and its exact
    twin (-1: none). A plan with finite-only fusions gets its exact twin; where a parameter they
    depend on is not finite (checked now: the weights are fixed), only the exact network is built."""
    from sol_x86.render import NetworkRenderer

    found: list[Variant] = []
    main: list[int] = []
    exact: list[int] = []
    for k, the_plan in enumerate(plans):
        source = device.render(the_plan)
        twin = None
        if source.meta.get("finite_only"):
            backends = [b.exact_variant() if isinstance(b, OneDNNBackend) else b
                        for b in roles().backends.for_device(device.name)]
            exact_plan = replan(the_plan, backends)
            exact_source = NetworkRenderer(exact_plan, exact=True, dialect=device.dialect).render()
            params = the_plan.graph.params
            finite = all(not np.issubdtype(np.asarray(params[i].data).dtype, np.floating)
                         or bool(np.isfinite(np.asarray(params[i].data)).all())
                         for i in source.meta.get("finite_params", []))
            twin = Variant(len(found), k, True, exact_plan, exact_source)
            if not finite:  # the fast network's premise fails for every input: the exact one only
                found.append(twin)
                main.append(twin.index)
                exact.append(-1)
                continue
        found.append(Variant(len(found), k, False, the_plan, source))
        main.append(found[-1].index)
        if twin is not None:
            twin.index = len(found)
            found.append(twin)
        exact.append(twin.index if twin is not None else -1)
    return found, main, exact


def collect_weights(found: list[Variant]) -> Weights:
    weights = Weights()
    for v in found:
        g = v.plan.graph
        v.params = [weights.add(p.data) for p in [*g.params, *g.consts]]
    return weights


def version_stamp(name: str, sol_version: str, found: list[Variant], weights: Weights) -> int:
    """64 bits of a hash of what must agree between the library and a weights file."""
    h = hashlib.sha256()
    for part in (name, sol_version, weights.layout(), *(f"{v.index}:{v.params}" for v in found),
                 *(v.source.text for v in found)):
        h.update(part.encode())
        h.update(b"\0")
    return int.from_bytes(h.digest()[:8], "little")


# --- the C API's tables ---------------------------------------------------------------------------


def tensor_table(plans: Sequence[Plan], outputs: bool, name: str) -> list[dict[str, Any]]:
    """Per input (or output): its name (a C string literal), dtype code, rank, and per batch
    index its dimensions and byte count. The plans must agree on everything but the shapes."""
    first = plans[0].graph
    values = first.outputs if outputs else first.inputs
    kind = "output" if outputs else "input"
    table = []
    for i, v in enumerate(values):
        per_batch = [(p.graph.outputs if outputs else p.graph.inputs)[i] for p in plans]
        if any(w.dtype != v.dtype or w.type.rank != v.type.rank for w in per_batch):
            raise SolError(f"deploy {name}: {kind} {i} changes its dtype or rank between batch sizes")
        if v.dtype not in DTYPE_CODES:
            raise SolError(f"deploy {name}: {kind} {i} has dtype {v.dtype}, which the C API does not describe")
        table.append({"name": c_string(v.name), "text": v.name, "dtype": DTYPE_CODES[v.dtype], "dtype_name": v.dtype,
                      "rank": v.type.rank, "dims": [list(w.shape) for w in per_batch],
                      "bytes": [w.type.nbytes for w in per_batch], "file": f"{kind}{i}.bin",
                      "shapes": ", ".join("(" + ", ".join(map(str, w.shape)) + ")" for w in per_batch)})
    return table


def batch_values(target: DeployTarget, plans: Sequence[Plan]) -> list[int]:
    """The batch size of each plan: as asked, or (example inputs as given) the first input's
    first dimension (0 for a model without inputs or with a scalar one)."""
    out = []
    for b, p in zip(target.batch_sizes, plans):
        if b is not None:
            out.append(b)
        else:
            inputs = p.graph.inputs
            out.append(inputs[0].shape[0] if inputs and inputs[0].type.rank else 0)
    return out


# --- building -------------------------------------------------------------------------------------


def _renames(name: str, v: Variant) -> list[str]:
    renames = abi_renames(f"sol_{name}_{v.prefix}_", f"sol_{name}_{v.prefix}_ns")
    return [f"-D{old}={new}" for old, new in renames.items()]


def _template_text(file: str) -> str:
    return resources.files(PACKAGE).joinpath("templates", file).read_text()


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    except OSError as exc:
        raise CompileError(f"cannot run {cmd[0]!r} for {what}: {exc}") from exc
    if out.returncode != 0:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-40:])
        raise CompileError(f"{cmd[0]} failed (exit {out.returncode}) on {what}:\n{tail}\ncommand: {' '.join(cmd)}")


def compile_objects(found: list[Variant], name: str, build: Path, onednn_include: Path | None,
                    extra_units: list[tuple[list[str], Path]]) -> list[Path]:
    """Compile every network (each in its parts, as the device does) and the extra units, side by
    side on the machine's cores; return the object files."""
    compiler = cc.checked_cxx()
    flags = cc.GxxCompiler()._flags(compiler)
    jobs: list[tuple[list[str], str]] = []
    objects: list[Path] = []
    includes = [f"-I{build}"] + ([f"-I{onednn_include}"] if onednn_include else [])
    for v in found:
        folder = build / v.prefix
        folder.mkdir()
        for file, text in v.source.files.items():
            (folder / file).write_text(text)
        entry = folder / v.source.entry
        parts = int(v.source.meta.get("parts", 1))
        for k in range(parts):
            obj = folder / (f"network.part{k}.o" if parts > 1 else "network.o")
            part = [f"-DSOL_PART={k}"] if parts > 1 else []
            jobs.append(([compiler, *flags, *_renames(name, v), *part, "-c", "-o", str(obj), str(entry),
                          f"-I{folder}", *includes], f"{name}: network {v.index} ({entry.name})"))
            objects.append(obj)
    for cmd, obj in extra_units:
        jobs.append((cmd, obj.name))
        objects.append(obj)
    workers = max(1, min(physical_cores(), len(jobs)))
    with ThreadPoolExecutor(max_workers=workers) as pool, progress_step(f"compiling {name}: {len(jobs)} units",
                                                                          total=len(jobs)) as step:
        futures = [pool.submit(_run_counted, cmd, what, step) for cmd, what in jobs]
        for f in futures:
            f.result()
    return objects


def _run_counted(cmd: list[str], what: str, step: Any) -> None:
    _run(cmd, what)
    step.advance()


def deploy(device: X86Device, target: DeployTarget) -> list[str]:
    """Write ``target`` into ``target.directory`` (see the module doc); return the names written."""
    name, out = target.name, target.directory
    compiler = cc.checked_cxx()
    plans = target.plans
    found, main, exact = variants(device, plans)
    weights = collect_weights(found)
    stamp = version_stamp(name, target.sol_version, found, weights)
    blob = weights_file(stamp, weights)
    uses_onednn = any(v.source.meta.get("uses_onednn") for v in found)
    onednn = find_onednn() if uses_onednn else None
    if uses_onednn and onednn is None:
        raise CompileError("the network needs oneDNN, which is not installed")
    inputs = tensor_table(plans, False, name)
    outputs = tensor_table(plans, True, name)
    sizes = batch_values(target, plans)
    cpu = cc.cpu_signature().rsplit(" ", 1)[0]
    context: dict[str, Any] = {
        "name": name, "prefix": name.upper(), "sol_version": target.sol_version, "stamp": f"0x{stamp:016x}",
        "model": plans[0].graph.name, "inputs": inputs, "outputs": outputs, "batch_sizes": sizes,
        "max_rank": max([t["rank"] for t in inputs + outputs] + [1]), "embedded": target.embed_weights,
        "variants": [{"index": v.index, "batch": sizes[v.batch], "exact": v.exact, "params": v.params}
                     for v in found],
        "main": main, "exact": exact, "blobs": [{"offset": o} for o in weights.offsets], "data_bytes": weights.size,
        "max_params": max([len(v.params) for v in found] + [1]),
        "build_info": c_string(f"{name}: sol {target.sol_version}, device x86 ({cpu}), "
                               f"{os.path.basename(compiler)} {cc._cxx_version(compiler)}", limit=None),
        "cpu": cpu, "onednn": uses_onednn, "weights_arg": "--embedded" if target.embed_weights else f"{name}.weights",
        "static_libs": f"{'-L. -ldnnl ' if uses_onednn else ''}-fopenmp -lstdc++ -lm",
    }
    header = render(PACKAGE, "api.h.j2", folder=FOLDER, **context)
    wrapper = render(PACKAGE, "api.cpp.j2", folder=FOLDER, **context)
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sol-deploy-build-") as tmp:
        build = Path(tmp)
        (build / f"{name}.h").write_text(header)
        (build / f"{name}.cpp").write_text(wrapper)
        (build / f"{name}.weights").write_bytes(blob)
        units = [([compiler, *WRAPPER_FLAGS, "-c", "-o", str(build / f"{name}.o"), str(build / f"{name}.cpp"),
                   f"-I{build}"], build / f"{name}.o")]
        if target.embed_weights:
            (build / "weights.S").write_text(render(PACKAGE, "weights.S.j2", folder=FOLDER, **context))
            # .incbin finds NAME.weights through the assembler's include path.
            units.append(([compiler, "-c", "-o", str(build / "weights.o"), str(build / "weights.S"), f"-Wa,-I{build}"],
                          build / "weights.o"))
        if uses_onednn and onednn is not None:
            for file in cc.RUNTIME_FILES:
                (build / file).write_text(_template_text(file))
            # -fno-gnu-unique: its function-local statics become weak symbols, which libNAME.a can
            # make local (a "unique" symbol stays global, shared with any other deployed library).
            flags = [f for f in cc.RUNTIME_FLAGS if f != "-shared"]
            flags += [] if "clang" in cc._cxx_version(compiler).lower() else ["-fno-gnu-unique"]
            units.append(([compiler, *flags, "-c", "-o", str(build / "sol_x86_onednn.o"),
                           str(build / cc.RUNTIME_SOURCE), f"-I{build}", f"-I{onednn.include}"],
                          build / "sol_x86_onednn.o"))
        objects = compile_objects(found, name, build, onednn.include if onednn else None, units)
        if uses_onednn and onednn is not None:
            _copy_onednn(onednn.lib, out)
            written += [ONEDNN_SONAME, "libdnnl.so"]
        exports = build / f"{name}.map"
        exports.write_text("{\n  global:\n" + "".join(f"    {name}_{f};\n" for f in API_FUNCTIONS)
                           + "  local: *;\n};\n")
        dnnl = [f"-L{out}", "-ldnnl"] if uses_onednn else []
        with progress_step(f"linking lib{name}.so and lib{name}.a"):
            _run([compiler, "-shared", "-fopenmp", "-o", str(out / f"lib{name}.so"), *map(str, objects), *dnnl,
                  f"-Wl,-soname,lib{name}.so", "-Wl,-rpath,$ORIGIN", f"-Wl,--version-script={exports}",
                  "-Wl,--no-undefined", "-Wl,--as-needed"], f"lib{name}.so")
            _static_library(objects, out / f"lib{name}.a", name, build)
        written += [f"lib{name}.so", f"lib{name}.a", f"{name}.h"]
        shutil.copy(build / f"{name}.h", out / f"{name}.h")
        if not target.embed_weights:
            (out / f"{name}.weights").write_bytes(blob)
            written.append(f"{name}.weights")
        src = out / "src"
        src.mkdir()
        for v in found:
            for file, text in v.source.files.items():
                if file != cc.RUNTIME_HEADER:
                    (src / f"{v.prefix}_{file}").write_text(text)
        for file in (f"{name}.cpp", *(cc.RUNTIME_FILES if uses_onednn else ())):
            shutil.copy(build / file, src / file)
        written.append("src")
    files = _describe_files(name, target.embed_weights, uses_onednn, found, sizes)
    context["files"] = files
    (out / "example.c").write_text(render(PACKAGE, "example.c.j2", folder=FOLDER, **context))
    (out / "Makefile").write_text(render(PACKAGE, "Makefile.j2", folder=FOLDER, **context))
    (out / "CMakeLists.txt").write_text(render(PACKAGE, "CMakeLists.txt.j2", folder=FOLDER, **context))
    (out / "README.md").write_text(render(PACKAGE, "README.md.j2", folder=FOLDER, **context))
    written += ["example.c", "Makefile", "CMakeLists.txt", "README.md"]
    _build_example(out, name, target.embed_weights)
    written.append("example")
    return written


def _static_library(objects: list[Path], archive: Path, name: str, build: Path) -> None:
    """``libNAME.a``: the objects joined into one (``ld -r``) whose symbols other than the C API
    are made local, so that the networks' and oneDNN glue's names cannot clash with a program's
    (or another deployed library's) when linked statically."""
    joined = build / f"{name}_all.o"
    _run(["ld", "-r", "-o", str(joined), *map(str, objects)], f"lib{name}.a (ld -r)")
    keep = build / f"{name}.exports"
    keep.write_text("".join(f"{name}_{f}\n" for f in API_FUNCTIONS))
    _run(["objcopy", f"--keep-global-symbols={keep}", str(joined)], f"lib{name}.a (objcopy)")
    _run(["ar", "rcs", str(archive), str(joined)], f"lib{name}.a (ar)")


def _copy_onednn(lib: Path, out: Path) -> None:
    """oneDNN's library beside the deployed one (a copy: the wheel's file stays untouched) and
    ``libdnnl.so`` linking to it, what ``-ldnnl`` finds."""
    source = lib / ONEDNN_SONAME
    if not source.exists():
        candidates = sorted(lib.glob("libdnnl.so.*"))
        if not candidates:
            raise CompileError(f"oneDNN's {ONEDNN_SONAME} is not in {lib}")
        source = candidates[0]
    shutil.copy2(source.resolve(), out / ONEDNN_SONAME)
    os.symlink(ONEDNN_SONAME, out / "libdnnl.so")


def _describe_files(name: str, embedded: bool, onednn: bool, found: list[Variant],
                    sizes: list[int]) -> list[tuple[str, str]]:
    files = [(f"lib{name}.so", "the shared library (exports only the functions of the header)"),
             (f"lib{name}.a", "the static library (one object; links with -ldnnl -fopenmp -lstdc++ -lm)"),
             (f"{name}.h", "the C API, documented")]
    if not embedded:
        files.append((f"{name}.weights", "the weights (header with version stamp, size and checksum; then the data)"))
    if onednn:
        files += [(ONEDNN_SONAME, "oneDNN (from its wheel, onednn-cpu-gomp)"), ("libdnnl.so", "link to it, for -ldnnl")]
    nets = ", ".join(f"v{v.index}: batch {sizes[v.batch]}{' exact' if v.exact else ''}" for v in found)
    files += [("example.c", "an example program; `example` is it, built"),
              ("Makefile", "builds the example (`make`, `make static`)"),
              ("CMakeLists.txt", "builds the example with CMake; an imported target for your project"),
              ("src/", f"the generated sources, for reading ({nets})"),
              ("sol-deploy.json", "what sol wrote here (a later deployment with overwrite replaces these files)")]
    return files


def _build_example(out: Path, name: str, embedded: bool) -> None:
    """Build ``example.c`` as the README says and run it once on zeros: a deployment whose
    example does not build or run is an error now, not in the user's hands. A checked
    factorization's error on those zeros (``NAME_ERR_LINALG``: a zero matrix is singular) is
    the library running as it should."""
    cc_path = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc_path is None:
        raise CompileError("no C compiler (gcc) to build the deployment's example")
    _run([cc_path, "-O2", "-Wall", "-o", "example", "example.c", "-I.", "-L.", f"-l{name}", "-Wl,-rpath,$ORIGIN"],
         "example.c", cwd=out)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run = subprocess.run(["./example", "--embedded" if embedded else f"{name}.weights"], cwd=out, env=env,
                         capture_output=True, text=True, check=False)
    if run.returncode != 0 and f"{name}_run: {name.upper()}_ERR_LINALG: " not in run.stderr:
        raise CompileError(f"the deployed example failed (exit {run.returncode}):\n{run.stderr or run.stdout}")

