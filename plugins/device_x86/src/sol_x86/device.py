"""The x86 device: renderer (jinja2 templates), g++ compiler and ctypes runtime, assembled."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from sol.plugin_api import (
    Availability,
    Compiler,
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
    def capabilities(self) -> DeviceCapabilities:
        # What the C-family generator lowers (sol.lowering): ops.j2 has a macro for every loop
        # lowering, recurrent.j2 renders every recurrent op.
        return DeviceCapabilities(vector_width=self.dialect.vector_width, fusible_ops=self.dialect.fusible_ops(),
                                  local_bytes=192 * 1024, min_parallel=physical_cores(),
                                  recurrent_ops=self.dialect.recurrent_ops())

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

    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        if source.meta.get("uses_onednn"):
            # A network found in the cache needs its runtime library there too (found, or built
            # again if the cache lost it): the network's rpath points at that cache entry.
            runtime.preload(cc.RUNTIME.path())
        if not source.meta.get("finite_only"):
            return runtime.load(artifact, plan, self.name)
        # Finite-only fusions (sol_x86.libraries): exact while the inputs and parameters they
        # depend on are finite, which the program checks; an exact variant runs where they are not.
        return runtime.load(artifact, plan, self.name, exact=lambda: self.exact_variant(plan),
                            finite_params=source.meta["finite_params"])

    def exact_variant(self, plan: Plan) -> Program:
        """``plan``'s network planned again without finite-only fusions (the same passes' result,
        the same planner, oneDNN absorbing only the epilogues exact at NaN and infinity), compiled
        or found in the compile cache, and loaded."""
        from sol import cache, progress
        from sol.autodiff.graphs import clone_graph
        from sol.planner.partition import plan_graph
        from sol.plugin_api import plugin_records as records
        from sol.plugin_api import plugin_roles as roles

        graph, _ = clone_graph(plan.graph)  # the planner rewrites its graph; plan.graph stays as it is
        backends = [b.exact_variant() if isinstance(b, OneDNNBackend) else b
                    for b in roles().backends.for_device(self.name)]
        exact_plan = plan_graph(graph, self, backends, plan.options)
        source = render.NetworkRenderer(exact_plan, exact=True, dialect=self.dialect).render()
        if source.meta["finite_only"]:  # it would guard itself, and build its own exact variant
            raise SolError(f"x86: the exact variant of {graph.name} has finite-only post-ops")
        # The compile cache's key as core makes it (sol.api.compile_graph): source, compiler, plugins.
        versions = ";".join(f"{r.name}={r.version}" for r in sorted(records(), key=lambda r: r.name))
        key = cache.key_of(source.text, self.compiler.identity(), versions)

        def build(tmp: Path) -> Path:
            with progress.step(f"compiling {graph.name} (exact variant, for non-finite values) for {self.name}"):
                return self.compiler.compile(source, tmp)

        artifact, cached = cache.get_or_build(key, build)
        program = self.load(artifact, exact_plan, source)
        program.info.update(plan=exact_plan, cached=cached, cache_key=key, artifact=str(artifact),
                            source_meta=source.meta)
        return program
