"""The plugin-facing API: everything a sol plugin (frontend, device, library backend, ops,
passes, commands) may import from sol-core, and nothing else.

A plugin imports from here, ``from sol.plugin_api import Device, DeviceCapabilities, Plan``, and
declares the range of :data:`PLUGIN_API` it was written for (``SOL_PLUGIN_API = ">=1.3,<2"`` in
the module its entry point names). Every other module of sol-core is internal: it may change in
any release, without a version bump. sol-core's own user API (``sol.optimize``, ``sol.explain``,
``sol.device``, ``sol.config``) is separate and versioned with the package.

Version policy (``PLUGIN_API = (major, minor)``, in :mod:`sol.plugins`):

* **minor** bump: something was *added* here: a name, an optional hook, an optional method or
  capability field with a default that keeps old plugins' behaviour. A plugin written for 1.0
  keeps working on 1.1; a plugin that uses a 1.1 addition declares ``>=1.1`` and is refused,
  naming both versions, by an older core.
* **major** bump: something here was removed, renamed or changed meaning (a signature, a
  record's fields, what a hook receives, a new *required* method of a role). Plugins declare
  ``<next major`` (``">=1.3,<2"``), so a core with a new major refuses them rather than crash
  in them: one warning naming the plugin, the others keep working.

Names are loaded on first use (PEP 562), so importing this module costs nothing: ``sol plugins``
imports every plugin's entry point and must stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

hookimpl = pluggy.HookimplMarker("sol")
"""Marks a plugin's hook implementations (``@hookimpl def sol_register_devices(registry): ...``);
the hooks and when core calls them: :mod:`sol.hookspecs`."""

# name here -> (module, name there). The single list of what plugins may use; the TYPE_CHECKING
# block below repeats it for type checkers (tests/core/test_plugin_api.py keeps the two equal).
_EXPORTS: dict[str, tuple[str, str]] = {
    # the version and the plugin manager's read-only views
    "PLUGIN_API": ("sol.plugins", "PLUGIN_API"),
    "plugin_roles": ("sol.plugins", "roles"),  # the frontend/device/backend/pass registries
    "plugin_records": ("sol.plugins", "records"),  # installed plugins, versions (compile-cache keys)
    # roles and their registries (sol.hookspecs says which hook receives which)
    "Availability": ("sol.roles", "Availability"),
    "Backend": ("sol.roles", "Backend"),
    "BackendRegistry": ("sol.roles", "BackendRegistry"),
    "Compiler": ("sol.roles", "Compiler"),
    "Device": ("sol.roles", "Device"),
    "DeviceCapabilities": ("sol.roles", "DeviceCapabilities"),
    "DeviceRegistry": ("sol.roles", "DeviceRegistry"),
    "Estimate": ("sol.roles", "Estimate"),
    "Frontend": ("sol.roles", "Frontend"),
    "FrontendRegistry": ("sol.roles", "FrontendRegistry"),
    "Source": ("sol.roles", "Source"),
    "framework_availability": ("sol.roles", "framework_availability"),
    "require_framework": ("sol.roles", "require_framework"),
    "unsupported_nodes": ("sol.roles", "unsupported_nodes"),
    "Command": ("sol.commands", "Command"),
    "CommandRegistry": ("sol.commands", "CommandRegistry"),
    "PassRegistry": ("sol.passes.manager", "PassRegistry"),
    # ops
    "op_registry": ("sol.ops.registry", "registry"),  # the filled op registry (lookups, references)
    "OpDef": ("sol.ops.registry", "OpDef"),
    "OpRegistry": ("sol.ops.registry", "OpRegistry"),
    "LayerClass": ("sol.ops.registry", "LayerClass"),
    "REQUIRED": ("sol.ops.registry", "REQUIRED"),
    # what an OpDef carries besides its shape rule and reference (the one op table): the gradient
    # rule's context and types, the FLOP count's type, and the counts a report divides by times
    # (the C expression and loop lowering types are the lowering's OpRule and OpLowering)
    "GradContext": ("sol.autodiff", "GradContext"),
    "GradientFn": ("sol.ops.registry", "GradientFn"),
    "no_gradient": ("sol.autodiff.rules", "no_gradient"),
    "FlopsFn": ("sol.ops.registry", "FlopsFn"),
    "Work": ("sol.workload", "Work"),
    "node_flops": ("sol.workload", "node_flops"),
    "group_work": ("sol.workload", "group_work"),
    # IR
    "DTYPES": ("sol.ir", "DTYPES"),
    "Graph": ("sol.ir", "Graph"),
    "INPUT_UPDATES": ("sol.ir", "INPUT_UPDATES"),
    "Node": ("sol.ir", "Node"),
    "TensorType": ("sol.ir", "TensorType"),
    "Value": ("sol.ir", "Value"),
    "ValueKind": ("sol.ir", "ValueKind"),
    # the plan a device renders, and the program it loads
    "Plan": ("sol.planner.plan", "Plan"),
    "Group": ("sol.planner.plan", "Group"),
    "GroupKind": ("sol.planner.plan", "GroupKind"),
    "FusedKernel": ("sol.planner.plan", "FusedKernel"),
    "RecurrentKernel": ("sol.planner.plan", "RecurrentKernel"),
    "MemoryPlan": ("sol.planner.plan", "MemoryPlan"),
    "Slot": ("sol.planner.plan", "Slot"),
    "Storage": ("sol.planner.plan", "Storage"),
    "Program": ("sol.program", "Program"),
    # device memory: the allocator role, the buffers programs run on, host memory (the default)
    "DeviceMemory": ("sol.roles", "DeviceMemory"),
    "Buffer": ("sol.memory", "Buffer"),
    "HostMemory": ("sol.memory", "HostMemory"),
    "HOST_MEMORY": ("sol.memory", "HOST"),
    "DLPACK_CPU": ("sol.memory", "DLPACK_CPU"),
    # finiteness analysis: where a library epilogue that drops NaN is exact
    "may_be_nonfinite": ("sol.passes.finite", "may_be_nonfinite"),
    "premise_of": ("sol.passes.finite", "premise_of"),
    # the host machine (a CPU device sizes its thread pool by it)
    "physical_cores": ("sol.host", "physical_cores"),
    # a value computed from constants (or weights) while converting: a frontend's shape arithmetic
    "known_value": ("sol.passes.simplify", "known_value"),
    # templates and generated-source text (untrusted names made safe for C comments, strings, files)
    "template_environment": ("sol.codegen", "environment"),
    "render_template": ("sol.codegen", "render"),
    "TemplateError": ("sol.codegen", "TemplateError"),
    "comment_text": ("sol.sourcetext", "comment_text"),
    "c_string": ("sol.sourcetext", "c_string"),
    "file_name": ("sol.sourcetext", "file_name"),
    # compile cache and progress (a device's own artifacts: runtime libraries, probes)
    "cache_dir": ("sol.cache", "cache_dir"),
    "cache_key": ("sol.cache", "key_of"),
    "cache_lookup": ("sol.cache", "lookup"),
    "cache_get_or_build": ("sol.cache", "get_or_build"),
    "cache_discard": ("sol.cache", "discard"),
    "progress_step": ("sol.progress", "step"),
    # a device's measured peak rates (the sol_measure_ceilings hook's answer)
    "Ceilings": ("sol.roofline", "Ceilings"),
    # which device and card the user picked (sol.device.set(name, index))
    "selected_device": ("sol.device_select", "get"),
    "selected_device_index": ("sol.device_select", "index"),
    # compiling and training, for frontends
    "compile_graph": ("sol.api", "compile_graph"),
    "replan": ("sol.api", "replan"),  # a device's variant of a plan (other backends), on a copy
    "build_program": ("sol.api", "build_program"),  # compile (cached) and load a variant's source
    "optimize": ("sol.api", "optimize"),
    "compile_training": ("sol.autodiff", "compile_training"),
    "differentiate": ("sol.autodiff", "differentiate"),
    "params_to_inputs": ("sol.autodiff", "params_to_inputs"),
    "Differentiated": ("sol.autodiff", "Differentiated"),
    "SavedSource": ("sol.autodiff", "SavedSource"),
    "TrainingProgram": ("sol.autodiff", "TrainingProgram"),
    # partitioned graphs: what a frontend cannot convert runs in its framework (sol.fallback)
    "ConverterTable": ("sol.converters", "ConverterTable"),
    "ConversionContext": ("sol.converters", "ConversionContext"),
    "Partition": ("sol.fallback", "Partition"),
    "mark_framework_node": ("sol.fallback", "mark"),
    "DeviceSupport": ("sol.support", "DeviceSupport"),  # what the device compiles, node by node
    "target_device": ("sol.support", "target_device"),  # the device an import is for
    "partition": ("sol.fallback", "partition"),
    "is_partitioned": ("sol.fallback", "is_partitioned"),
    "compile_partitioned": ("sol.fallback", "compile_partitioned"),
    "call_of": ("sol.fallback", "call_of"),
    "FrameworkCall": ("sol.fallback", "FrameworkCall"),
    "PartitionedProgram": ("sol.fallback", "PartitionedProgram"),
    "SolStep": ("sol.fallback", "SolStep"),
    "FrameworkStep": ("sol.fallback", "FrameworkStep"),
    "SolFallbackWarning": ("sol.errors", "SolFallbackWarning"),
    "FallbackWording": ("sol.errors", "FallbackWording"),
    "user_stacklevel": ("sol.errors", "user_stacklevel"),
    # errors
    "SolError": ("sol.errors", "SolError"),
    "PluginError": ("sol.errors", "PluginError"),
    "UnsupportedOpError": ("sol.errors", "UnsupportedOpError"),
    "CompileError": ("sol.errors", "CompileError"),
    "CacheError": ("sol.errors", "CacheError"),
    "DeviceUnavailableError": ("sol.errors", "DeviceUnavailableError"),
    "IndexOutOfRangeError": ("sol.errors", "IndexOutOfRangeError"),
    "LinAlgError": ("sol.errors", "LinAlgError"),
    # deployment: what Device.deploy gets (sol.deploy writes a standalone library)
    "DeployTarget": ("sol.deployment", "DeployTarget"),
}

# The lowering (a fused group as loops, index expressions, typed per-op records, the C-family
# renderer and its dialects) is a package of its own whose ``__all__`` is part of this API as a
# whole: every name it lists is a name here too (``from sol.plugin_api import GroupLowering``).
LOWERING = "sol.lowering"

__all__ = sorted([*_EXPORTS, "hookimpl", "LOWERING"])
"""The names of this table; :func:`names` adds the lowering's (importing it)."""


