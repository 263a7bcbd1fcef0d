"""The user-facing entry points: ``optimize`` and ``explain``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sol import cache, device_select, progress
from sol.config import config
from sol.errors import SolError
from sol.fallback import compile_partitioned, is_partitioned
from sol.ir import Graph
from sol.planner.plan import GroupKind, Plan
from sol.program import Program
from sol.roles import CORE_PLUGIN, Backend, Device, Frontend, Source, require_supported
from sol.sourcetext import file_name

if TYPE_CHECKING:
    from sol.explanation import Explanation

log = logging.getLogger("sol")


def _configure_logging() -> None:
    level = os.environ.get("SOL_LOG")
    if level:
        logging.basicConfig()
        log.setLevel(level.upper())


def frontend_for(model: Any) -> Frontend:
    from sol.plugins import roles

    frontends = roles().frontends
    for f in frontends:
        if f.accepts(model):
            return f
    # Core's own "ir" frontend is always there: say so when no framework's frontend is.
    framework = [n for n in frontends.names() if frontends.owner(n) != CORE_PLUGIN]
    hint = "" if framework else " (for sol IR graphs; for a framework: pip install sol-frontend-pytorch, ...)"
    raise SolError(f"no sol frontend accepts a {type(model).__module__}.{type(model).__qualname__}; "
                   f"installed frontends: {', '.join(frontends.names())}{hint}{frontends.unknown_note}")


def resolve_device(name: str | None, stacklevel: int = 4) -> Device:
    from sol.plugins import roles

    return device_select.checked(roles().devices.get(name or device_select.get()), stacklevel=stacklevel)


def plan(graph: Graph, device: str | None = None, training: bool = False, options: dict | None = None) -> Plan:
    """Run core's passes on ``graph`` and plan it for ``device``."""
    from sol.planner.partition import plan_graph
    from sol.plugins import manager, roles

    if is_partitioned(graph):
        raise SolError(f"graph {graph.name!r} has framework nodes (operations its framework runs): "
                       f"sol.fallback.compile_partitioned compiles it in parts")
    options = dict(options or {})
    dev = resolve_device(device)
    manager().hook.sol_graph_imported(graph=graph, options=options)
    roles().passes.run(graph, training=training)
    require_supported(graph, dev)  # ops the device declares unsupported: a clear error, not a codegen crash
    result = plan_graph(graph, dev, roles().backends.for_device(dev.name), options)
    manager().hook.sol_plan_ready(plan=result)
    return result


def compile_graph(graph: Graph, device: str | None = None, training: bool = False,
                  options: dict | None = None) -> Program:
    """Graph -> loaded Program: passes, planner, codegen, compile (cached), load."""
    from sol.plugins import roles

    _configure_logging()
    the_plan = plan(graph, device, training, options)
    dev = roles().devices.get(the_plan.device)
    source = dev.render(the_plan)
    _keep_sources(graph.name, source.files)
    return build_program(the_plan, dev, source, what=" (training)" if training else "")


def compile_graphs(graphs: list[Graph], device: str | None = None, training: bool = False,
                   options: dict | None = None, batch: int = 64,
                   return_exceptions: bool = False) -> list[Program | SolError]:
    """Many graphs -> their loaded Programs, as ``compile_graph`` gives each, but compiled
    ``batch`` at a time into one artifact where the device's compiler can
    (``Compiler.batch_compiles``): for many small networks (an op-by-op test suite, ONNX's
    backend cases), where a C++ compiler's fixed cost per run (parsing the same headers) is most
    of the time. A batch is cached as a whole (its sources, the compiler, the plugins); a device
    without batch compiles compiles and caches each graph on its own.

    ``return_exceptions``: a graph the device refuses (or whose compile fails) gives its SolError
    in its place instead of raising, and a batch that fails to compile is compiled again one
    network at a time, so that one bad network does not take the others down."""
    from sol.plugins import manager, records

    _configure_logging()
    results: list[Program | SolError | None] = [None] * len(graphs)
    planned: list[tuple[int, Plan, Source]] = []
    dev = resolve_device(device)
    for i, g in enumerate(graphs):
        try:
            the_plan = plan(g, dev.name, training, options)
            planned.append((i, the_plan, dev.render(the_plan)))
        except SolError as exc:
            if not return_exceptions:
                raise
            results[i] = exc
    versions = ";".join(f"{r.name}={r.version}" for r in sorted(records(), key=lambda r: r.name))
    size = max(batch, 1) if dev.compiler.batch_compiles else 1
    for start in range(0, len(planned), size):
        chunk = planned[start:start + size]
        if len(chunk) == 1 or not dev.compiler.batch_compiles:
            for i, the_plan, source in chunk:
                results[i] = _one(the_plan, dev, source, return_exceptions)
            continue
        sources = [source for _, _, source in chunk]
        key = cache.key_of("batch", *(source.text for source in sources), dev.compiler.identity(), versions)

        def build(tmp: Path, sources: list[Source] = sources) -> Path:
            with progress.step(f"compiling {len(sources)} networks in one batch for {dev.name}"):
                return dev.compiler.compile_batch(sources, tmp)

        try:
            artifact, cached = cache.get_or_build(key, build)
        except SolError:
            if not return_exceptions:
                raise
            for i, the_plan, source in chunk:  # find the bad one(s): each on its own
                results[i] = _one(the_plan, dev, source, return_exceptions)
            continue
        for index, (i, the_plan, source) in enumerate(chunk):
            program = dev.load_batch(artifact, index, the_plan, source)
            program.info.update(plan=the_plan, cached=cached, cache_key=key, artifact=str(artifact),
                                source_meta=source.meta, batch_index=index)
            manager().hook.sol_program_loaded(program=program)
            results[i] = program
    return [r for r in results if r is not None]


