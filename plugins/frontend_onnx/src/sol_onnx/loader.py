"""Reading an ONNX model: a path or a ``ModelProto``, checked, at an opset sol's converters read.

Why each step:

* ``onnx.checker`` first: a malformed model (a node reading a tensor nobody defines, an attribute
  of the wrong type) would otherwise fail deep inside a converter with a message about sol. The
  error names the file (or the graph) and says what the checker found.
* The user's model is never changed: inlining local functions and converting the opset work on a
  copy (converting needs one anyway), and external data is read without touching the tensors.
* Opsets: the converters are written for the default domain's opsets :data:`MIN_OPSET` to the
  newest the installed ``onnx`` knows. An older model is converted with ONNX's version converter
  (the adapters between opsets are ONNX's own, so the semantics are theirs, e.g. Softmax's
  coercion to 2-D before opset 13); where it cannot convert, the error says which opsets and why.
* External data: ``onnx.load`` of a path leaves the tensors' bytes in their files; each
  initializer is read when the importer needs it, relative to the model's folder
  (:func:`initializer_array`). A location is untrusted input: an absolute one, or one that leaves
  the model's folder (``../``, a link pointing out), is refused, never opened.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from sol.plugin_api import SolError

MIN_OPSET = 13
"""The oldest default-domain opset the converters read (older models are converted to it)."""

DEFAULT_DOMAINS = ("", "ai.onnx")


class OnnxModelError(SolError, ValueError):
    """The model cannot be read: not a valid ONNX model, an opset sol cannot convert, unsafe external data."""


@dataclass
class Loaded:
    """A model ready to import: ``model`` is the user's own object unless it had to be changed
    (then a converted copy), ``base_dir`` where its external data lives, ``opset`` the default
    domain's version."""

    model: Any  # onnx.ModelProto
    name: str
    base_dir: str | None
    opset: int
    converted_from: int | None = None


def max_opset() -> int:
    return int(onnx.defs.onnx_opset_version())


def load(model: Any) -> Loaded:
    """The model (a path or a ``ModelProto``) checked and at an opset the converters read."""
    if isinstance(model, onnx.ModelProto):
        proto, where, base_dir = model, f"ONNX model {_graph_name(model)!r}", None
    else:
        path = Path(os.fspath(model))
        if not path.is_file():
            raise FileNotFoundError(f"no ONNX model at {path}")
        where, base_dir = f"ONNX model file {path}", str(path.resolve().parent)
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise OnnxModelError(f"{where} cannot be read as ONNX ({type(exc).__name__}: {exc})") from exc
    check(proto, where, None if base_dir is None else str(path))
    opset = default_opset(proto)
    name = _graph_name(proto) or (Path(os.fspath(model)).stem if base_dir else "onnx_model")
    loaded = Loaded(proto, name, base_dir, opset)
    if proto.functions:
        loaded.model = _inlined(proto, where)
    if opset < MIN_OPSET:
        loaded.model = _converted(loaded.model, opset, MIN_OPSET, where)
        loaded.opset, loaded.converted_from = MIN_OPSET, opset
    elif opset > max_opset():
        raise OnnxModelError(f"{where} uses opset {opset}; the installed onnx {onnx.__version__} knows opsets up to "
                             f"{max_opset()}: upgrade onnx (pip install -U onnx)")
    return loaded


def check(proto: Any, where: str, path: str | None) -> None:
    """``onnx.checker`` on the model (on its file where it has one: the checker then also checks
    its external data files); its complaint, with the file, as an :class:`OnnxModelError`."""
    try:
        onnx.checker.check_model(path if path is not None else proto)
    except onnx.checker.ValidationError as exc:
        raise OnnxModelError(f"{where} fails onnx.checker: {str(exc).strip()}") from exc


def default_opset(proto: Any) -> int:
    for imp in proto.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            return int(imp.version)
    return 1 if proto.ir_version < 3 else max_opset()


def _converted(proto: Any, old: int, new: int, where: str) -> Any:
    from onnx import version_converter

    try:
        return version_converter.convert_version(proto, new)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError with its adapter's message
        raise OnnxModelError(f"{where} uses opset {old}; sol's ONNX converters read opsets {MIN_OPSET} to "
                             f"{max_opset()}, and onnx's version converter cannot convert it to {new}: "
                             f"{str(exc).strip()}") from exc


def _inlined(proto: Any, where: str) -> Any:
    """Model-local functions inlined (a copy): their bodies are ordinary nodes to convert."""
    try:
        from onnx import inliner
    except ImportError:  # onnx < 1.15: the function calls stay (and run in ONNX Runtime)
        return proto
    try:
        return inliner.inline_local_functions(proto)
    except Exception as exc:
        raise OnnxModelError(f"{where}: its local functions cannot be inlined: {exc}") from exc


def _graph_name(proto: Any) -> str:
    return str(proto.graph.name or "")


def uses_external_data(tensor: Any) -> bool:
    return bool(tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL)


def initializer_array(tensor: Any, base_dir: str | None) -> np.ndarray:
    """The initializer's values. Raw data becomes a read-only NumPy view of the protobuf's bytes
    (no copy); external data is read from its file, which must lie inside ``base_dir``."""
    if uses_external_data(tensor):
        if base_dir is None:
            raise OnnxModelError(f"initializer {tensor.name!r} keeps its data in an external file; pass the model's "
                                 f"path (sol.onnx.optimize('model.onnx')) so that sol knows where to read it")
        _check_location(tensor, base_dir)
        return numpy_helper.to_array(tensor, base_dir)
    return numpy_helper.to_array(tensor)


def _check_location(tensor: Any, base_dir: str) -> None:
    location = next((e.value for e in tensor.external_data if e.key == "location"), "")
    base = Path(base_dir).resolve()
    target = (base / location).resolve()
    if not location or os.path.isabs(location) or base not in target.parents:
        raise OnnxModelError(f"initializer {tensor.name!r}: external data location {location!r} is not a file "
                             f"inside the model's folder {base}; refusing to read it")
