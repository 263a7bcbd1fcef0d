"""The engines ``sol bench`` compares, each turning (model, example input) into a callable.

Run inside a worker process (:mod:`sol_benchmarks.worker`), never in the CLI's: each engine gets
a fresh process so that neither its memory nor its thread pools mask another's. ``prepare`` does
whatever the engine needs before its first result (tracing, compiling, exporting, loading); in
the ``cold`` phase its caches are empty, in the ``run`` phase they hold what ``cold`` left.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

Runner = Callable[[], Any]
ALIASES = {"eager": "eager", "pytorch": "eager", "torch.compile": "torch.compile", "compile": "torch.compile",
           "inductor": "torch.compile", "onnxruntime": "onnxruntime", "ort": "onnxruntime", "onnx": "onnxruntime",
           "sol": "sol"}
TITLES = {"eager": "PyTorch eager", "torch.compile": "torch.compile", "onnxruntime": "ONNX Runtime", "sol": "sol"}
COMPILED = ("torch.compile", "sol")
"""Engines with a compile cache: cold compile and warm first result are measured for these."""
NEEDS_COLD = ("torch.compile", "onnxruntime", "sol")
"""Engines whose ``cold`` phase must run before ``run`` (onnxruntime: the export)."""
TRAINING = ("eager", "torch.compile", "sol")
"""Engines that run a training step (ONNX Runtime runs inference only: it is left out of
training rows rather than given a cell that says so on every row)."""
MODES = {"infer": "inference", "train": "training step"}
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def canonical(name: str) -> str:
    try:
        return ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose from eager, torch.compile, onnxruntime, sol "
                         f"(aliases: {', '.join(sorted(set(ALIASES) - set(TITLES)))})") from None


def prepare(engine: str, model: Any, x: Any, workdir: Path, phase: str, threads: int,
            notes: list[str]) -> Runner:
    """The engine's forward on ``x`` as a no-argument callable returning its output."""
    return {"eager": _eager, "torch.compile": _compiled, "onnxruntime": _onnxruntime, "sol": _sol}[engine](
        model, x, workdir, phase, threads, notes)


def _eager(model: Any, x: Any, workdir: Path, phase: str, threads: int, notes: list[str]) -> Runner:
    return lambda: model(x)


def _compiled(model: Any, x: Any, workdir: Path, phase: str, threads: int, notes: list[str]) -> Runner:
    import torch

    # Inductor's default mode; its caches live in TORCHINDUCTOR_CACHE_DIR, set by the harness.
    fn = torch.compile(model)
    return lambda: fn(x)


def _onnx_path(workdir: Path) -> Path:
    return workdir / "model.onnx"


def _onnxruntime(model: Any, x: Any, workdir: Path, phase: str, threads: int, notes: list[str]) -> Runner:
    import torch

    path = _onnx_path(workdir)
    if phase == "cold" or not path.exists():
        if phase != "cold":
            raise RuntimeError(f"no exported model at {path}: the export (cold phase) failed or did not run")
        errors: list[str] = []
        # torch's default exporter (torch.export based); the TorchScript one where it is still there.
        for dynamo in (True, False):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["x"])
                if dynamo is False:
                    notes.append(f"exported with the TorchScript exporter (the default one failed: {errors[0]})")
                break
            except Exception as exc:  # report both exporters' reasons
                errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        else:
            raise RuntimeError("torch.onnx.export failed: " + " | ".join(errors))
    session = ort_session(path, threads)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return lambda: session.run(None, feed)[0]


def ort_session(path: Path, threads: int) -> Any:
    """ONNX Runtime's CPU session as the benchmarks run it: all graph optimizations, ``threads``
    intra-op threads, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def prepare_step(engine: str, model: Any, x: Any, workdir: Path, phase: str, threads: int,
                 notes: list[str], steps: int = 1) -> Runner:
    """One training step as a no-argument callable returning the loss (a 0-d tensor): the
    engine's forward on a batch shaped like ``x`` (``model`` in train mode), cross-entropy
    against random labels, ``backward()``, and an SGD-with-momentum step on the model's
    parameters. The loss and the optimizer are PyTorch's in every engine (as a user writes
    them), so the rows compare what the engines do to the model's forward and backward.

    Step ``k`` takes batch ``k % steps`` of a list made before the first step, the same in every
    engine's process (the first is ``x``). Distinct batches matter: a network fitted again and
    again to one batch drives its loss and gradients towards zero within a few steps, and
    PyTorch's kernels then slow down several-fold on denormal numbers, which says nothing about
    training."""
    import torch

    if engine not in TRAINING:
        raise ValueError(f"{TITLES.get(engine, engine)} runs inference only")
    if engine == "eager":
        forward = model
    elif engine == "torch.compile":
        forward = torch.compile(model)
    else:
        forward = _sol_optimize(model, x, phase, notes)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    def another(k: int) -> Any:
        generator = torch.Generator().manual_seed(1000 + k)
        if x.dtype.is_floating_point:
            return torch.rand(x.shape, generator=generator, dtype=x.dtype)
        return torch.randint(0, int(x.max()) + 1, x.shape, generator=generator, dtype=x.dtype)  # token ids

    batches = [x] + [another(k) for k in range(1, max(steps, 1))]
    labels: list[Any] = []
    taken = [0]

    def step() -> Any:
        k = taken[0] % len(batches)
        taken[0] += 1
        out = forward(batches[k])
        out = out[0] if isinstance(out, (tuple, list)) else out
        if not labels:  # made once the class count is known; the same in every engine's process
            gen = torch.Generator().manual_seed(1)
            labels.extend(torch.randint(0, out.shape[-1], out.shape[:1], generator=gen) for _ in batches)
        loss = torch.nn.functional.cross_entropy(out, labels[k])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def _sol(model: Any, x: Any, workdir: Path, phase: str, threads: int, notes: list[str]) -> Runner:
    fast = _sol_optimize(model, x, phase, notes)
    return lambda: fast(x)


def _sol_optimize(model: Any, x: Any, phase: str, notes: list[str]) -> Any:
    """``sol.optimize`` on x86 (for training when ``model`` is in train mode), noting a
    fallback to PyTorch and a warm process that missed the compile cache."""
    import sol
    from sol.plugin_api import SolError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = sol.optimize(model, x, device="x86")
    for w in caught:
        if "fallback" in type(w.message).__name__.lower():
            notes.append("partly run in PyTorch: " + str(w.message).splitlines()[0])
    program = getattr(fast, "program", None)
    if program is None:
        raise SolError("sol.optimize returned no compiled program")
    if phase == "run" and not program.info.get("cached"):
        notes.append("the warm process did not find the network in the compile cache (compiled again)")
    return fast
