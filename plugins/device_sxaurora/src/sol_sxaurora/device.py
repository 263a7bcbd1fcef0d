"""The VE device: renderer (jinja2 C templates), compiler (ncc / clang-VE / host emulation),
offload runtime (AVEO or emulated) and a roofline model, assembled."""

from __future__ import annotations

from pathlib import Path

from sol.plugin_api import (
    Availability,
    Compiler,
    DeployTarget,
    Device,
    DeviceCapabilities,
    Estimate,
    Group,
    Plan,
    Program,
    SolError,
    Source,
)
from sol_sxaurora import compiler as cc
from sol_sxaurora import offload, perfmodel, runtime
from sol_sxaurora.render import VECTOR_LANES, NetworkRenderer, VeDialect

CORES = 8
L2_BYTES = 256 * 1024  # per core: the budget for one fused group's per-iteration scratch

DIALECT = VeDialect()

EMULATED = "emulated on host (no Vector Engine found)"


class VeDevice(Device):
    """NEC SX-Aurora TSUBASA Vector Engine. Without a VE it still compiles real VE code (for
    inspection) and runs the same source emulated on the host, saying so."""

    name = "ve"

    def availability(self) -> Availability:
        try:
            node = offload.node_number()
        except SolError as exc:
            return Availability(False, str(exc))
        if offload.ve_present(node):
            ve_compiler = cc.ncc() or cc.ve_clang()
            if not offload.veo_installed():
                missing = "py-veo (AVEO) is not installed"
            elif ve_compiler is None:
                missing = "no VE compiler (NEC ncc or clang with the VE target) was found"
            else:
                return Availability(True, f"VE {node} (real hardware, {Path(ve_compiler).name}, AVEO)")
            if cc.host_cc() is None:
                return Availability(False, f"Vector Engine {node} found, but {missing}; no host C compiler for "
                                           "its emulation either (install gcc or set SOL_CC)")
            return Availability(True, f"emulated on host (Vector Engine {node} found, but {missing})", emulated=True)
        if cc.host_cc() is None:
            return Availability(False, "no Vector Engine found, and no host C compiler for its emulation "
                                       "(install gcc or set SOL_CC)")
        return Availability(True, EMULATED, emulated=True)

    @property
    def emulated(self) -> bool:
        return self.availability().emulated

    @property
    def capabilities(self) -> DeviceCapabilities:
        # What the C-family generator lowers (sol.lowering): ops_ncc.j2 / ops_vel.j2 have a macro
        # for every loop lowering, recurrent_*.j2 render every recurrent op.
        return DeviceCapabilities(vector_width=VECTOR_LANES, fusible_ops=DIALECT.fusible_ops(),
                                  local_bytes=L2_BYTES, min_parallel=CORES, recurrent_ops=DIALECT.recurrent_ops(),
                                  extra={"cores": CORES, "variant": cc.default_variant()},
                                  # Made by the planner only for devices preferring channels-last
                                  # convolutions (sol.planner.layout); this one computes NCHW.
                                  unsupported_ops={op: "channels-last ops are for devices whose convolution "
                                                       "library prefers them; the VE computes NCHW"
                                                   for op in ("conv2d_nhwc", "max_pool2d_nhwc", "avg_pool2d_nhwc")})

    @property
    def compiler(self) -> Compiler:
        return cc.VeCompiler(emulated=self.emulated)

    def render(self, plan: Plan) -> Source:
        variant = plan.options.get("ve_variant") or cc.default_variant()
        return NetworkRenderer(plan, variant, DIALECT).render()

    def deploy(self, target: DeployTarget) -> list[str]:
        """The plans as VE objects, a host loader over AVEO and the C API (``sol.deploy``):
        :mod:`sol_sxaurora.deploy`."""
        from sol_sxaurora import deploy

        return deploy.deploy(self, target)

    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        if self.emulated:
            proc: offload.OffloadProcess = offload.EmulatedProcess()
        else:
            proc = offload.veo_process(offload.node_number())
        info = {"variant": source.meta.get("variant"), "emulated": self.emulated, "runs_on": proc.description}
        ve_object = artifact.parent / "network.ve.o"
        if ve_object.exists():
            info["ve_object"] = str(ve_object)
        return runtime.load(proc, artifact, plan, self.name, info)

    def estimate(self, group: Group, plan: Plan) -> Estimate | None:
        return perfmodel.estimate(group, plan)

    def estimate_transfer(self, plan: Plan) -> Estimate | None:
        return perfmodel.transfer(plan)
