"""Outputs of any structure: taking a model's result apart into tensors and building it again.

``torch.export`` returns what ``forward`` returns only when every piece of it is a tensor, a
Python number or a container PyTorch's pytree knows (tuple, list, dict, namedtuple, and the
dataclasses libraries register, such as transformers' ``ModelOutput``). Anything else in the
result, e.g. the ``DynamicCache`` a transformers decoder returns with ``use_cache=True``, makes
it fail ("Found DynamicCache in output, which is not a known type"). So the traced ``forward``
is wrapped (:func:`flattening_forward`): where the result holds such objects, the wrapper
returns its tensors as one flat tuple instead, and a :class:`Rebuild` remembers how to build the
result again around the tensors a compiled call computes.

How an object is built again: a shallow copy of the object met while tracing (``copy.copy``,
so its class and every attribute that holds no tensor are the traced ones; immutable values
only, see :func:`_walk`) with each attribute that holds tensors built again in turn. Every call
gets objects of its own: nothing a call returns is shared with another call's result, except
immutable values. Objects whose tensors cannot be found for certain (no ``__dict__``, slots, a
reference cycle, a mutable value of an unknown kind) are refused with :class:`NotFlattenable`,
and the model then goes the way of models ``torch.export`` cannot take at all.
"""

from __future__ import annotations

import copy
import enum
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

_IMMUTABLE = (int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device, torch.Size, enum.Enum,
              type, types.FunctionType, types.BuiltinFunctionType, range, slice, frozenset)
"""Values an object built again may share with the traced one: they cannot change, and hold no tensor."""


class NotFlattenable(Exception):
    """A part of the model's result whose tensors cannot be found for certain."""


# --- the shape of a result ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    index: int  # into the flat tensors


@dataclass(frozen=True)
class _Keep:
    value: Any  # immutable: shared


@dataclass(frozen=True)
class _Seq:
    kind: type
    items: tuple[Any, ...]


@dataclass(frozen=True)
class _Map:
    kind: type
    items: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True)
class _Obj:
    template: Any  # the traced object (its tensor attributes are replaced on every copy)
    attrs: tuple[tuple[str, Any], ...]  # only the attributes that are built again


def _walk(x: Any, tensors: list[torch.Tensor], path: tuple[int, ...]) -> Any:
    """The shape of ``x``: tensors numbered in the order met, everything else kept or built again."""
    if isinstance(x, torch.Tensor):
        tensors.append(x)
        return _Slot(len(tensors) - 1)
    if isinstance(x, _IMMUTABLE):
        return _Keep(x)
    if id(x) in path:
        raise NotFlattenable(f"a reference cycle through a {type(x).__name__}")
    inner = path + (id(x),)
    if type(x) in (list, tuple) or (isinstance(x, tuple) and hasattr(x, "_fields")):
        return _Seq(type(x), tuple(_walk(e, tensors, inner) for e in x))
    if type(x) is dict:
        return _Map(dict, tuple((k, _walk(v, tensors, inner)) for k, v in x.items()))
    state = getattr(x, "__dict__", None)
    if not isinstance(state, dict) or type(x).__dict__.get("__slots__") or isinstance(x, (torch.nn.Module, dict,
                                                                                        list, tuple, set)):
        raise NotFlattenable(f"a {type(x).__name__} (its tensors cannot be found for certain)")
    attrs = tuple((k, _walk(v, tensors, inner)) for k, v in state.items())
    return _Obj(x, tuple((k, a) for k, a in attrs if not isinstance(a, _Keep)))


def _build(shape: Any, tensors: Sequence[Any]) -> Any:
    if isinstance(shape, _Slot):
        return tensors[shape.index]
    if isinstance(shape, _Keep):
        return shape.value
    if isinstance(shape, _Seq):
        items = [_build(s, tensors) for s in shape.items]
        if shape.kind in (list, tuple):
            return shape.kind(items)
        return shape.kind(*items)  # a namedtuple
    if isinstance(shape, _Map):
        return {k: _build(s, tensors) for k, s in shape.items}
    assert isinstance(shape, _Obj)
    out = copy.copy(shape.template)
    for name, s in shape.attrs:
        out.__dict__[name] = _build(s, tensors)
    return out


# --- the whole result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebuild:
    """How the model's result is built from the flat leaves the traced wrapper returned: the
    pytree ``spec`` of the result, with each of its leaves either taken as is (``None``) or an
    object built from ``count`` of the flat leaves (the shape in ``shapes``)."""

    spec: Any
    shapes: tuple[Any, ...]  # per pytree leaf: None (a leaf as is) or (shape, count)

    def __call__(self, flat: Sequence[Any]) -> Any:
        leaves, at = [], 0
        for shape in self.shapes:
            if shape is None:
                leaves.append(flat[at])
                at += 1
            else:
                s, count = shape
                leaves.append(_build(s, flat[at:at + count]))
                at += count
        return pytree.tree_unflatten(leaves, self.spec)


def _opaque(leaf: Any) -> bool:
    return not isinstance(leaf, (torch.Tensor, *_IMMUTABLE))


def split(result: Any) -> tuple[tuple[Any, ...], Rebuild] | None:
    """``result`` as a flat tuple of pytree leaves with the objects pytree does not know taken
    apart, and how to build it again; None where pytree knows every part (nothing to do)."""
    leaves, spec = pytree.tree_flatten(result)
    if not any(_opaque(leaf) for leaf in leaves):
        return None
    flat: list[Any] = []
    shapes: list[Any] = []
    for leaf in leaves:
        if not _opaque(leaf):
            flat.append(leaf)
            shapes.append(None)
            continue
        tensors: list[torch.Tensor] = []
        shapes.append((_walk(leaf, tensors, ()), len(tensors)))
        flat.extend(tensors)
    return tuple(flat), Rebuild(spec, tuple(shapes))


class Restructured:
    """The output spec of a program whose traced forward returned :func:`split`'s flat tuple:
    ``spec`` (the flat tuple's) and the :class:`Rebuild` that makes the model's result of it."""

    def __init__(self, spec: Any, rebuild: Rebuild) -> None:
        self.spec = spec
        self.rebuild = rebuild


def unflatten(leaves: list[Any], spec: Any) -> Any:
    """``pytree.tree_unflatten``, also for a :class:`Restructured` spec."""
    if isinstance(spec, Restructured):
        return spec.rebuild(pytree.tree_unflatten(leaves, spec.spec))
    return pytree.tree_unflatten(leaves, spec)


def flattening_forward(forward: Callable[..., Any], found: list[Rebuild]) -> Callable[..., Any]:
    """``forward`` returning :func:`split`'s flat tuple where its result needs it; the
    :class:`Rebuild` is appended to ``found`` (the last trace's is the one that holds)."""

    def flat_forward(*args: Any, **kwargs: Any) -> Any:
        result = forward(*args, **kwargs)
        parts = split(result)
        if parts is None:
            found.clear()
            return result
        found[:] = [parts[1]]
        return parts[0]

    return flat_forward
