"""The roles a plugin registers: frontends, devices and library backends, with typed registries.

A role is a small object whose methods core calls; it carries data the planner reads
(:class:`DeviceCapabilities`) rather than walking the graph itself. Registries reject duplicate
and unknown names with errors that list what is there.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sol.errors import PluginError, UnsupportedOpError

if TYPE_CHECKING:
    import numpy as np

    from sol.deployment import DeployTarget
    from sol.fallback import PartitionedProgram
    from sol.ir import Graph, Node, TensorType
    from sol.memory import Buffer
    from sol.planner.plan import Group, Plan
    from sol.program import Program


@dataclass(frozen=True)
class Availability:
    """Whether a device or library can run here; ``detail`` says how or why not."""

    available: bool
    detail: str = ""
    emulated: bool = False


def framework_availability(module: str, install: str, version_of: str | None = None) -> Availability:
    """Whether the framework ``module`` is importable here, looked up without importing it
    (importing a framework takes seconds; ``sol plugins`` must stay fast): what a frontend's
    :meth:`Frontend.availability` reports. ``install``: the command that installs it;
    ``version_of``: a distribution whose version to show when available. A module imported
    already counts even without a ``__spec__``; one blocked with ``sys.modules[name] = None``
    does not."""
    import importlib.util
    import sys
    from importlib import metadata

    if sys.modules.get(module) is None:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return Availability(False, f"{module} is not installed ({install})")
    if version_of is None:
        return Availability(True)
    try:
        return Availability(True, f"{version_of} {metadata.version(version_of)}")
    except metadata.PackageNotFoundError:  # importable without metadata (a source tree on the path)
        return Availability(True)


def require_framework(availability: Availability, what: str, framework: str) -> None:
    """Raise ModuleNotFoundError saying what to install when ``availability`` says the framework
    is missing: ``from sol.<frontend> import X`` then fails with the same words as ``sol plugins``
    rather than a bare "No module named ..." from deep inside."""
    if not availability.available:
        raise ModuleNotFoundError(f"{what} needs {framework}: {availability.detail}", name=framework.lower())


@dataclass(frozen=True)
class DeviceCapabilities:
    """What the planner needs to know about a device, as data.

    ``fusible_ops``: ops the device's templates can render inside a depth-first fused group.
    ``local_bytes``: budget for one fused group's per-iteration scratch (planes kept in cache).
    ``min_parallel``: outer iterations wanted to keep all cores/SMs busy.
    ``recurrent_ops``: execution-order-constrained ops (``lstm_recurrence``, ``gru_recurrence``)
    the device renders as a RECURRENT group: a loop over time around a per-step ``h @ W_hh^T``
    and one fused cell kernel, described by :class:`sol.planner.plan.RecurrentKernel`.
    ``unsupported_ops``: registered ops this device does not run, each with the reason (op name
    -> "why", e.g. ``{"conv_transpose2d": "no template yet"}``); default: none, every op runs.
    Core refuses a graph using one of them before planning, with an
    :class:`~sol.errors.UnsupportedOpError` naming the op, where it came from and the reason
    (:func:`unsupported_nodes`), and the conformance kit (:mod:`sol.testing`) skips their
    tests with that reason instead of failing them.
    """

    vector_width: int
    fusible_ops: frozenset[str]
    local_bytes: int = 256 * 1024
    min_parallel: int = 1
    preferred_layout: str = "nchw"
    recurrent_ops: frozenset[str] = frozenset()
    extra: dict[str, Any] = field(default_factory=dict)
    unsupported_ops: Mapping[str, str] = field(default_factory=dict)
    concurrent_calls: bool = True
    """Whether one program may run several calls at once, from several threads: True means
    each call is independent (no output or scratch memory shared between calls), so core calls
    it from whichever threads the user's calls come from. False: :class:`~sol.program.Program`
    serializes the calls of one program with a lock (devices that can run only one call at a
    time, e.g. one set of device buffers per network). Either way the program runs on the
    caller's thread; frontends never move calls to threads of their own."""


@dataclass
class Source:
    """Generated code for one network on one device."""

    files: dict[str, str]  # file name -> text
    entry: str  # the translation unit to compile
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. param order, ABI info

    @property
    def text(self) -> str:
        return "".join(f"// {k}\n{v}" for k, v in sorted(self.files.items()))


