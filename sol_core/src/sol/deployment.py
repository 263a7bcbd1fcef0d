"""Deployment: a network as a self-contained library that runs without Python (``sol.deploy``).

``deploy(model, *example_inputs, path=..., device="x86", name="net")`` imports the model for
inference, plans it once per batch size and hands the plans to the device
(:meth:`sol.roles.Device.deploy`), which writes a directory: a shared and a static library, a
documented C header, the weights, a built example and a README. Core decides what is deployed
(which plans, under which name, where); the device decides how (its sources, compiler and
runtime libraries). Core never names a device.

Nothing can fall back to the framework in a deployment (there is no framework at run time): a
model with an operation sol cannot compile is refused, the frontend's error naming the op.

``name`` becomes part of C identifiers and file names (``NAME_run``, ``libNAME.so``): it must be a
C identifier (checked here, never escaped). ``path`` is where the user asked: created, and a
directory that holds anything is refused unless ``overwrite=True``, which replaces only the files
an earlier deployment listed in its manifest (``sol-deploy.json``) and leaves others alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sol.commands import Command
from sol.errors import SolError

if TYPE_CHECKING:
    from sol.planner.plan import Plan
    from sol.roles import Frontend

MANIFEST = "sol-deploy.json"
"""The file listing what a deployment wrote (what ``overwrite=True`` may replace)."""
NAME_LIMIT = 64
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DeployTarget:
    """What a device's :meth:`~sol.roles.Device.deploy` gets: one inference plan per batch size
    (``batch_sizes[i]`` is ``plans[i]``'s; None where the model was deployed for its example
    inputs as they are), the directory to write into (empty, private to this call: core moves its
    contents to the user's path afterwards), the library's ``name`` (a C identifier, checked),
    whether the weights go into the library (``embed_weights``) or a file beside it, and the
    deploying sol-core's version (for the version stamp)."""

    plans: tuple[Plan, ...]
    directory: Path
    name: str
    batch_sizes: tuple[int | None, ...]
    embed_weights: bool = False
    sol_version: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deployment:
    """What :func:`deploy` wrote: the directory, the library's name, the device and the files
    (names inside ``path``)."""

    path: Path
    name: str
    device: str
    batch_sizes: tuple[int | None, ...]
    files: tuple[str, ...]

    def file(self, name: str) -> Path:
        """The path of one file of the deployment (``dep.file("net.h")``)."""
        if name not in self.files:
            raise KeyError(f"{name!r} is not a file of this deployment ({', '.join(self.files)})")
        return self.path / name


def check_name(name: object) -> str:
    """``name`` if it is a C identifier (a letter, then letters, digits and ``_``; at most
    :data:`NAME_LIMIT` characters), else a SolError saying what a name must be."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > NAME_LIMIT:
        raise SolError(f"deployment name {name!r} is not usable: it names the library's C functions and files "
                       f"(NAME_run, libNAME.so), so it must be a C identifier: a letter, then letters, digits or "
                       f"'_', at most {NAME_LIMIT} characters (e.g. 'resnet50')")
    return name


def check_batch_sizes(batch_sizes: Sequence[int] | None) -> tuple[int | None, ...]:
    """The batch sizes to compile: ``(None,)`` (the example inputs as they are) or distinct
    positive integers, in the order given."""
    if batch_sizes is None:
        return (None,)
    if isinstance(batch_sizes, int):
        batch_sizes = [batch_sizes]
    sizes = list(batch_sizes)
    if not sizes:
        raise SolError("batch_sizes is empty: give at least one batch size, or None for the example inputs' own")
    for b in sizes:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise SolError(f"batch sizes are positive integers, got {b!r} in {sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise SolError(f"batch sizes repeat: {sizes!r}")
    return tuple(sizes)


def _dtype_name(example: Any) -> str:
    """The sol dtype name of a framework tensor or array (``torch.float32`` -> ``float32``)."""
    return str(getattr(example, "dtype", "float32")).rsplit(".", 1)[-1]


def rebatch(frontend: Frontend, example: Any, batch: int) -> Any:
    """``example`` (a shape or a tensor) with its first dimension, the batch, set to ``batch``.
    A shape stays a shape; a tensor becomes the frontend's example tensor (zeros) of the new
    shape and the same dtype: only shapes and dtypes matter for compiling."""
    if isinstance(example, (tuple, list)) and all(isinstance(d, int) for d in example):
        if not example:
            raise SolError("batch_sizes: an input of rank 0 has no batch dimension")
        return (batch, *example[1:])
    shape = tuple(int(d) for d in getattr(example, "shape", ()))
    if not shape:
        raise SolError(f"batch_sizes: cannot set the batch of example input {type(example).__name__} "
                       f"(no shape, or rank 0): give shapes or tensors whose first dimension is the batch")
    return frontend.example_input((batch, *shape[1:]), _dtype_name(example))


def deploy(model: Any, *example_inputs: Any, path: str | os.PathLike[str], device: str = "x86", name: str = "net",
           batch_sizes: Sequence[int] | None = None, embed_weights: bool = False, overwrite: bool = False,
           **options: Any) -> Deployment:
    """Write ``model`` as a standalone library into the directory ``path``.

    The library computes the model's inference forward (as ``sol.optimize(model.eval(), ...)``
    would) with no Python and no sol at run time. ``example_inputs``: shapes or example tensors,
    one per model input. ``device``: the device it runs on (its plugin must implement
    deployment). ``name``: a C identifier naming the library (``libNAME.so``, ``NAME.h``,
    ``NAME_create``...). ``batch_sizes``: None compiles the example inputs' shapes; a list of batch
    sizes compiles one network per size into the one library (the first dimension of every input
    is its batch), chosen at run time by the inputs' sizes. ``embed_weights``: put the weights
    into the library instead of a separate ``NAME.weights`` file. ``overwrite``: write into a
    directory that is not empty, replacing an earlier deployment's files there. Other
    ``options`` go to the frontend and the planner as for ``optimize``.

    Returns a :class:`Deployment` (the directory and the files written); the directory's
    README says how to build against the library."""
    from sol import __version__
    from sol.api import _configure_logging, frontend_for, plan, resolve_device

    _configure_logging()
    check_name(name)
    sizes = check_batch_sizes(batch_sizes)
    if options.get("fallback", False) is not False:
        raise SolError("deploy: fallback=True is not possible: a deployed library has no framework to run "
                       "operations sol cannot compile")
    if options.get("training"):
        raise SolError("deploy: a deployed library computes inference only (training=False)")
    target = Path(os.fspath(path)).expanduser().absolute()
    old_files = _check_directory(target, overwrite)
    frontend = frontend_for(model)
    dev = resolve_device(device, stacklevel=3)
    options = dict(options, training=False, fallback=False)
    plans = [plan(_import(frontend, model, example_inputs, b, options), dev.name, False, options) for b in sizes]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.sol-deploy-", dir=target.parent))
    try:
        files = dev.deploy(DeployTarget(tuple(plans), staging, name, sizes, embed_weights, __version__, options))
        manifest = {"name": name, "device": dev.name, "sol": __version__, "batch_sizes": list(sizes),
                    "files": sorted(files)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into(staging, target, [*files, MANIFEST], old_files)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Deployment(target, name, dev.name, sizes, tuple(sorted([*files, MANIFEST])))


def _import(frontend: Frontend, model: Any, example_inputs: tuple[Any, ...], batch: int | None,
            options: dict[str, Any]) -> Any:
    """The model's inference graph for ``batch`` (None: the example inputs as given), refusing
    one that needs its framework at run time."""
    from sol.fallback import FRAMEWORK_OP, call_of, is_partitioned
    from sol.ir import INPUT_UPDATES

    examples = example_inputs if batch is None else tuple(rebatch(frontend, x, batch) for x in example_inputs)
    graph = frontend.import_graph(model, examples, dict(options))
    if graph.meta.get(INPUT_UPDATES):
        raise SolError(f"deploy: {graph.name} updates tensors in place (its inputs or the model's buffers); a "
                       f"deployed library computes a function of its inputs and cannot write such updates back "
                       f"into its caller's memory")
    if is_partitioned(graph):  # fallback=False makes frontends raise; this catches one that did not
        ops = sorted({call_of(n).label or "?" for n in graph.nodes if n.op == FRAMEWORK_OP})
        raise SolError(f"deploy: {graph.name} has operations sol cannot compile ({', '.join(ops)}); a deployed "
                       f"library cannot run them in the framework")
    return graph


def _check_directory(target: Path, overwrite: bool) -> list[str]:
    """Refuse a file, or a directory holding anything unless ``overwrite``; return the files an
    earlier deployment there listed (to be replaced)."""
    if target.exists() and not target.is_dir():
        raise SolError(f"deploy: {target} exists and is not a directory")
    if not target.is_dir() or not any(target.iterdir()):
        return []
    if not overwrite:
        raise SolError(f"deploy: {target} is not empty; pass overwrite=True (CLI: --overwrite) to replace an earlier "
                       f"deployment there, or choose an empty or new directory")
    try:
        listed = json.loads((target / MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    # Only plain names inside the directory: a manifest is a file anyone could have edited.
    return [f for f in listed if isinstance(f, str) and f and Path(f).name == f and f not in (".", "..")]


def _move_into(staging: Path, target: Path, files: list[str], old_files: list[str]) -> None:
    """Move the new files from ``staging`` into ``target``, removing the earlier deployment's."""
    target.mkdir(parents=True, exist_ok=True)
    for f in dict.fromkeys([*old_files, *files]):
        old = target / f
        if old.is_symlink() or old.is_file():
            old.unlink()
        elif old.is_dir():
            shutil.rmtree(old)
    for f in files:
        os.replace(staging / f, target / f)


