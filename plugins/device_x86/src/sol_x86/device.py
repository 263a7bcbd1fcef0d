"""The x86 device: renderer (jinja2 templates), g++ compiler and ctypes runtime, assembled."""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

from sol.plugin_api import (
    Availability,
    Compiler,
    DeployTarget,
    Device,
    DeviceCapabilities,
    Plan,
    Program,
    SolError,
    Source,
    physical_cores,
)
from sol_x86 import compiler as cc
from sol_x86 import render, runtime
from sol_x86.libraries import OneDNNBackend, find_onednn


def _layout() -> str:
    """Channels-last convolution regions (sol.planner.layout) where oneDNN's AVX-512 kernels
    (brgconv) compute in that layout anyway; ``SOL_X86_LAYOUT=nchw`` turns them off."""
    chosen = os.environ.get("SOL_X86_LAYOUT", "").strip().lower()
    if chosen in ("nchw", "nhwc"):
        return chosen
    return "nhwc" if has_avx512() else "nchw"


@functools.cache
def has_avx512() -> bool:
    # Read once: the planner asks for the capabilities per group.
    return "avx512f" in cc.cpu_flags()


class X86Device(Device):
    name = "x86"

    def __init__(self) -> None:
        self._compiler = cc.GxxCompiler()

    def availability(self) -> Availability:
        compiler = cc.cxx()
        if compiler is None:
            return Availability(False, "no C++ compiler (install g++ or set SOL_CXX)")
        flags = cc.cpu_flags()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
        return Availability(True, f"{os.path.basename(compiler)}, {isa}, {physical_cores()} cores")

    @functools.cached_property
    def dialect(self) -> render.X86Dialect:
        flags = cc.cpu_flags()
        return render.X86Dialect(vector_width=16 if "avx512f" in flags else 8 if "avx2" in flags else 4)

    @functools.cached_property
    def _capabilities(self) -> DeviceCapabilities:
        # What the C-family generator lowers (sol.lowering): ops.j2 has a macro for every loop
        # lowering, recurrent.j2 renders every recurrent op.
        return DeviceCapabilities(vector_width=self.dialect.vector_width, fusible_ops=self.dialect.fusible_ops(),
                                  local_bytes=192 * 1024, min_parallel=physical_cores(),
                                  recurrent_ops=self.dialect.recurrent_ops())

    @property
    def capabilities(self) -> DeviceCapabilities:
        # The layout follows SOL_X86_LAYOUT as it is when a network is planned.
        caps = self._capabilities
        layout = _layout()
        return caps if caps.preferred_layout == layout else dataclasses.replace(caps, preferred_layout=layout)

    @property
    def compiler(self) -> Compiler:
        return self._compiler

    def prepare(self) -> None:
        """Build the oneDNN runtime library (cc.RUNTIME) on a daemon thread: g++ runs on another
        core while the frontend traces the model; the first compile waits for it."""
        if cc.cxx() is not None and find_onednn() is not None:
            cc.RUNTIME.start()

    def render(self, plan: Plan) -> Source:
        return render.NetworkRenderer(plan, dialect=self.dialect).render()

    def deploy(self, target: DeployTarget) -> list[str]:
        """The plans as a C library without Python (``sol.deploy``): :mod:`sol_x86.deploy`."""
        from sol_x86 import deploy

        return deploy.deploy(self, target)

    def load(self, artifact: Path, plan: Plan, source: Source, prefix: str = "sol_") -> Program:
        if source.meta.get("uses_onednn"):
            # A network found in the cache needs its runtime library there too (found, or built
            # again if the cache lost it): the network's rpath points at that cache entry.
            runtime.preload(cc.RUNTIME.path())
        create_only = source.meta.get("create_only_params", [])
        if not source.meta.get("finite_only"):
            program = runtime.load(artifact, plan, self.name, prefix=prefix, create_only=create_only)
        else:
            # Finite-only fusions (sol_x86.libraries): exact while the inputs and parameters they
            # depend on are finite, which the program checks; an exact variant runs where they are not.
            program = runtime.load(artifact, plan, self.name, exact=lambda: self.exact_variant(plan),
                                   finite_params=source.meta["finite_params"], prefix=prefix, create_only=create_only)
        # Groups whose algorithm does fewer FLOPs than core counts (Winograd): sol.profiling.
        program.info["executed_flops"] = {int(i): float(f) for i, f in source.meta.get("executed_flops", [])}
        return program

    def load_batch(self, artifact: Path, index: int, plan: Plan, source: Source) -> Program:
        """Network ``index`` of a batch compile (GxxCompiler.compile_batch): its C ABI names carry
        the batch prefix; otherwise loaded as :meth:`load` does."""
        return self.load(artifact, plan, source, prefix=cc.batch_prefix(index))

    def exact_variant(self, plan: Plan) -> Program:
        """``plan``'s network planned again without finite-only fusions (the same passes' result,
        the same planner, oneDNN absorbing only the epilogues exact at NaN and infinity), compiled
        or found in the compile cache, and loaded."""
        from sol.plugin_api import build_program, replan
        from sol.plugin_api import plugin_roles as roles

        backends = [b.exact_variant() if isinstance(b, OneDNNBackend) else b
                    for b in roles().backends.for_device(self.name)]
        exact_plan = replan(plan, backends)
        source = render.NetworkRenderer(exact_plan, exact=True, dialect=self.dialect).render()
        if source.meta["finite_only"]:  # it would guard itself, and build its own exact variant
            raise SolError(f"x86: the exact variant of {plan.graph.name} has finite-only post-ops")
        return build_program(exact_plan, self, source, what=" (exact variant, for non-finite values)")
