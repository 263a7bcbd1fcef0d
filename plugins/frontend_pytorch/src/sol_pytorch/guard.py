"""Tracing that never touches the user's model, one trace at a time.

Why: ``torch.export`` is not thread-safe (it installs process-wide dispatch modes and patches
module calls), and while it runs it swaps a module's parameters and buffers for fake tensors and
switches modes. Two traces at once corrupted each other, and a trace racing a call (another thread
running the model, sol's own training programs reading the model's parameters, a ``state_dict``
being saved) could see, or keep, a fake tensor in place of a real weight.

So every trace (and every ``run_decompositions``, which traces again) holds :data:`TRACE_LOCK`,
and traces a :func:`tracing_copy` of the model: new module objects over the same parameter,
buffer and hook objects. Mode switches and attribute swaps land on the copy; the user's modules
are never written, even when ``forward`` raises half way through a trace.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import torch

TRACE_LOCK = threading.RLock()
"""Held while ``torch.export`` traces or decomposes, process-wide (re-entrant: a trace may
import a model that is itself optimized)."""

_CONTAINERS = (list, dict, set)


def tracing_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A structural copy of ``model`` to trace instead of it: each submodule a new object of the
    same class whose attributes are the original's (the same tensors, functions and values), with
    its own containers (parameter, buffer and hook dicts, ``nn.LSTM``'s weight list) one level
    deep, so that what tracing writes into them stays in the copy. A submodule reached twice is
    copied once (shared modules stay shared)."""
    return _copy(model, {})


def _copy(module: torch.nn.Module, memo: dict[int, torch.nn.Module]) -> torch.nn.Module:
    done = memo.get(id(module))
    if done is not None:
        return done
    cls = type(module)
    twin: Any = object.__new__(cls)  # not cls(): no __init__, and fx's per-instance classes stay
    memo[id(module)] = twin
    state = {k: copy.copy(v) if isinstance(v, _CONTAINERS) else v for k, v in module.__dict__.items()}
    state["_modules"] = {name: None if child is None else _copy(child, memo)
                         for name, child in module.__dict__.get("_modules", {}).items()}
    object.__setattr__(twin, "__dict__", state)
    for slot in _slots(cls):
        if hasattr(module, slot):
            object.__setattr__(twin, slot, getattr(module, slot))
    return twin


def _slots(cls: type) -> list[str]:
    """Attributes kept in ``__slots__`` rather than ``__dict__`` (rare on modules)."""
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else [s for s in slots if s not in ("__dict__", "__weakref__")]
    return names
