"""The trace cache: a model's imported graph, reused in a new process without tracing again.

Why: ``torch.export`` is most of a warm start. For ResNet-50 tracing and functionalizing take
~4 s (1.5 s of it importing ``torch._dynamo``), while loading the compiled program from the compile
cache takes ~0.4 s. An imported graph depends only on what the trace sees, so it is stored under a
key of all of that and loaded when the key matches. The weights are not in the stored graph: they
are stored by name and bound to the model's live tensors on load (as the importer binds them), so
a model with the same architecture and other weight values hits and computes with its own weights.

What is cached: whole inference graphs only (``sol_pytorch.variants.import_model``). A model
PyTorch must run parts of (``fallback``), a training import, and a graph into which a converter
folded a weight's values (``aten.WEIGHT_VALUES``: an attention mask buffer) are traced every time.

What the key covers (:func:`model_key`): the argument signature (shapes, dtypes, strides,
``requires_grad``, non-tensor values) and the options; the versions of Python, PyTorch and NumPy
and of every sol plugin, and the source of sol, of this frontend and of plugins that add ops (a
development checkout changes them without a version bump: any edit there means one trace more);
the default dtype and CPU autocast state; every submodule: its path, its class, its mode, each
attribute's value (plain values by value, tensors that are not parameters or buffers by their
bytes, functions by their code), its parameters' and buffers' names, shapes, dtypes, strides and
identities (shared weights stay shared), never their values;
every class the model uses that is not from a library: its bases and class attributes, its
methods by their bytecode, line table, constants, closures and defaults, and the globals that
code reads, followed into the user's functions, classes and modules (a module by its file's bytes)
wherever they live, and the value of each attribute the code names of a module it reads
(``config.USE_SILU`` set by an argument parser, ``sys.argv``, ``os.environ``: the whole
environment). A library object (PyTorch, NumPy, sol, the standard library, anything installed in
site-packages) is keyed by its name and its package's version.

What it cannot see, and so never keys on: a model with forward hooks (its own or global), a
``GraphModule`` (``torch.compile``'s graphs, whose code is an fx graph), or a model whose
attributes, class attributes or globals hold objects it cannot describe (an open file, a custom
object): such a model is traced every time. What it would miss: a library monkeypatched at run
time in a way its attributes named in the user's code do not show, a library changed without a
version change, an object inside a library module that code reaches through a function call, or
a user module's mutable global object changed between processes. ``optimize(...,
trace_cache=False)`` or ``SOL_TRACE_CACHE=0`` trace every time.
"""

from __future__ import annotations

import copyreg
import dis
import enum
import functools
import hashlib
import io
import itertools
import logging
import os
import pickle
import sys
import types
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sol.plugin_api import CacheError, Graph, ValueKind, cache_discard, cache_get_or_build, cache_key, cache_lookup

log = logging.getLogger("sol")

ARTIFACT = "graph.pkl"
counts: Counter[str] = Counter()
"""``hit``, ``miss`` (looked up, not found), ``unkeyable``, ``stored``: for tests and diagnostics."""

_MODULE_DEPTH = 3  # how far a chain of module attributes (torch.backends.cudnn.x) is followed
_MAX_TENSOR_BYTES = 1 << 24  # larger non-parameter tensor attributes are not hashed: no key
_LIBRARY_TOPS = frozenset({"torch", "numpy", "sol", "builtins"}) | frozenset(sys.stdlib_module_names)
_SKIPPED_ATTRS = frozenset({
    "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "training",
    # what state_dict / load_state_dict do; forward never runs them
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
    # backward hooks run in autograd, not in the traced forward
    "_backward_hooks", "_backward_pre_hooks", "_is_full_backward_hook",
})
_FORWARD_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                  "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_forward_hooks_always_called")
_SKIPPED_CLASS_ATTRS = frozenset({"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__",
                                  "__annotations__", "__firstlineno__", "__static_attributes__"})


class Unkeyable(Exception):
    """The model holds something the key cannot describe: it is traced, not looked up."""