def names() -> list[str]:
    """Every name of the plugin API, the lowering's included."""
    return sorted({*__all__, *importlib.import_module(LOWERING).__all__})


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
    elif not name.startswith("__") and name in getattr(importlib.import_module(LOWERING), "__all__", ()):
        value = getattr(importlib.import_module(LOWERING), name)
    else:
        raise AttributeError(f"sol.plugin_api has no {name!r}: not part of the plugin API (sol-core's other "
                             f"modules are internal; see sol_core/PLUGIN_GUIDE.md)")
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # the table above, for type checkers (`X as X`: an explicit re-export)
    from sol.api import build_program as build_program
    from sol.api import compile_graph as compile_graph
    from sol.api import optimize as optimize
    from sol.api import replan as replan
    from sol.autodiff import Differentiated as Differentiated
    from sol.autodiff import GradContext as GradContext
    from sol.autodiff import SavedSource as SavedSource
    from sol.autodiff import TrainingProgram as TrainingProgram
    from sol.autodiff import compile_training as compile_training
    from sol.autodiff import differentiate as differentiate
    from sol.autodiff import params_to_inputs as params_to_inputs
    from sol.autodiff.rules import no_gradient as no_gradient
    from sol.cache import cache_dir as cache_dir
    from sol.cache import discard as cache_discard  # noqa: F401
    from sol.cache import get_or_build as cache_get_or_build  # noqa: F401
    from sol.cache import key_of as cache_key  # noqa: F401
    from sol.cache import lookup as cache_lookup  # noqa: F401
    from sol.codegen import TemplateError as TemplateError
    from sol.codegen import environment as template_environment  # noqa: F401
    from sol.codegen import render as render_template  # noqa: F401
    from sol.commands import Command as Command
    from sol.commands import CommandRegistry as CommandRegistry
    from sol.converters import ConversionContext as ConversionContext
    from sol.converters import ConverterTable as ConverterTable
    from sol.deployment import DeployTarget as DeployTarget  # deployment
    from sol.device_select import get as selected_device  # noqa: F401
    from sol.device_select import index as selected_device_index  # noqa: F401
    from sol.errors import CacheError as CacheError
    from sol.errors import CompileError as CompileError
    from sol.errors import DeviceUnavailableError as DeviceUnavailableError
    from sol.errors import FallbackWording as FallbackWording
    from sol.errors import IndexOutOfRangeError as IndexOutOfRangeError
    from sol.errors import LinAlgError as LinAlgError
    from sol.errors import PluginError as PluginError
    from sol.errors import SolError as SolError
    from sol.errors import SolFallbackWarning as SolFallbackWarning
    from sol.errors import UnsupportedOpError as UnsupportedOpError
    from sol.errors import user_stacklevel as user_stacklevel
    from sol.fallback import FrameworkCall as FrameworkCall
    from sol.fallback import FrameworkStep as FrameworkStep
    from sol.fallback import Partition as Partition
    from sol.fallback import PartitionedProgram as PartitionedProgram
    from sol.fallback import SolStep as SolStep
    from sol.fallback import call_of as call_of
    from sol.fallback import compile_partitioned as compile_partitioned
    from sol.fallback import is_partitioned as is_partitioned
    from sol.fallback import mark as mark_framework_node  # noqa: F401
    from sol.fallback import partition as partition
    from sol.host import physical_cores as physical_cores
    from sol.ir import DTYPES as DTYPES
    from sol.ir import INPUT_UPDATES as INPUT_UPDATES
    from sol.ir import Graph as Graph
    from sol.ir import Node as Node
    from sol.ir import TensorType as TensorType
    from sol.ir import Value as Value
    from sol.ir import ValueKind as ValueKind
    from sol.lowering import *  # noqa: F403  (its __all__: see LOWERING)
    from sol.memory import DLPACK_CPU as DLPACK_CPU
    from sol.memory import HOST as HOST_MEMORY  # noqa: F401
    from sol.memory import Buffer as Buffer
    from sol.memory import HostMemory as HostMemory
    from sol.ops.registry import REQUIRED as REQUIRED
    from sol.ops.registry import FlopsFn as FlopsFn
    from sol.ops.registry import GradientFn as GradientFn
    from sol.ops.registry import LayerClass as LayerClass
    from sol.ops.registry import OpDef as OpDef
    from sol.ops.registry import OpRegistry as OpRegistry
    from sol.ops.registry import registry as op_registry  # noqa: F401
    from sol.passes.finite import may_be_nonfinite as may_be_nonfinite
    from sol.passes.finite import premise_of as premise_of
    from sol.passes.manager import PassRegistry as PassRegistry
    from sol.passes.simplify import known_value as known_value
    from sol.planner.plan import FusedKernel as FusedKernel
    from sol.planner.plan import Group as Group
    from sol.planner.plan import GroupKind as GroupKind
    from sol.planner.plan import MemoryPlan as MemoryPlan
    from sol.planner.plan import Plan as Plan
    from sol.planner.plan import RecurrentKernel as RecurrentKernel
    from sol.planner.plan import Slot as Slot
    from sol.planner.plan import Storage as Storage
    from sol.plugins import PLUGIN_API as PLUGIN_API
    from sol.plugins import records as plugin_records  # noqa: F401
    from sol.plugins import roles as plugin_roles  # noqa: F401
    from sol.program import Program as Program
    from sol.progress import step as progress_step  # noqa: F401
    from sol.roles import Availability as Availability
    from sol.roles import Backend as Backend
    from sol.roles import BackendRegistry as BackendRegistry
    from sol.roles import Compiler as Compiler
    from sol.roles import Device as Device
    from sol.roles import DeviceCapabilities as DeviceCapabilities
    from sol.roles import DeviceMemory as DeviceMemory
    from sol.roles import DeviceRegistry as DeviceRegistry
    from sol.roles import Estimate as Estimate
    from sol.roles import Frontend as Frontend
    from sol.roles import FrontendRegistry as FrontendRegistry
    from sol.roles import Source as Source
    from sol.roles import framework_availability as framework_availability
    from sol.roles import require_framework as require_framework
    from sol.roles import unsupported_nodes as unsupported_nodes
    from sol.roofline import Ceilings as Ceilings
    from sol.sourcetext import c_string as c_string
    from sol.sourcetext import comment_text as comment_text
    from sol.sourcetext import file_name as file_name
    from sol.support import DeviceSupport as DeviceSupport
    from sol.support import target_device as target_device
    from sol.workload import Work as Work
    from sol.workload import group_work as group_work
    from sol.workload import node_flops as node_flops
