"""The device "c": each network as one plain C99 translation unit, built with the system C
compiler into a shared object, loaded with ctypes.

Everything comes from ``sol.plugin_api``: the C-family generator (``Dialect``, ``CRenderer``,
its typed records and shipped op templates) lowers fused groups, and its reference loops run the
compute-bound ops (``reference_loops``, registered in plugin.py); this module adds the dialect
(the defaults are plain C99 already: only the OpenMP pragma goes), the network template's
context, the compiler and the runtime.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from sol.plugin_api import (
    Availability,
    CompileError,
    Compiler,
    CRenderer,
    Device,
    DeviceCapabilities,
    Dialect,
    IndexOutOfRangeError,
    LinAlgError,
    Plan,
    Program,
    SolError,
    Source,
    render_template,
)

PACKAGE = "sol_device_c"
ENTRY = "network.c"
# -ffp-contract=off: no fused multiply-adds, which would round differently from the references;
# -fno-strict-aliasing: the arena is one byte buffer that groups view as different element types.
# -fno-delete-null-pointer-checks: GCC 12 can otherwise drop a call to a function whose stores
# all address one buffer (its loop optimizer rewrites them as null-based addresses).
FLAGS = ("-std=c99", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing",
         "-fno-delete-null-pointer-checks")
ERR_LEN = 512
# sol_forward's return codes that name a failure in the input data: 2 an index out of range,
# 4 a checked factorization (a singular matrix).
ERRORS: dict[int, type[SolError]] = {2: IndexOutOfRangeError, 4: LinAlgError}
UNSUPPORTED = {op: "the example C device has no recurrent (loop over time) template"
               for op in ("lstm_recurrence", "gru_recurrence")}
# Made by the planner only for devices whose convolution library prefers channels-last.
UNSUPPORTED["conv2d_nhwc"] = "the example C device computes NCHW: no channels-last convolution"


class CDialect(Dialect):
    """Plain C99 with ``<math.h>``: the generator's defaults, without OpenMP (one thread per
    call; concurrent calls run side by side, each on its own memory)."""

    name = "c"
    parallel_pragma = ""
    recurrent = False
    linalg_errors = True  # network.c.j2 defines sol_linalg_error


DIALECT = CDialect()


def find_cc() -> str | None:
    """``$SOL_CC``, else the system's ``cc`` or ``gcc``."""
    return os.environ.get("SOL_CC") or shutil.which("cc") or shutil.which("gcc")


@functools.lru_cache(maxsize=8)
def cc_version(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "unknown"


class CCompiler(Compiler):
    def __init__(self, cc: str) -> None:
        self.cc = cc

    def identity(self) -> str:
        """Compiler, version and flags: a new compiler or flag never reuses a cached object."""
        return f"{self.cc} ({cc_version(self.cc)}) {' '.join(FLAGS)}"

    def compile(self, source: Source, outdir: Path) -> Path:
        for name, text in source.files.items():  # our own file names (ENTRY), never a model's
            (outdir / name).write_text(text)
        artifact = outdir / "network.so"
        cmd = [self.cc, *FLAGS, "-o", str(artifact), str(outdir / source.entry), "-lm"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise CompileError(f"c: {' '.join(cmd)} failed (exit {out.returncode}):\n{out.stderr[-4000:]}")
        return artifact


class NetworkRenderer(CRenderer):
    """The plan as the context of templates/network.c.j2: the generator's group contexts (fused
    groups, and the reference loops' LIBRARY groups) and the dialect its shipped templates read."""

    def render(self) -> Source:
        text = render_template(PACKAGE, "network.c.j2", name=self.plan.graph.name, groups=self.groups(),
                               consts=self.consts(), dialect=self.dialect, helpers=self.helpers())
        return Source({ENTRY: text}, entry=ENTRY)


class Network:
    """One loaded network. Stateless on the C side: each call brings its own arena, outputs and
    error buffer, so calls from several threads run at once (ctypes releases the GIL)."""

    def __init__(self, artifact: Path, plan: Plan) -> None:
        g = plan.graph
        self.name = g.name
        self.lib = ctypes.CDLL(str(artifact))
        self.forward = self.lib.sol_forward
        self.forward.restype = ctypes.c_int
        self.forward.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_long]
        # Parameters stay where they are (host memory is this device's memory): a table of pointers.
        self.params = [np.ascontiguousarray(v.data) for v in g.params]
        self.param_table = _table([a.ctypes.data for a in self.params])
        self.arena_bytes = plan.memory.arena_bytes
        self.out_types = [(v.shape, np.dtype(v.dtype)) for v in g.outputs]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = [np.empty(shape, dtype) for shape, dtype in self.out_types]
        arena = np.empty(self.arena_bytes + 64, np.uint8)
        base = arena.ctypes.data + (-arena.ctypes.data % 64)  # 64-byte aligned, as the plan's offsets
        err = ctypes.create_string_buffer(ERR_LEN)
        rc = self.forward(self.param_table, _table([a.ctypes.data for a in inputs]),
                          _table([a.ctypes.data for a in outputs]), base, err, ERR_LEN)
        if rc != 0:
            error = ERRORS.get(rc, SolError)
            raise error(f"sol c: {self.name}: {err.value.decode(errors='replace')}")
        return outputs


def _table(addresses: list[int]) -> ctypes.Array[ctypes.c_void_p]:
    return (ctypes.c_void_p * max(len(addresses), 1))(*addresses)


class CDevice(Device):
    name = "c"

    def availability(self) -> Availability:
        cc = find_cc()
        if cc is None:
            return Availability(False, "no C compiler (install gcc or set SOL_CC)")
        return Availability(True, f"plain C99, {os.path.basename(cc)} ({cc_version(cc)}), one thread per call")

    @functools.cached_property
    def capabilities(self) -> DeviceCapabilities:
        return DeviceCapabilities(vector_width=1, fusible_ops=DIALECT.fusible_ops(), local_bytes=64 * 1024,
                                  unsupported_ops=UNSUPPORTED)

    @property
    def compiler(self) -> Compiler:
        cc = find_cc()
        if cc is None:
            raise SolError("c: no C compiler (install gcc or set SOL_CC)")
        return CCompiler(cc)

    def render(self, plan: Plan) -> Source:
        return NetworkRenderer(plan, DIALECT).render()

    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        net = Network(artifact, plan)
        g = plan.graph
        return Program(g.name, self.name, [v.name for v in g.inputs], [v.type for v in g.inputs],
                       [v.type for v in g.outputs], net, info={"library": str(artifact)}, keepalive=net)