def enabled(options: dict[str, Any]) -> bool:
    if options.get("trace_cache") is False:
        return False
    return os.environ.get("SOL_TRACE_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


# --- the key ----------------------------------------------------------------------------------


def model_key(model: torch.nn.Module, values: Sequence[Any], options: dict[str, Any]) -> str | None:
    """The trace cache key for ``model`` called with ``values`` under ``options``; None when the
    model holds something the key cannot describe (the reason is logged)."""
    try:
        if any(getattr(torch.nn.modules.module, name, None) for name in _GLOBAL_HOOKS):
            raise Unkeyable("global forward hooks are registered")
        d = _Describer(model)
        parts = [_environment(), d.value([_argument(v) for v in values]),
                 d.value(sorted((k, v) for k, v in options.items() if k != "trace_cache"))]
        parts += d.describe()
    except Unkeyable as exc:
        counts["unkeyable"] += 1
        log.debug("sol: %s is traced every time (no trace cache key: %s)", type(model).__name__, exc)
        return None
    return cache_key("pytorch-trace", *parts)


def _argument(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        if v.layout is not torch.strided:  # sparse: no strides to key on (tracing says what it makes of them)
            raise Unkeyable(f"an input is a {v.layout} tensor")
        return (tuple(v.shape), v.dtype, v.stride(), v.requires_grad)
    return v  # None, bool, int, float: keyed by type and value


def _environment() -> str:
    from sol.plugin_api import plugin_records as records

    plugins = records()
    versions = ";".join(f"{r.name}={r.version}" for r in sorted(plugins, key=lambda r: r.name))
    # the imported graph is made by this frontend's converters and core's IR and op rules (which
    # plugins may add to): their code, which a development checkout changes without a version bump
    makers = {"sol", __name__.split(".")[0]}
    makers.update(r.module.split(".")[0] for r in plugins if any(role.startswith("op:") for role in r.roles))
    autocast = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
    return "|".join((sys.version, torch.__version__, np.__version__, versions, _sources(tuple(sorted(makers))),
                     str(torch.get_default_dtype()), str(autocast)))


@functools.lru_cache(maxsize=4)
def _sources(packages: tuple[str, ...]) -> str:
    """A digest of the Python files of these packages (top-level module names)."""
    h = hashlib.sha256()
    for name in packages:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if not path:
            h.update(f"{name}:?".encode())
            continue
        root = Path(path)
        files = sorted(root.parent.rglob("*.py")) if root.name == "__init__.py" else [root]
        for f in files:
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _is_library(module_name: str | None) -> bool:
    if not module_name:
        return False
    top = module_name.split(".")[0]
    if top in _LIBRARY_TOPS:
        return True
    module = sys.modules.get(module_name) or sys.modules.get(top)
    path = getattr(module, "__file__", None) or ""
    return "site-packages" in path or "dist-packages" in path


def _library_token(kind: str, module_name: str | None, name: str) -> str:
    top = (module_name or "").split(".")[0]
    version = getattr(sys.modules.get(top), "__version__", "")
    return f"lib-{kind}:{module_name}.{name}@{version}"


@functools.lru_cache(maxsize=256)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _Describer:
    """Walks the model and what its code reaches, writing one token per thing seen."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.paths = {id(m): path for path, m in model.named_modules(remove_duplicate=False)}
        # every parameter and buffer first: a tensor attribute that is one is keyed by its
        # identity (never by its values), wherever the walk meets it
        self.state: dict[int, int] = {}  # id of a parameter or buffer -> its index (sharing shows)
        for _, t in itertools.chain(model.named_parameters(remove_duplicate=False),
                                    model.named_buffers(remove_duplicate=False)):
            self.state.setdefault(id(t), len(self.state))
        self.memo: dict[int, str] = {}  # id of a function, class or module -> its token
        self.keep: list[Any] = []  # objects memoized by id stay alive while the walk runs

    def describe(self) -> list[str]:
        return [self._module(path, m) for path, m in self.model.named_modules(remove_duplicate=False)]

    def _module(self, path: str, m: torch.nn.Module) -> str:
        d = m.__dict__
        if any(d.get(name) for name in _FORWARD_HOOKS):
            raise Unkeyable(f"{path or 'the model'} has forward hooks")
        if isinstance(m, torch.fx.GraphModule):  # torch.compile's graphs: the code is an fx graph
            raise Unkeyable(f"{path or 'the model'} is a GraphModule")
        items = [f"module {path!r} {self._class(type(m))} training={m.training}"]
        for kind in ("_parameters", "_buffers"):
            for name, t in d.get(kind, {}).items():
                items.append(f"{kind}.{name}={self._state(t)}")
        items.append(f"non-persistent={sorted(d.get('_non_persistent_buffers_set', ()))}")
        for name, child in d.get("_modules", {}).items():
            items.append(f"child.{name}={self.paths.get(id(child)) if child is not None else None}")
        for name in sorted(k for k in d if k not in _SKIPPED_ATTRS and k not in _FORWARD_HOOKS):
            try:
                items.append(f"attr.{name}={self.value(d[name])}")
            except Unkeyable as exc:
                raise Unkeyable(f"{path or 'the model'}.{name}: {exc}") from None
        return "\n".join(items)

    def _state(self, t: torch.Tensor | None) -> str:
        if t is None:
            return "None"
        return (f"#{self.state[id(t)]} {t.dtype}{list(t.shape)} stride={t.stride()} grad={t.requires_grad} "
                f"dev={t.device}")

    # --- values ---------------------------------------------------------------------------------
    def value(self, v: Any) -> str:
        """A token for ``v`` as code may read it; raises :class:`Unkeyable`."""
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes, range, slice, type(Ellipsis))):
            return f"{type(v).__name__}:{v!r}"
        if isinstance(v, enum.Enum):
            return f"enum:{self._class(type(v))}.{v.name}"
        if isinstance(v, (tuple, list, dict, set, frozenset)):
            kind = type(v).__name__ if type(v) in (tuple, list, dict, set, frozenset) else self._class(type(v))
            if isinstance(v, dict):  # in order: code iterating over it sees that order
                return f"{kind}(" + ",".join(f"{self.value(k)}:{self.value(x)}" for k, x in v.items()) + ")"
            items = [self.value(x) for x in v]
            return f"{kind}(" + ",".join(sorted(items) if isinstance(v, (set, frozenset)) else items) + ")"
        if v is os.environ:  # the process's environment as code reads it (os.environ.get(...))
            return f"environ({self.value(dict(v))})"
        if isinstance(v, (torch.dtype, torch.device, torch.Size, torch.layout, torch.memory_format, np.dtype,
                          np.generic)):
            return f"{type(v).__name__}:{v!r}"
        if isinstance(v, torch.Tensor):
            return self._tensor(v)
        if isinstance(v, np.ndarray):
            if v.dtype == object or v.nbytes > _MAX_TENSOR_BYTES:
                raise Unkeyable("holds an object or large NumPy array")
            return f"ndarray:{v.dtype}{list(v.shape)}:{hashlib.sha256(np.asarray(v, order='C').tobytes()).hexdigest()}"
        if isinstance(v, torch.nn.Module):
            if id(v) in self.paths:
                return f"module:{self.paths[id(v)]!r}"
            raise Unkeyable(f"holds a {type(v).__name__} outside the model")
        if isinstance(v, functools.partial):
            return f"partial({self.value(v.func)},{self.value(v.args)},{self.value(v.keywords)})"
        if isinstance(v, types.MethodType):
            return f"method({self.value(v.__func__)},{self.value(v.__self__)})"
        if isinstance(v, (staticmethod, classmethod)):
            return f"{type(v).__name__}({self.value(v.__func__)})"
        if isinstance(v, property):
            return f"property({self.value(v.fget)},{self.value(v.fset)})"
        if isinstance(v, types.FunctionType):
            return self._memo(v, self._function)
        if isinstance(v, type):
            return self._class(v)
        if isinstance(v, types.ModuleType):
            return self._memo(v, self._module_object)
        if isinstance(v, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            return f"aten:{v}@{torch.__version__}"
        if callable(v) and _is_library(getattr(type(v), "__module__", None)):
            return self._library_callable(v)
        raise Unkeyable(f"holds a {type(v).__module__}.{type(v).__qualname__}")

    def _library_callable(self, v: Any) -> str:
        """A builtin, an ATen operator, a library's callable object; one that wraps the user's
        code (``functools.lru_cache``) is keyed by what it wraps, one bound to an object by it."""
        name = getattr(v, "__qualname__", None) or getattr(v, "__name__", None)
        module = getattr(v, "__module__", None)
        if name is None or (module is not None and not _is_library(module)):
            wrapped = getattr(v, "__wrapped__", None)
            if wrapped is None:
                raise Unkeyable(f"holds a {type(v).__qualname__} over code of {module}")
            return f"wrapper {self._class(type(v))}({self.value(wrapped)})"
        bound = getattr(v, "__self__", None)
        token = _library_token("callable", module, name)
        if bound is None or isinstance(bound, (types.ModuleType, type)):
            return token
        return f"{token} of {self.value(bound)}"

    def _tensor(self, t: torch.Tensor) -> str:
        if id(t) in self.state:
            return f"state#{self.state[id(t)]}"
        if t.device.type != "cpu" or t.layout is not torch.strided or t.is_meta:
            raise Unkeyable(f"holds a {t.device.type} {t.layout} tensor")
        if t.numel() * t.element_size() > _MAX_TENSOR_BYTES:
            raise Unkeyable("holds a large tensor that is not a parameter or buffer")
        # flattened: viewing a 0-dim tensor as bytes fails for any element wider than a byte
        data = t.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
        digest = hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
        return f"tensor:{t.dtype}{list(t.shape)} stride={t.stride()} grad={t.requires_grad}:{digest}"

    def _memo(self, obj: Any, describe: Any) -> str:
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        self.keep.append(obj)
        self.memo[key] = f"seen#{len(self.memo)}"  # a cycle reads this placeholder
        token: str = describe(obj)
        self.memo[key] = token
        return token

    # --- code -----------------------------------------------------------------------------------
    def _class(self, cls: type) -> str:
        if _is_library(cls.__module__):
            return _library_token("class", cls.__module__, cls.__qualname__)
        return self._memo(cls, self._user_class)

    def _user_class(self, cls: type) -> str:
        bases = ",".join(self._class(b) for b in cls.__bases__)
        items = [f"class {cls.__module__}.{cls.__qualname__}", f"bases={bases}"]
        for name, v in sorted(vars(cls).items()):
            if name in _SKIPPED_CLASS_ATTRS or name.startswith("_abc"):
                continue
            try:
                items.append(f"{name}={self.value(v)}")
            except Unkeyable as exc:
                raise Unkeyable(f"class {cls.__qualname__}.{name}: {exc}") from None
        return "\n".join(items)

    def _function(self, f: types.FunctionType) -> str:
        if _is_library(f.__module__):
            return _library_token("function", f.__module__, f.__qualname__)
        cells = [self.value(c.cell_contents) if _cell_full(c) else "empty" for c in (f.__closure__ or ())]
        return "\n".join((f"def {f.__module__}.{f.__qualname__}", self._code(f.__code__, f.__globals__),
                          f"defaults={self.value(f.__defaults__)}", f"kwdefaults={self.value(f.__kwdefaults__)}",
                          f"closure={cells}"))

    def _code(self, co: types.CodeType, globals_: dict[str, Any]) -> str:
        consts = [self._code(c, globals_) if isinstance(c, types.CodeType) else self.value(c) for c in co.co_consts]
        reads = [f"{name}={self.value(globals_[name]) if name in globals_ else 'builtin'}"
                 for name in sorted(_global_reads(co))]
        # file and line table too: the graph's node sources (error messages) name the user's lines
        lines = getattr(co, "co_linetable", b"") or getattr(co, "co_lnotab", b"")
        return "\n".join((co.co_code.hex(), repr((co.co_names, co.co_varnames, co.co_freevars, co.co_cellvars,
                                                  co.co_argcount, co.co_kwonlyargcount, co.co_flags)),
                          f"at {co.co_filename}:{co.co_firstlineno}:{lines.hex()}",
                          f"consts={consts}", f"globals={reads}",
                          f"module attributes={self._attribute_reads(co, globals_)}"))

    def _attribute_reads(self, co: types.CodeType, globals_: dict[str, Any]) -> list[str]:
        """What the code may read from the modules it reads as globals (``config.USE_SILU``,
        ``sys.argv``, ``os.environ``). A module itself is keyed by its file or its library's
        version, not by what the running program has put into it since (a flag an argument
        parser set): each attribute of such a module that the code names is keyed by its value."""
        names = frozenset(co.co_names)
        found: list[str] = []
        for g in sorted(_global_reads(co)):
            m = globals_.get(g)
            if isinstance(m, types.ModuleType):
                found += self._module_attributes(g, m, names, 0)
        return found

    def _module_attributes(self, path: str, m: types.ModuleType, names: frozenset[str], depth: int) -> list[str]:
        found: list[str] = []
        library = _is_library(m.__name__)
        attrs = vars(m)  # not getattr: a module's __getattr__ may import or compute
        for name in sorted(names & attrs.keys()):
            v, where = attrs[name], f"{path}.{name}"
            if isinstance(v, types.ModuleType):
                if depth < _MODULE_DEPTH:  # torch.backends.cudnn.enabled: a chain of modules
                    found += self._module_attributes(where, v, names, depth + 1)
                continue
            try:
                found.append(f"{where}={self.value(v)}")
            except Unkeyable as exc:
                if not library:  # the user's own module holds it: the key cannot promise anything
                    raise Unkeyable(f"{where}: {exc}") from None
                # a library's internal object (torch.ops, sys.stdout): keyed by its version, as before
        return found

    def _module_object(self, m: types.ModuleType) -> str:
        if _is_library(m.__name__):
            return _library_token("module", m.__name__, "")
        path = getattr(m, "__file__", None)
        if not path or not os.path.isfile(path):
            raise Unkeyable(f"reads module {m.__name__}, which has no source file")
        st = os.stat(path)
        return f"module {m.__name__}:{_file_digest(path, st.st_mtime_ns, st.st_size)}"


def _cell_full(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=4096)
def _global_reads(co: types.CodeType) -> frozenset[str]:
    """Names ``co`` reads as globals (not attribute names, which ``co_names`` also holds)."""
    return frozenset(ins.argval for ins in dis.get_instructions(co)
                     if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"))


# --- storing and loading ------------------------------------------------------------------------


def _reduce_count(c: itertools.count) -> tuple[Any, tuple[int]]:  # type: ignore[type-arg]
    return itertools.count, (int(repr(c)[len("count("):-1]),)  # Graph's name counter, count(N)


class _GraphPickler(pickle.Pickler):
    """Weights are written as their names, never their values."""

    def __init__(self, file: io.BytesIO, weights: dict[int, str]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.weights = weights
        self.dispatch_table = {**copyreg.dispatch_table, itertools.count: _reduce_count}

    def persistent_id(self, obj: Any) -> str | None:
        return self.weights.get(id(obj)) if isinstance(obj, np.ndarray) else None


class _GraphUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, bind: Any) -> None:
        super().__init__(file)
        self.bind = bind

    def persistent_load(self, pid: Any) -> Any:
        return self.bind(pid)


def _state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    found.update(model.named_buffers(remove_duplicate=False))
    return found


def store(key: str, graph: Graph, model: torch.nn.Module) -> None:
    """Keep ``graph`` (as just imported from ``model``, before any pass changed it) under ``key``.
    The model's own weights are stored by name; tensor constants export lifted (attributes that
    are not parameters or buffers, keyed by value) are stored by value."""
    from sol_pytorch.aten import WEIGHT_VALUES
    from sol_pytorch.importer import quiet_torch

    if graph.meta.get(WEIGHT_VALUES):
        log.debug("sol: the graph of %s holds weight values; not kept in the trace cache", graph.name)
        return
    own = _state_tensors(model)
    weights = {id(v.data): v.name for v in graph.values()
               if v.kind is ValueKind.PARAM and v.name in own and v.data is not None}
    buf = io.BytesIO()
    try:
        with quiet_torch():
            _GraphPickler(buf, weights).dump(graph)
    except (pickle.PicklingError, TypeError, AttributeError, ValueError) as exc:
        log.debug("sol: the graph of %s is not kept in the trace cache (%s)", graph.name, exc)
        return

    def write(tmp: Path) -> Path:
        path = tmp / ARTIFACT
        path.write_bytes(buf.getvalue())
        return path

    try:
        cache_get_or_build(key, write)
        counts["stored"] += 1
    except (OSError, CacheError) as exc:  # a read-only or full cache: tracing again next time is all it costs
        log.warning("sol: could not write the trace cache entry %s: %s", key, exc)


def load(key: str, model: torch.nn.Module) -> Graph | None:
    """The graph stored under ``key``, its weights bound to ``model``'s tensors; None if absent
    or unusable (an unusable entry is removed, with a warning, so the next store replaces it)."""
    from sol_pytorch.importer import numpy_view, quiet_torch

    path = cache_lookup(key)  # a damaged entry (checksum) is removed there, with a warning
    if path is None:
        counts["miss"] += 1
        return None
    own = _state_tensors(model)
    try:
        with quiet_torch():
            graph = _GraphUnpickler(io.BytesIO(path.read_bytes()), lambda name: numpy_view(own[name], name)).load()
        if not isinstance(graph, Graph):
            raise TypeError(f"holds a {type(graph).__name__}, not a graph")
    except Exception as exc:  # noqa: BLE001 - e.g. an entry from another build: trace instead
        log.warning("sol: trace cache entry %s is unusable (%s: %s); tracing again", path.parent,
                    type(exc).__name__, exc)
        cache_discard(key)
        counts["miss"] += 1
        return None
    counts["hit"] += 1
    log.info("sol: %s imported from the trace cache (not traced)", graph.name)
    return graph