def _one(the_plan: Plan, dev: Device, source: Source, return_exceptions: bool) -> Program | SolError:
    try:
        return build_program(the_plan, dev, source)
    except SolError as exc:
        if not return_exceptions:
            raise
        return exc


def replan(the_plan: Plan, backends: list[Backend] | None = None, options: dict | None = None) -> Plan:
    """``the_plan``'s graph planned again, e.g. with other library backends (a device's
    variant of a network: x86's exact twin without finite-only fusions). The planner rewrites the
    graph it plans, so this plans a structural copy: ``the_plan`` stays as it is. ``backends``:
    default, the device's registered ones; ``options``: default, the plan's."""
    from sol.autodiff.graphs import clone_graph
    from sol.planner.partition import plan_graph
    from sol.plugins import roles

    dev = roles().devices.get(the_plan.device)
    graph, _ = clone_graph(the_plan.graph)
    chosen = roles().backends.for_device(dev.name) if backends is None else backends
    return plan_graph(graph, dev, chosen, the_plan.options if options is None else options)


def build_program(the_plan: Plan, dev: Device, source: Source, what: str = "") -> Program:
    """Compile ``source`` (rendered from ``the_plan`` by ``dev``) through the compile cache and
    load it: what ``compile_graph`` does after rendering, for devices that render a variant of a
    plan themselves. The cache key is the source, the compiler and every plugin's version.
    ``what``: said after the graph's name in the progress line (" (training)")."""
    from sol.plugins import manager, records

    t0 = time.perf_counter()
    graph = the_plan.graph
    versions = ";".join(f"{r.name}={r.version}" for r in sorted(records(), key=lambda r: r.name))
    key = cache.key_of(source.text, dev.compiler.identity(), versions)

    def build(tmp: Path) -> Path:  # only on a cache miss
        groups = sum(g.kind is not GroupKind.ALIAS for g in the_plan.groups)
        with progress.step(f"compiling {graph.name}{what} for {dev.name}: {groups} group{'' if groups == 1 else 's'}"):
            return dev.compiler.compile(source, tmp)

    artifact, cached = cache.get_or_build(key, build)
    log.info("sol: %s %s in %.2fs", "loaded cached" if cached else "compiled", graph.name, time.perf_counter() - t0)
    program = dev.load(artifact, the_plan, source)
    program.info.update(plan=the_plan, cached=cached, cache_key=key, artifact=str(artifact), source_meta=source.meta,
                        build_seconds=time.perf_counter() - t0)
    manager().hook.sol_program_loaded(program=program)
    return program


def _keep_sources(name: str, files: dict[str, str]) -> None:
    """``$SOL_DEBUG_DIR/<network>/<file>``: the generated sources, for reading. The network's
    name is the model's (a class name, a function's ``__name__``): untrusted, so its folder is a
    safe one-component version of it (:func:`sol.sourcetext.file_name`), never a path."""
    debug_dir = os.environ.get("SOL_DEBUG_DIR")
    if not debug_dir:
        return
    root = Path(debug_dir)
    out = root / file_name(name)
    out.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        target = out / file_name(file)
        if target.resolve().parent != out.resolve():  # cannot happen with file_name; the invariant
            raise SolError(f"refusing to write {target} outside {out}")
        target.write_text(text)