# --- the CLI: sol deploy ----------------------------------------------------------------------------


def _batch_list(text: str) -> list[int]:
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes are comma-separated integers, got {text!r}") from None
    if not sizes or any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes are positive integers, got {text!r}")
    return sizes


def load_cli_model(spec: str) -> Any:
    """What ``sol deploy MODEL`` names: an ONNX file (its path, which the ONNX frontend takes), a
    Keras ``.keras`` file (loaded with Keras, in its safe mode: no code from the file runs) or a
    ``module:callable`` factory (called; a PyTorch module is put into eval mode)."""
    lower = spec.lower()
    if lower.endswith(".onnx"):
        if not Path(spec).is_file():
            raise SolError(f"sol deploy: no ONNX file {spec!r}")
        return spec
    if lower.endswith(".keras"):
        if not Path(spec).is_file():
            raise SolError(f"sol deploy: no Keras file {spec!r}")
        try:
            import keras
        except ImportError as exc:
            raise SolError(f"sol deploy: loading {spec!r} needs Keras (pip install tensorflow): {exc}") from exc
        return keras.models.load_model(spec, compile=False, safe_mode=True)
    from sol.cli import _load_model

    return _load_model(spec)


class DeployCommand(Command):
    """``sol deploy MODEL -o PATH``: :func:`deploy` from the command line. One of core's commands
    (``sol.commands.CORE_COMMANDS``: no plugin can register another ``deploy``), added to the
    parser like the commands plugins register."""

    name = "deploy"
    help = ("write a model as a standalone C library (shared and static, header, weights, example, README) "
            "that runs without Python")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        from sol.cli import _input_spec

        parser.add_argument("model", help="an ONNX file (model.onnx), a Keras file (model.keras), or module:factory "
                                          "returning a PyTorch module, e.g. mymodels:resnet50")
        parser.add_argument("-o", "--output", required=True, help="the directory to write (created; must be empty "
                                                                  "unless --overwrite)")
        parser.add_argument("--input-shape", action="append", default=[], type=_input_spec,
                            help="input shape, e.g. 1,3,224,224 (float32), or shape:dtype, e.g. 1,128:int64 (repeat "
                                 "per input; an ONNX file's declared shapes are used when left out)")
        parser.add_argument("--batch-sizes", type=_batch_list, default=None,
                            help="compile these batch sizes into the one library, e.g. 1,8 (the first dimension of "
                                 "every input is its batch); default: the input shapes as given")
        parser.add_argument("--device", default="x86", help="the device the library runs on (default x86)")
        parser.add_argument("--name", default="net", help="the library's name, a C identifier: libNAME.so, NAME.h, "
                                                          "NAME_run (default net)")
        parser.add_argument("--embed-weights", action="store_true",
                            help="put the weights into the library instead of a file NAME.weights beside it")
        parser.add_argument("--overwrite", action="store_true",
                            help="write into a directory that is not empty, replacing an earlier deployment's files")

    def run(self, args: argparse.Namespace) -> int:
        check_name(args.name)  # before loading a model (seconds): a bad name fails at once
        model = load_cli_model(args.model)
        specs: list[tuple[tuple[int, ...], str | None]] = args.input_shape
        examples: list[Any] = [shape for shape, _ in specs]
        if any(dtype for _, dtype in specs):  # typed inputs: tensors of the model's framework
            from sol.api import frontend_for

            frontend = frontend_for(model)
            examples = [frontend.example_input(shape, dtype) if dtype else shape for shape, dtype in specs]
        if args.batch_sizes and not examples:
            raise SolError("sol deploy: --batch-sizes needs --input-shape (the shapes whose first dimension varies)")
        dep = deploy(model, *examples, path=args.output, device=args.device, name=args.name,
                     batch_sizes=args.batch_sizes, embed_weights=args.embed_weights, overwrite=args.overwrite)
        print(f"wrote {dep.path}: {', '.join(dep.files)}")
        print(f"build against it: see {dep.path / 'README.md'}")
        return 0
