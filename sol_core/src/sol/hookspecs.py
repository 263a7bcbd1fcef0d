"""The hooks a sol plugin may implement, grouped by the phase in which core calls them.

Every plugin, in-tree or third-party, uses exactly these. A plugin module declares the plugin-API
range it supports as ``SOL_PLUGIN_API = ">=1.0,<2"``; core refuses a plugin whose range excludes
:data:`sol.plugins.PLUGIN_API` and names both versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from sol.commands import CommandRegistry
    from sol.ir import Graph
    from sol.ops.registry import OpRegistry
    from sol.passes.manager import PassRegistry
    from sol.planner.plan import Plan
    from sol.program import Program
    from sol.roles import BackendRegistry, DeviceRegistry, FrontendRegistry
    from sol.roofline import Ceilings

hookspec = pluggy.HookspecMarker("sol")


# --- Phase 1: registration (once, the first time core needs the plugin's roles) ---------------


@hookspec
def sol_register_ops(registry: OpRegistry) -> None:
    """Add operations to the IR: ``registry.register(OpDef(...))``.

    Called once, before any graph is built. Each op brings its shape/dtype rule, layer class
    and NumPy reference implementation; a name registered twice is an error.
    """


@hookspec
def sol_register_passes(registry: PassRegistry) -> None:
    """Add graph passes: ``registry.register(name, fn, stage=..., inference_only=...)``.

    ``fn(graph) -> bool`` rewrites the graph in place and says whether it changed anything.
    Stages run in order ``canonicalize``, ``simplify``, ``inference``, ``late``.
    """


@hookspec
def sol_register_frontends(registry: FrontendRegistry) -> None:
    """Add frontends (framework importers/wrappers): ``registry.register(MyFrontend())``.

    A frontend's ``name`` also makes ``import sol.<name>`` resolve to its ``module``.
    """


@hookspec
def sol_register_devices(registry: DeviceRegistry) -> None:
    """Add devices: ``registry.register(MyDevice())``. Availability is asked lazily, later."""


@hookspec
def sol_register_backends(registry: BackendRegistry) -> None:
    """Add library backends for a device (e.g. a vendor's convolution library).

    Registered after all devices, so ``backend.device`` must name a registered device.
    """


@hookspec
def sol_register_commands(registry: CommandRegistry) -> None:
    """Add subcommands to the ``sol`` command line: ``registry.register(MyCommand())`` with a
    :class:`sol.commands.Command`. Called when the CLI starts (and by ``sol plugins``), so the
    hook and the command's module must import nothing heavy; do that in ``Command.run``."""


# --- Phase 2: optimize (once per ``optimize`` call) --------------------------------------------


@hookspec
def sol_graph_imported(graph: Graph, options: dict[str, Any]) -> None:
    """Called with the freshly imported graph before core's passes; may inspect or rewrite it."""


@hookspec
def sol_plan_ready(plan: Plan) -> None:
    """Called once the planner has grouped, ordered and memory-planned the graph."""


@hookspec
def sol_program_loaded(program: Program) -> None:
    """Called when a compiled program is loaded on its device and ready to run."""


# --- Phase 3: reports (on request) -------------------------------------------------------------


@hookspec(firstresult=True)
def sol_measure_ceilings(device: str) -> Ceilings | None:
    """Measure this machine's peak rates for ``device`` (e.g. SGEMM throughput and memory
    bandwidth) for roofline reports such as ``sol inspect --profile``; return None if this
    plugin cannot measure that device. The first answer wins; core caches it per machine
    (:mod:`sol.roofline`), so this runs once, not per report."""
