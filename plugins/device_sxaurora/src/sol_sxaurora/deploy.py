"""Deployment on the Vector Engine (``sol.deploy(..., device="ve")``).

What it writes: the VE C source of each network (one per batch size: the device's
``network.c.j2``, its C ABI renamed to ``sol_NAME_v<k>_*`` by ``#define`` lines in front), each
compiled here into a VE object (``NAME_v<k>.ve.o``: real VE machine code, clang-19
``--target=ve-unknown-linux-gnu -c``, or ncc where installed); the host-side loader
``NAME_host.cpp``, which implements the C API of ``NAME.h`` (the x86 deployment's API) over AVEO;
the weights file (the x86 format: header with version stamp, size and checksum); ``example.c``,
a Makefile and a README. What it cannot do here: link ``libNAME_ve.so`` (linking for the VE needs
NEC's VE binutils or ncc, which only a VE host has) nor build the loader (it needs AVEO's
``ve_offload.h`` and ``libveo``): the Makefile does both on a VE host.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.plugin_api import CompileError, DeployTarget, Plan, SolError, Source, c_string, progress_step
from sol.plugin_api import render_template as render
from sol_sxaurora import compiler as cc

if TYPE_CHECKING:
    from sol_sxaurora.device import VeDevice

PACKAGE = "sol_sxaurora"
FOLDER = "templates/deploy"
MAGIC = b"SOLDEPW1"
FORMAT = 1
HEADER_BYTES = 64
ALIGN = 64
DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "int64": 3, "int32": 4, "int8": 5, "uint8": 6, "bool": 7}
ABI_SYMBOLS = ("sol_abi_version", "sol_num_params", "sol_workspace_bytes", "sol_create", "sol_forward", "sol_destroy")
_GOLDEN, _MIX1 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)
_WORKSPACE = re.compile(r"return \(long\)SOL_NET_BYTES \+ (\d+)L;")


def checksum(data: bytes | bytearray) -> int:
    """The weights' checksum, as the loader computes it (host.cpp.j2; the x86 deployment's too)."""
    words = np.frombuffer(bytes(data), dtype="<u8")
    x = words.astype(np.uint64) ^ (np.arange(len(words), dtype=np.uint64) * _GOLDEN)
    x ^= x >> np.uint64(31)
    x *= _MIX1
    x ^= x >> np.uint64(29)
    return int(x.sum(dtype=np.uint64))


def _weights(plans: Sequence[Plan]) -> tuple[list[np.ndarray], list[int], list[list[int]], int]:
    """The distinct parameter arrays (the VE network takes its graph parameters; its constants
    are literals), their 64-byte aligned offsets, each network's blob indices, and the size."""
    arrays: list[np.ndarray] = []
    offsets: list[int] = []
    index: dict[bytes, int] = {}
    per_network: list[list[int]] = []
    size = 0
    for p in plans:
        blobs = []
        for v in p.graph.params:
            a = np.asarray(v.data, order="C")
            digest = hashlib.sha256(a.reshape(-1).view(np.uint8).data if a.size else b"").digest()
            if digest not in index:
                index[digest] = len(arrays)
                arrays.append(a)
                offsets.append(size)
                size += -(-max(a.nbytes, 1) // ALIGN) * ALIGN
            blobs.append(index[digest])
        per_network.append(blobs)
    return arrays, offsets, per_network, size


def _weights_file(stamp: int, arrays: list[np.ndarray], offsets: list[int], size: int) -> bytes:
    data = bytearray(size)
    for a, offset in zip(arrays, offsets):
        data[offset:offset + a.nbytes] = a.reshape(-1).view(np.uint8).tobytes()
    header = bytearray(HEADER_BYTES)
    header[0:8] = MAGIC
    header[8:12] = FORMAT.to_bytes(4, "little")
    header[12:16] = HEADER_BYTES.to_bytes(4, "little")
    header[16:24] = stamp.to_bytes(8, "little")
    header[24:32] = size.to_bytes(8, "little")
    header[32:40] = checksum(data).to_bytes(8, "little")
    header[40:44] = len(arrays).to_bytes(4, "little")
    return bytes(header) + bytes(data)


def _tensors(plans: Sequence[Plan], outputs: bool, name: str) -> list[dict[str, Any]]:
    first = plans[0].graph
    values = first.outputs if outputs else first.inputs
    table = []
    for i, v in enumerate(values):
        per_batch = [(p.graph.outputs if outputs else p.graph.inputs)[i] for p in plans]
        if any(w.dtype != v.dtype or w.type.rank != v.type.rank for w in per_batch) or v.dtype not in DTYPE_CODES:
            raise SolError(f"deploy {name}: {'output' if outputs else 'input'} {i} has a dtype or rank the C API "
                           f"cannot describe across batch sizes")
        table.append({"name": c_string(v.name), "text": v.name, "dtype": DTYPE_CODES[v.dtype], "rank": v.type.rank,
                      "dims": [list(w.shape) for w in per_batch], "bytes": [w.type.nbytes for w in per_batch]})
    return table


def _renamed(name: str, k: int, source: Source) -> str:
    """The network's source with its C ABI renamed for network ``k`` of the library."""
    lines = [f"/* network {k} of {name}: its C ABI renamed so that several networks share one VE library */"]
    lines += [f"#define {sym} sol_{name}_v{k}_{sym.removeprefix('sol_')}" for sym in ABI_SYMBOLS]
    return "\n".join(lines) + "\n" + source.files[source.entry]


def _ve_compile(source: Path, obj: Path) -> str:
    """Compile ``source`` into a VE object; return the compiler's description."""
    ncc = cc.ncc()
    clang = cc.ve_clang()
    if ncc is not None:
        cmd = [ncc, *cc.NCC_FLAGS, "-fpic", "-c", "-o", str(obj), str(source)]
    elif clang is not None:
        cmd = [clang, *cc.CLANG_FLAGS, "-c", "-o", str(obj), str(source)]
    else:
        raise CompileError("no compiler for the Vector Engine: install NEC's ncc (or set SOL_NCC) or LLVM with the "
                           "VE target (clang-19)")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-30:])
        raise CompileError(f"{cmd[0]} failed (exit {done.returncode}) on {source.name}:\n{tail}\n"
                           f"command: {shlex.join(cmd)}")
    return cc.version(cmd[0])