class Compiler(abc.ABC):
    """Turns a :class:`Source` into a loadable artifact in a directory."""

    @abc.abstractmethod
    def identity(self) -> str:
        """Compiler path, version and flags: part of the compile-cache key."""

    @abc.abstractmethod
    def compile(self, source: Source, outdir: Path) -> Path:
        """Compile into ``outdir`` (a private temporary dir) and return the artifact's path."""

    # Optional: compiling many small networks at once (``sol.api.compile_graphs``). A compiler
    # whose fixed cost per run dominates small networks (a C++ compiler parsing the same headers
    # each time) may put several networks into one artifact; its device then loads each of them
    # with ``Device.load_batch``. Without it, networks compile one at a time.
    batch_compiles: bool = False

    def compile_batch(self, sources: list[Source], outdir: Path) -> Path:
        """Compile every source into one artifact in ``outdir`` (``batch_compiles`` says whether
        this compiler can)."""
        raise NotImplementedError(f"{type(self).__name__} compiles one network at a time")


class Frontend(abc.ABC):
    """Imports a framework's model into sol's IR and wraps a compiled program back."""

    name: str  # e.g. "pytorch"; also makes `import sol.<name>` work
    module: str  # the import package implementing it, e.g. "sol_pytorch"

    @abc.abstractmethod
    def accepts(self, model: Any) -> bool:
        """True if ``model`` is this framework's model object. Must not import the framework
        unless it is already imported (a model of it cannot exist otherwise)."""

    @abc.abstractmethod
    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        """Framework model + example inputs (tensors or shapes) -> :class:`Graph`."""

    @abc.abstractmethod
    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> Any:
        """Return a framework-native object that runs ``program`` like ``model`` ran. A graph with
        nodes the frontend marked for its framework (:func:`sol.fallback.mark`) arrives as a
        :class:`~sol.fallback.PartitionedProgram`: compiled parts and framework steps in order."""

    def example_device(self, example_inputs: tuple[Any, ...]) -> tuple[int, int] | None:
        """The DLPack device ``(type, id)`` the example tensors live on, where that is not the
        host (a GPU's tensors: ``(2, id)``); ``optimize`` without a device then picks the device
        whose memory that is (:func:`sol.device_select.for_tensors`). Default: None (host).
        Plugin API 1.5."""
        return None

    def training_mode(self, model: Any) -> bool:
        """Whether ``model`` is in training mode, for ``optimize(..., training=None)``: a model the
        user is training is compiled for training (a framework without modes: False)."""
        return False

    def example_input(self, shape: tuple[int, ...], dtype: str) -> Any:
        """An example input of ``shape`` and ``dtype`` (one of :data:`sol.ir.DTYPES`) that
        :meth:`import_graph` takes: what ``sol inspect --input 1,128:int64`` passes. Default: NumPy
        zeros (zeros are valid token ids and indices); a frontend whose framework wants its own
        tensor type overrides it."""
        import numpy as np

        return np.zeros(shape, dtype=dtype)

    def availability(self) -> Availability:
        """Whether this frontend can work here, i.e. its framework is installed; ``detail`` says
        why not, with what to install (``sol plugins`` shows it). Must not import the framework
        (``sol plugins`` asks every frontend, and importing one costs seconds): look it up with
        :func:`importlib.util.find_spec`. Default: available."""
        return Availability(True)