def optimize(model: Any, *example_inputs: Any, device: str | None = None, training: bool | None = None,
             **options: Any) -> Any:
    """Return an object of ``model``'s framework type that computes the same, faster.

    A network built in sol's IR (a :class:`sol.ir.Graph`) needs no framework: it gives a
    :class:`sol.ir_frontend.CompiledGraph` (NumPy arrays in, a list of arrays out).
    ``example_inputs``: example tensors or shapes (e.g. ``x.size()``), one per model input.
    ``device``: a device name (``"x86"``, ...); default ``sol.device.get()``.
    ``training``: compile for training (gradients, training-mode behaviour) or for inference;
    default: the model's own mode, as the frontend reports it.
    """
    _configure_logging()  # before the first step, so that SOL_LOG=info shows tracing too
    frontend = frontend_for(model)
    if training is None:  # follow the model: one being trained is compiled for training
        training = frontend.training_mode(model)
    options = dict(options, training=training)
    # The device first (cheap): its one-time work (e.g. building a runtime library) then runs in
    # the background while the frontend traces the model. None named: where the example tensors
    # live (a GPU's tensors go to that GPU's device), else the default.
    if device is None and not config["device"]:
        device = device_select.for_tensors(frontend.example_device(example_inputs))
    dev = resolve_device(device, stacklevel=3)
    options["device"] = dev.name  # the frontend asks this device what it compiles (its fallback)
    dev.prepare()
    with progress.step(_tracing(model, frontend, training)):
        graph = frontend.import_graph(model, example_inputs, options)
    if is_partitioned(graph):  # the frontend marked what its framework runs: compiled in parts
        parts = compile_partitioned(graph, dev.name, training=training, options=options)
        return frontend.wrap(parts, model, graph)
    program = compile_graph(graph, dev.name, training=training, options=options)
    return frontend.wrap(program, model, graph)


def optimize_many(models: Sequence[Any], device: str | None = None, batch: int = 64,
                  return_exceptions: bool = False, **options: Any) -> list[Any]:
    """``optimize`` for many models at once, the same result for each, with their compiles put
    together (:func:`compile_graphs`: on x86 one g++ run for up to ``batch`` networks instead of
    one each). For many small models (an op-by-op test suite, a model zoo's heads), where a
    compiler's fixed cost per run dominates. ``models``: each a model, or a ``(model,
    example_inputs)`` pair with a tuple of examples. A model with parts its framework runs
    (fallback) or compiled for training is compiled on its own, as ``optimize`` does.
    ``return_exceptions``: a model sol refuses gives its SolError in its place instead of raising."""
    _configure_logging()
    dev = resolve_device(device, stacklevel=3)
    dev.prepare()
    results: list[Any] = [None] * len(models)
    pending: list[tuple[int, Frontend, Any, Graph]] = []
    for i, entry in enumerate(models):
        model, examples = entry if isinstance(entry, tuple) else (entry, ())
        try:
            frontend = frontend_for(model)
            training = options.get("training")
            if training is None:
                training = frontend.training_mode(model)
            opts = dict(options, training=training, device=dev.name)
            with progress.step(_tracing(model, frontend, training)):
                graph = frontend.import_graph(model, tuple(examples), opts)
            if is_partitioned(graph):
                results[i] = frontend.wrap(compile_partitioned(graph, dev.name, training=training, options=opts),
                                           model, graph)
            elif training:
                results[i] = frontend.wrap(compile_graph(graph, dev.name, training=True, options=opts), model, graph)
            else:
                pending.append((i, frontend, model, graph))
        except SolError as exc:
            if not return_exceptions:
                raise
            results[i] = exc
    programs = compile_graphs([g for _, _, _, g in pending], dev.name, options=dict(options, device=dev.name),
                              batch=batch, return_exceptions=return_exceptions)
    for (i, frontend, model, graph), program in zip(pending, programs):
        results[i] = program if isinstance(program, SolError) else frontend.wrap(program, model, graph)
    return results


def explain(model: Any, *example_inputs: Any, device: str | None = None, **options: Any) -> Explanation:
    """The plan sol would run for ``model``: groups, layer classes, fused ops, libraries."""
    from sol.explanation import Explanation
    from sol.plugins import roles

    _configure_logging()
    frontend = frontend_for(model)
    dev = resolve_device(device, stacklevel=3)
    with progress.step(_tracing(model, frontend, False)):
        graph = frontend.import_graph(model, example_inputs, dict(options, device=dev.name))
    the_plan = plan(graph, dev.name, False, options)
    return Explanation(the_plan, roles().devices.get(the_plan.device))


def _tracing(model: Any, frontend: Frontend, training: bool) -> str:
    """The tracing step's description: the model's class (its instance name may be long)."""
    return f"tracing {type(model).__name__} ({frontend.name}{', training' if training else ''})"
