"""The device "c": each network as one plain C99 translation unit, built with the system C
compiler into a shared object, loaded with ctypes.

Everything comes from ``sol.plugin_api``: the C-family generator (``Dialect``, ``CRenderer``,
``GroupLowering`` and its typed records) lowers fused groups; this module adds the dialect (the
defaults are plain C99 already: only the OpenMP pragma goes), the network template's context,
loop templates for the compute-bound ops the generator has no loop lowering for (claimed by
:class:`LoopBackend`, so they arrive as LIBRARY groups), the compiler and the runtime.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from sol.plugin_api import (
    Availability,
    Backend,
    CompileError,
    Compiler,
    CRenderer,
    Device,
    DeviceCapabilities,
    Dialect,
    Graph,
    Group,
    IndexOutOfRangeError,
    Node,
    Plan,
    Program,
    SolError,
    Source,
    ctype,
    numel,
    render_template,
)

PACKAGE = "sol_device_c"
ENTRY = "network.c"
# -ffp-contract=off: no fused multiply-adds, which would round differently from the references;
# -fno-strict-aliasing: the arena is one byte buffer that groups view as different element types.
FLAGS = ("-std=c99", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-strict-aliasing")
ERR_LEN = 512
# Ops the generator has no loop lowering for: their loops are this device's (templates/ops.j2).
LOOP_OPS = frozenset({"conv2d", "conv_transpose2d", "dense", "matmul"})
UNSUPPORTED = {op: "the example C device has no recurrent (loop over time) template"
               for op in ("lstm_recurrence", "gru_recurrence")}


class CDialect(Dialect):
    """Plain C99 with ``<math.h>``: the generator's defaults, without OpenMP (one thread per
    call; concurrent calls run side by side, each on its own memory)."""

    name = "c"
    parallel_pragma = ""
    recurrent = False


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


class LoopBackend(Backend):
    """Claims the compute-bound ops for the C device's own loop templates: the planner runs a
    compute-bound op only where a backend claims it (no epilogue: the element-wise ops after it
    form fused groups of their own)."""

    name = "c-loops"
    device = "c"

    def claims(self, node: Node, graph: Graph) -> bool:
        return node.op in LOOP_OPS and node.output.dtype in ("float32", "float64")


class NetworkRenderer(CRenderer):
    """The plan as the context of templates/network.c.j2."""

    def fused(self, g: Group) -> dict[str, Any]:
        ctx = super().fused(g)
        ctx["stages"] = ctx["lowered"].stages  # pointwise stages and typed op records (ops.j2)
        return ctx

    def library(self, g: Group) -> dict[str, Any]:
        node = g.anchor
        x, w, y = node.inputs[0], node.inputs[1], node.output
        s: dict[str, Any] = {"op": node.op, "T": ctype(y), "x": self.sym(x),
                             "w": self.sym(w), "y": self.sym(y),
                             "b": self.sym(node.inputs[2]) if len(node.inputs) > 2 else ""}
        if node.op in ("conv2d", "conv_transpose2d"):
            s.update(self._conv(node))
        elif node.op == "dense":
            s.update(R=numel(x.shape[:-1]), N=w.shape[0], K=w.shape[1])
        else:  # matmul: offsets of each output batch's operands (broadcast batch dims repeat one)
            batch = y.shape[:-2]
            s.update(M=x.shape[-2], K=x.shape[-1], N=w.shape[-1], B=numel(batch),
                     a_off=_batch_offsets(x.shape, batch), b_off=_batch_offsets(w.shape, batch))
        return {"kind": "library", "label": g.label, "title": self.title(g), "decls": self.decls(g),
                "comment": self.comment(1, node), "s": s}

    @staticmethod
    def _conv(node: Node) -> dict[str, Any]:
        """Sizes of a convolution: x (N, C, H, W); conv2d's weight (O, C/g, kh, kw), the
        transposed one's (C, O/g, kh, kw); y (N, O, OH, OW)."""
        a = node.attrs
        (pt, _), (pl, _) = a["padding"]
        n, c, h, wd = node.inputs[0].shape
        _, o, oh, ow = node.output.shape
        kh, kw = node.inputs[1].shape[2:]
        g = a["groups"]
        return {"N": n, "C": c, "H": h, "W": wd, "O": o, "OH": oh, "OW": ow, "kh": kh, "kw": kw, "CG": c // g,
                "OG": o // g, "sh": a["stride"][0], "sw": a["stride"][1], "dh": a["dilation"][0],
                "dw": a["dilation"][1], "pt": pt, "pl": pl}

    def render(self) -> Source:
        p = self.plan
        text = render_template(PACKAGE, "network.c.j2", name=p.graph.name, groups=self.groups(),
                               consts=self.consts())
        return Source({ENTRY: text}, entry=ENTRY)


def _batch_offsets(shape: tuple[int, ...], batch: tuple[int, ...]) -> list[int]:
    """Element offset of each of ``batch``'s matrices (row-major) in an operand of ``shape``,
    whose batch dims broadcast against ``batch``."""
    own = shape[:-2]
    index = np.arange(numel(own)).reshape((1,) * (len(batch) - len(own)) + own)
    return (np.broadcast_to(index, batch).reshape(-1) * numel(shape[-2:])).tolist()


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
            error = IndexOutOfRangeError if rc == 2 else SolError  # 2: a gather index out of range
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