class DeviceMemory(abc.ABC):
    """A device's allocator: where a program's inputs, outputs and parameters live, and the
    copies between that memory, the host and itself (``Device.memory``; default: host memory,
    :data:`sol.memory.HOST`). Buffers are :class:`sol.memory.Buffer` s of this memory.

    ``stream``: the device's stream or queue an allocation or copy is ordered on, for devices
    that have them (None: the device's default; devices without streams ignore it and finish
    the copy before returning). A copy on a stream is complete only after
    :meth:`synchronize` of that stream, or for later work on the same stream.

    Threading: every method may be called from several threads at once (lock inside where
    the device needs it). Memory is never shared between two devices or two device processes:
    a buffer is valid only with the memory that made it.
    """

    device: str  # the device's name, e.g. "ve"; "host" for host memory
    shares_host: bool = False
    """True where the host addresses this memory directly (a pointer is a host pointer): then
    framework CPU tensors and NumPy arrays are used in place, and ``Buffer.numpy()`` works."""
    dlpack_device: tuple[int, int] | None = None
    """This memory as a DLPack device ``(device_type, device_id)`` (``(1, 0)``: CPU); None where
    no framework can address it (then tensors cross by copies through the host)."""

    @abc.abstractmethod
    def allocate(self, type: TensorType, stream: Any = None) -> Buffer:
        """A new C-contiguous buffer of ``type`` (its contents undefined)."""

    @abc.abstractmethod
    def free(self, buffer: Buffer) -> None:
        """Release a buffer :meth:`allocate` returned (using it later is an error). Buffers not
        freed explicitly are released with their owner object (garbage collection)."""

    @abc.abstractmethod
    def copy_from_host(self, dst: Buffer, src: np.ndarray, stream: Any = None) -> None:
        """Copy the C-contiguous host array ``src`` (of ``dst``'s type) into ``dst``."""

    @abc.abstractmethod
    def copy_to_host(self, dst: np.ndarray, src: Buffer, stream: Any = None) -> None:
        """Copy ``src`` into the C-contiguous host array ``dst`` (of ``src``'s type)."""

    def copy(self, dst: Buffer, src: Buffer, stream: Any = None) -> None:
        """Copy ``src`` into ``dst`` (same type), both in this memory. Default: through a host
        array; a device with a device-to-device copy overrides it."""
        import numpy as np

        if dst.type != src.type:
            raise ValueError(f"copy: {src.type} does not fit {dst.type}")
        staging = np.empty(src.type.shape, np.dtype(src.type.dtype))
        self.copy_to_host(staging, src, stream)
        self.synchronize(stream)
        self.copy_from_host(dst, staging, stream)

    def synchronize(self, stream: Any = None) -> None:
        """Wait until the work queued on ``stream`` is done. Default: nothing (no streams)."""
        return None

    def from_host(self, array: np.ndarray, stream: Any = None) -> Buffer:
        """A new buffer of this memory holding a copy of ``array``."""
        import numpy as np

        from sol.ir import TensorType

        array = np.asarray(array, order="C")
        buffer = self.allocate(TensorType(array.shape, str(array.dtype)), stream)
        self.copy_from_host(buffer, array, stream)
        return buffer

    def to_host(self, buffer: Buffer, stream: Any = None) -> np.ndarray:
        """A host array holding a copy of ``buffer`` (complete when this returns)."""
        import numpy as np

        out = np.empty(buffer.type.shape, np.dtype(buffer.type.dtype))
        self.copy_to_host(out, buffer, stream)
        self.synchronize(stream)
        return out

    def from_dlpack(self, tensor: Any) -> Buffer:
        """A framework tensor whose DLPack device is :attr:`dlpack_device` as a buffer of this
        memory, in place (no copy; the buffer keeps the tensor alive). Default: BufferError,
        for memory no framework addresses."""
        raise BufferError(f"{self.device} memory takes no DLPack tensors: copy through the host (from_host)")