def deploy(device: VeDevice, target: DeployTarget) -> list[str]:
    """Write ``target`` into ``target.directory`` (see the module doc); return the names written."""
    name, out = target.name, target.directory
    if target.embed_weights:
        raise SolError("deploy on ve: the weights cannot be embedded (the host loader copies them to the VE from "
                       f"{name}.weights); deploy without embed_weights")
    plans = target.plans
    sources = [device.render(p) for p in plans]
    arrays, offsets, blobs, size = _weights(plans)
    h = hashlib.sha256()
    for part in (name, target.sol_version, str(offsets), str([a.nbytes for a in arrays]), str(blobs),
                 *(s.text for s in sources)):
        h.update(part.encode() + b"\0")
    stamp = int.from_bytes(h.digest()[:8], "little")
    sizes = [b if b is not None else (p.graph.inputs[0].shape[0] if p.graph.inputs and p.graph.inputs[0].type.rank
                                      else 0) for b, p in zip(target.batch_sizes, plans)]
    src = out / "src"
    src.mkdir()
    objects = []
    compiler = ""
    with progress_step(f"compiling {name} for the VE: {len(plans)} network{'s' if len(plans) > 1 else ''}",
                       total=len(plans)) as step:
        for k, source in enumerate(sources):
            c_file = src / f"{name}_v{k}.c"
            c_file.write_text(_renamed(name, k, source))
            obj = out / f"{name}_v{k}.ve.o"
            compiler = _ve_compile(c_file, obj)
            objects.append(obj.name)
            step.advance()
    workspace = []
    for s in sources:
        found = _WORKSPACE.search(s.files[s.entry])
        workspace.append(int(found.group(1)) + 1024 if found else 0)  # + the network's own state (< 1 KiB)
    inputs, outputs = _tensors(plans, False, name), _tensors(plans, True, name)
    variant = str(sources[0].meta.get("variant", ""))
    ve_link = cc.ncc() or "clang-19 --target=ve-unknown-linux-gnu"
    files = [(f"{name}.h", "the C API, documented (the same as an x86 deployment's)"),
             (f"{name}_host.cpp", "the host-side loader: the C API over AVEO (built into lib" + name + ".so)"),
             *((o, "a network's VE object (ELF for the NEC VE)") for o in objects),
             (f"{name}.weights", "the weights (header with version stamp, size and checksum; then the data)"),
             ("example.c", "an example program"), ("Makefile", "builds everything on a VE host"),
             ("src/", "the VE C sources of the networks"), ("sol-deploy.json", "what sol wrote here")]
    context: dict[str, Any] = {
        "name": name, "prefix": name.upper(), "sol_version": target.sol_version, "stamp": f"0x{stamp:016x}",
        "model": plans[0].graph.name, "inputs": inputs, "outputs": outputs, "batch_sizes": sizes,
        "max_rank": max([t["rank"] for t in inputs + outputs] + [1]), "embedded": False,
        "variants": [{"index": k, "batch": sizes[k], "exact": False, "params": blobs[k]} for k in range(len(plans))],
        "main": list(range(len(plans))), "exact": [-1] * len(plans), "blobs": [{"offset": o} for o in offsets],
        "data_bytes": size, "max_params": max([len(b) for b in blobs] + [1]), "workspace": workspace,
        "build_info": c_string(f"{name}: sol {target.sol_version}, device ve ({variant}), {compiler}", limit=None),
        "objects": objects, "ve_compiler": compiler, "ve_link": ve_link, "variant": variant, "files": files,
    }
    (out / f"{name}.weights").write_bytes(_weights_file(stamp, arrays, offsets, size))
    for template, file in (("api.h.j2", f"{name}.h"), ("host.cpp.j2", f"{name}_host.cpp"),
                           ("example.c.j2", "example.c"), ("Makefile.j2", "Makefile"), ("README.md.j2", "README.md")):
        (out / file).write_text(render(PACKAGE, template, folder=FOLDER, **context))
    return [f"{name}.h", f"{name}_host.cpp", *objects, f"{name}.weights", "example.c", "Makefile", "README.md", "src"]