class Device(abc.ABC):
    """A place programs run: assembled from renderer, compiler and runtime (tinygrad-style).

    Threading (the contract; ``sol_core/PLUGIN_GUIDE.md``, "Memory and threading"): a
    program runs on the thread that calls it. Whether several threads may call one program at
    once is the device's answer, ``capabilities.concurrent_calls``. Thread pools the device's
    code uses (OpenMP, a vendor library's) and their wait policy are the device's business:
    set up by the device before its runtime loads, never by a frontend.

    Deployment (optional, :meth:`deploy`): a device that can write a network as a library
    running without Python (``sol.deploy``) overrides :meth:`deploy`; the default refuses.
    """

    name: str  # "x86", "cuda", "ve", ...

    @property
    def memory(self) -> DeviceMemory:
        """The device's allocator, on which its programs run (``Program.memory``). Default: host
        memory (:data:`sol.memory.HOST`), for devices whose code runs on the caller's memory."""
        from sol.memory import HOST

        return HOST

    @abc.abstractmethod
    def availability(self) -> Availability: ...

    @property
    @abc.abstractmethod
    def capabilities(self) -> DeviceCapabilities: ...

    @property
    @abc.abstractmethod
    def compiler(self) -> Compiler: ...

    @abc.abstractmethod
    def render(self, plan: Plan) -> Source:
        """Generate the network's source from the plan (templates shipped with the plugin).

        Each group says how it runs: LIBRARY (``group.anchor`` + ``group.epilogue``), FUSED
        (``group.kernel``), ALIAS (no code) or RECURRENT (``group.recurrent``, a loop over time;
        only for ops the device lists in ``capabilities.recurrent_ops``)."""

    @abc.abstractmethod
    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        """Load a compiled artifact, place parameters on the device once, return a Program."""

    def load_batch(self, artifact: Path, index: int, plan: Plan, source: Source) -> Program:
        """Network ``index`` of an artifact its compiler's ``compile_batch`` made of several
        (``source`` is that network's). Only called for devices whose compiler has
        ``compile_batch``; the default refuses."""
        raise NotImplementedError(f"device {self.name!r} has no batch compiles")

    def prepare(self) -> None:
        """Start one-time work this device needs before its first compile, in the background
        (e.g. building a runtime library while the frontend traces the model); must return at
        once. ``optimize`` calls it as soon as the device is known; the device's compile step
        waits for that work (or does it, when ``prepare`` was never called). Default: nothing."""
        return None

    def deploy(self, target: DeployTarget) -> list[str]:
        """Write ``target.plans`` (inference plans, one per batch size) as a standalone library
        into ``target.directory`` (empty; core moves its contents to the user's path) and return
        the names of the files and folders written there. What a deployment holds: a shared and a
        static library named after ``target.name``, a C header documenting the API (create from
        the weights, query inputs and outputs, run, destroy, error codes and messages, thread
        safety, a version stamp checked against the weights), the weights (a file, or inside the
        library with ``target.embed_weights``), an example program with its build files and a
        README; everything it needs at run time beside the OS's C/C++ runtime is in the
        directory. ``sol_core/PLUGIN_GUIDE.md``, "Deployment", is the contract. Default: a
        SolError saying that this device cannot deploy."""
        from sol.errors import SolError

        raise SolError(f"device {self.name!r} cannot deploy: its plugin does not implement Device.deploy "
                       f"(sol.deploy writes a standalone library only for devices that do)")

    def estimate(self, group: Group, plan: Plan) -> Estimate | None:
        """A modelled run time for ``group`` (e.g. a roofline), for devices whose real timing is
        not at hand; None if the device offers no model. ``sol inspect`` prints it, labelled."""
        return None

    def estimate_transfer(self, plan: Plan) -> Estimate | None:
        """A modelled time for one call's copies between host and device memory (inputs in,
        outputs back), for devices with memory of their own; None where the device works on the
        caller's memory or offers no model. ``sol inspect`` prints it apart from the groups."""
        return None


def unsupported_nodes(graph: Graph, device: Device) -> list[tuple[Node, str]]:
    """The nodes of ``graph`` whose op ``device`` declares unsupported
    (:attr:`DeviceCapabilities.unsupported_ops`), each with the device's reason, in graph order:
    what a frontend's fallback leaves to its framework, and what :func:`require_supported`
    refuses."""
    declared = device.capabilities.unsupported_ops
    if not declared:
        return []
    return [(node, declared[node.op]) for node in graph.nodes if node.op in declared]


def require_supported(graph: Graph, device: Device) -> None:
    """Raise :class:`~sol.errors.UnsupportedOpError` for the first node of ``graph`` whose op
    ``device`` declares unsupported, naming the op, its source, the device and its reason (all
    such ops are listed): the error a user gets instead of a crash in the device's codegen."""
    found = unsupported_nodes(graph, device)
    if not found:
        return
    node, reason = found[0]
    where = f" at {node.source}" if node.source else ""
    ops = sorted({n.op for n, _ in found})
    more = f" (unsupported ops in this graph: {', '.join(ops)})" if len(ops) > 1 else ""
    raise UnsupportedOpError(f"op {node.op!r}{where} is not supported by device {device.name!r}: {reason}{more}",
                             op=node.op, source=node.source)


@dataclass(frozen=True)
class Estimate:
    """A modelled time for one group: ``seconds`` and how it was obtained (``basis``, e.g.
    "roofline on VE Type 20B"), with the work it is based on."""

    seconds: float
    basis: str
    flops: float = 0.0
    bytes: float = 0.0
    bound: str = ""  # "compute" or "memory"


class Backend(abc.ABC):
    """A vendor library binding for one device: which ops it runs and which epilogues it fuses."""

    name: str  # e.g. "onednn"
    device: str  # the device name it serves
    priority: int = 0  # higher wins when two backends claim one op

    def availability(self) -> Availability:
        return Availability(True)

    @abc.abstractmethod
    def claims(self, node: Node, graph: Graph) -> bool:
        """True if this library runs ``node`` (the anchor of a library group)."""

    def absorbs(self, anchor: Node, chain: list[Node], node: Node, graph: Graph) -> bool:
        """True if ``node`` (element-wise, reading the group's result) can be a fused epilogue
        after ``anchor`` and the epilogue ops already absorbed in ``chain``."""
        return False


CORE_PLUGIN = "core"
"""The name core's own plugin (:mod:`sol.builtin`) is registered under: its names are never contested."""


@dataclass
class Conflict:
    """One name of one registry that several plugins registered, in the order they did."""

    kind: str
    name: str
    plugins: list[str]

    def message(self) -> str:
        names = [repr(p) for p in self.plugins]
        who = f"{', '.join(names[:-1])} and {names[-1]}"
        return (f"{self.kind} {self.name!r} is registered by {who}; sol uses none of them (which one ran would "
                f"depend on the order Python lists installed packages in): uninstall all but one, or block the "
                f"others with SOL_DISABLE_PLUGINS={','.join(self.plugins[1:])}")


class NameClaims:
    """Who registered each name of one registry.

    A name two third-party plugins register is *contested*: neither gets it (sol.plugins then
    withdraws both plugins), and every later plugin registering it is refused as well. The
    alternative, "the first keeps it", would let the order in which Python lists installed
    packages (file-system order, different between machines) pick which implementation computes
    a user's results. Core's own names stay core's: a plugin registering one is refused alone.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.owners: dict[str, str] = {}
        self.conflicts: list[Conflict] = []
        self._contested: dict[str, Conflict] = {}

    def claim(self, name: str, plugin: str) -> None:
        """Record ``plugin`` as ``name``'s owner; raise PluginError if it is taken or contested."""
        conflict = self._contested.get(name)
        first = self.owners.get(name)
        if conflict is None and first is not None:
            if first == plugin:
                raise PluginError(f"plugin {plugin!r} registers {self.kind} {name!r} twice")
            if first == CORE_PLUGIN:
                raise PluginError(f"plugin {plugin!r} registers {self.kind} {name!r}, which is one of core's own")
            conflict = self._contested[name] = Conflict(self.kind, name, [first])
            self.conflicts.append(conflict)
        if conflict is not None:
            if plugin not in conflict.plugins:
                conflict.plugins.append(plugin)
            raise PluginError(conflict.message())
        self.owners[name] = plugin

    def release(self, name: str) -> None:
        self.owners.pop(name, None)

    def owned_by(self, plugin: str) -> list[str]:
        return [name for name, owner in self.owners.items() if owner == plugin]

    def involving(self, plugin: str) -> list[Conflict]:
        return [c for c in self.conflicts if plugin in c.plugins]


R = TypeVar("R")


class _Registry(Generic[R]):
    """Name -> role object. A plugin registers while ``current_plugin`` names it (sol.plugins
    sets it around each plugin's hook), so every name has an owner: errors name both plugins of
    a clash, and a plugin that fails is withdrawn completely (:meth:`remove`)."""

    kind = "role"

    def __init__(self) -> None:
        self._items: dict[str, R] = {}
        self.claims = NameClaims(self.kind)
        self.current_plugin = "?"
        self.unknown_note = ""  # appended to "unknown ..." errors: e.g. which installed plugins failed

    def register(self, item: R) -> R:
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{self.kind} registered by plugin {self.current_plugin!r} has no name")
        self.claims.claim(name, self.current_plugin)
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Take ``name`` out (its plugin is withdrawn); no error if it is not there."""
        self._items.pop(name, None)
        self.claims.release(name)

    def get(self, name: str) -> R:
        try:
            return self._items[name]
        except KeyError:
            have = ", ".join(sorted(self._items)) or "none installed"
            raise PluginError(f"unknown {self.kind} {name!r} (installed: {have}){self.unknown_note}") from None

    def owner(self, name: str) -> str:
        return self.claims.owners[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[R]:
        return iter(self._items.values())

    def names(self) -> list[str]:
        return list(self._items)


class FrontendRegistry(_Registry[Frontend]):
    kind = "frontend"


class DeviceRegistry(_Registry[Device]):
    kind = "device"


class BackendRegistry(_Registry[Backend]):
    kind = "backend"

    def __init__(self, devices: DeviceRegistry) -> None:
        super().__init__()
        self._devices = devices

    def register(self, item: Backend) -> Backend:
        if item.device not in self._devices:
            raise PluginError(
                f"backend {item.name!r} (plugin {self.current_plugin!r}) is for device "
                f"{item.device!r}, which is not installed"
            )
        return super().register(item)

    def for_device(self, device: str) -> list[Backend]:
        found = [b for b in self if b.device == device and b.availability().available]
        return sorted(found, key=lambda b: -b.priority)
