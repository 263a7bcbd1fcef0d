"""Notice, at every call, when what a compiled program took from the model has changed.

Why: an inference program reads the model's weights when it is built (library ops copy them into
their own layout, core folds BatchNorm into convolution weights) and bakes the model's
configuration into its code (``eps``, ``padding``, the code of ``forward``, the forward hooks
that ran while tracing). A later change to any of them would otherwise leave the program
computing the old model: a silently wrong result. Training programs read parameters and buffers
at every call, but their code is specialized on the configuration too.

Two watches, both cheap enough to run at every call:

* :class:`ConfigWatch`, the configuration: each submodule's plain attributes (numbers, strings,
  bools, None, and tuples, lists and dicts of them, by value; functions, bound methods and other
  objects, e.g. a replaced ``forward``, by identity), its class, where it sits in the tree, the
  names, shapes and dtypes of its parameters and buffers, its forward hooks, and PyTorch's global
  forward hooks. Comparing all that costs 1-2 ms on a ResNet-50 (150 modules), so it runs only
  after something may have changed it: a process-wide generation counter is bumped by
  ``nn.Module.__setattr__`` (wrapped once, when the first optimized module is made),
  registering a forward hook or removing any hook, and PyTorch's global hooks for assigning a
  parameter, buffer or submodule; otherwise the check is one integer comparison.
* :class:`ValuesWatch`, the weights (parameters, buffers and tensors held as plain attributes):
  per tensor its identity, version counter (every in-place write through the tensor bumps it:
  optimizer steps, ``load_state_dict``, ``w[0] += 1`` under ``no_grad``) and memory address
  (``w.data = other`` swaps the memory without a version bump), read in two ``map`` calls; and a
  content fingerprint for writes through ``w.data`` (``.data`` has a version counter of its own,
  so ``w.data.mul_(0.5)`` or an EMA update does not bump ``w._version``): a few elements of every
  tensor (first, last and evenly spaced ones in between), read in ONE NumPy gather over their
  addresses. The storages watched are held until the next snapshot, so those addresses stay
  valid.

Not seen (stated in the README): an in-place write through ``.data`` that leaves every sampled
element as it was (e.g. ``w.data[3:7] = x`` between samples), a change to a dict of hooks or an
attribute's container made without ``setattr`` (``m._forward_hooks[k] = f``, appending to a list
attribute longer than 64 items), methods replaced on a class rather than on an instance, and
objects the model reads that are not module attributes (module globals, a config object mutated
in place).
"""

from __future__ import annotations

import enum
import functools
import operator
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.nn.modules import module as _module
from torch.utils import hooks as _hooks

SAMPLES = 8
"""Elements per tensor in the content fingerprint."""

_generation = 0
_mode_generation = 0  # bumped by every write of a module's ``training`` flag (train(), eval())
_installed = False
_install_lock = threading.Lock()
_VERSION = operator.attrgetter("_version")
_POINTER = torch.Tensor.data_ptr


def _bump(*_: Any) -> None:
    # Not while Dynamo traces a forward (torch.compile of any model in this process): the bump
    # would become a guard on the counter, which the forward's own setattr then changes, so
    # torch.compile would compile again at every call. The compiled code replays such a setattr
    # through nn.Module.__setattr__ at run time, where it bumps as usual.
    if torch.compiler.is_compiling():
        return
    global _generation
    _generation += 1


def _bump_mode() -> None:
    if torch.compiler.is_compiling():  # as in _bump
        return
    global _mode_generation
    _mode_generation += 1


def modes_key() -> tuple[int, int]:
    """Changes whenever any module's ``training`` flag may have changed, or a submodule was
    added or replaced: a caller that keeps "is any module training" under this key need not
    read every module's flag at every call (on a machine where each Python object touched after
    a network's run costs microseconds, that loop cost 40 us per call on a 42-module encoder)."""
    return _mode_generation, _generation


def _generation_key() -> tuple[int, int, int]:
    """Changes whenever the configuration of any module may have changed (see the module doc)."""
    return _generation, len(_module._global_forward_hooks), len(_module._global_forward_pre_hooks)


def install() -> None:
    """Hook what bumps the generation counter, once per process (idempotent, thread-safe)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _module.register_module_parameter_registration_hook(_bump)
        _module.register_module_buffer_registration_hook(_bump)
        _module.register_module_module_registration_hook(_bump)
        torch.nn.Module.__setattr__ = _bumping_setattr(torch.nn.Module.__setattr__)  # type: ignore[method-assign]
        for name in ("register_forward_hook", "register_forward_pre_hook"):
            setattr(torch.nn.Module, name, _bumping_after(getattr(torch.nn.Module, name)))
        _hooks.RemovableHandle.remove = _bumping_after(_hooks.RemovableHandle.remove)  # type: ignore[method-assign]
        _installed = True


def _bumping_setattr(setattr_: Callable[[torch.nn.Module, str, Any], None]) -> Callable[..., None]:
    @functools.wraps(setattr_)
    def __setattr__(self: torch.nn.Module, name: str, value: Any) -> None:
        setattr_(self, name, value)
        if name != "training":  # train()/eval() change no program's code (modes are keyed separately)
            _bump()  # after the write: a check that sees the new generation sees the new value
        else:
            _bump_mode()

    return __setattr__


def _bumping_after(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        _bump()
        return result

    return wrapper


# --- configuration ----------------------------------------------------------------------------

_SKIPPED = frozenset({
    "_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set",
    # state_dict's and autograd's business, not the forward's
    "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
    "_backward_hooks", "_backward_pre_hooks", "_is_full_backward_hook",
})
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
          torch.memory_format, enum.Enum)
_EXACTLY_PLAIN = frozenset(_PLAIN[:-1])  # the common case, recognised by one set lookup
_MAX_ITEMS = 64


def _encode(value: Any, keep: list[Any], depth: int = 0) -> Any:
    """A comparable description of an attribute's value: plain values by value, containers of
    them item by item, anything else by identity (kept alive in ``keep``, so that its ``id``
    cannot be reused by a new object while the snapshot exists)."""
    if type(value) in _EXACTLY_PLAIN or isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        if not value:  # most hook dicts
            return "dict", ()
        if depth < 3 and len(value) <= _MAX_ITEMS and all(type(k) in _EXACTLY_PLAIN for k in value):
            return "dict", tuple((k, _encode(v, keep, depth + 1)) for k, v in value.items())
    elif isinstance(value, (tuple, list)) and depth < 3 and len(value) <= _MAX_ITEMS:
        return type(value).__name__, tuple(_encode(v, keep, depth + 1) for v in value)
    elif isinstance(value, torch.Tensor):  # a plain tensor attribute: ValuesWatch watches its values
        keep.append(value)
        return "tensor", id(value), tuple(value.shape), value.dtype
    elif isinstance(value, weakref.ref):  # LSTM's weight references, remade by flatten_parameters
        return "weakref"
    keep.append(value)
    return "object", id(value)


def _tensors_of(m: torch.nn.Module, kind: str) -> tuple[Any, ...]:
    return tuple((name, None if t is None else (tuple(t.shape), t.dtype, t.device.type))
                 for name, t in m.__dict__.get(kind, {}).items())


def config_snapshot(model: torch.nn.Module) -> tuple[tuple[Any, ...], list[Any]]:
    """What the programs' code depends on (see the module doc), and the objects it names."""
    keep: list[Any] = []
    parts: list[Any] = []
    for path, m in model.named_modules(remove_duplicate=False):
        keep.append(m)
        attrs = tuple((k, _encode(v, keep)) for k, v in m.__dict__.items() if k not in _SKIPPED)
        parts.append((path, id(m), type(m), attrs, _tensors_of(m, "_parameters"), _tensors_of(m, "_buffers")))
    parts.append(_encode(dict(_module._global_forward_hooks), keep))
    parts.append(_encode(dict(_module._global_forward_pre_hooks), keep))
    return tuple(parts), keep


class ConfigWatch:
    """``stale()`` is True once the model's configuration differs from the last ``refresh()``."""

    def __init__(self, model: torch.nn.Module) -> None:
        install()
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        seen = _generation_key()
        self._snapshot, self._keep = config_snapshot(self.model)
        self._seen = seen

    def stale(self) -> bool:
        seen = _generation_key()  # read before comparing: a change during the comparison bumps it again
        if seen == self._seen:
            return False
        if config_snapshot(self.model)[0] != self._snapshot:
            return True
        self._seen = seen  # something else in the process changed
        return False


# --- values -----------------------------------------------------------------------------------


def watched_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers and tensor attributes of every submodule, each once."""
    seen: dict[int, torch.Tensor] = {}
    for m in model.modules():
        for t in _tensor_values(m):
            seen.setdefault(id(t), t)
    return list(seen.values())


def _tensor_values(m: torch.nn.Module) -> Iterator[torch.Tensor]:
    for kind in ("_parameters", "_buffers"):
        yield from (t for t in m.__dict__.get(kind, {}).values() if t is not None)
    yield from (v for v in m.__dict__.values() if isinstance(v, torch.Tensor))


def _readable(t: torch.Tensor) -> bool:
    """Host memory we may read directly (not meta, fake, sparse or another device's)."""
    try:
        return t.device.type == "cpu" and t.layout is torch.strided and t.numel() > 0 and t.data_ptr() != 0
    except (RuntimeError, NotImplementedError, ValueError, TypeError):  # e.g. an uninitialized (lazy) parameter
        return False


class _RawWords:
    """Host memory from ``address`` as 32-bit words, for NumPy to gather from (no copy, no bounds:
    only addresses of live, watched tensors are ever indexed)."""

    def __init__(self, address: int, words: int) -> None:
        self.__array_interface__ = {"data": (address, True), "shape": (words,), "typestr": "<u4", "version": 3}


def _sample_words(t: torch.Tensor) -> np.ndarray:
    """Addresses of the 4-byte-aligned words holding a few elements of ``t``. A word that holds
    any byte of an element lies in the same page as that byte: reading it is always safe."""
    n = t.numel()
    flat = np.unique(np.linspace(0, n - 1, min(n, SAMPLES)).round().astype(np.int64))
    coords = np.unravel_index(flat, tuple(t.shape)) if t.dim() else ()
    offset = np.zeros(len(flat), np.int64)
    for c, s in zip(coords, t.stride()):
        offset += np.asarray(c, np.int64) * s
    size = t.element_size()
    start = t.data_ptr() + offset * size
    first, last = start & ~3, (start + size - 1) & ~3
    span = int(((last - first) // 4).max()) + 1
    words = first[:, None] + 4 * np.arange(span, dtype=np.int64)[None, :]
    return words[words <= last[:, None]]


class Fingerprint:
    """A few elements of each tensor, read in one gather: ``same()`` is False once any differ.
    Valid only while the tensors' memory is where it was when made (check the pointers first)."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        words = [_sample_words(t) for t in tensors]
        flat = np.concatenate(words) if words else np.zeros(0, np.int64)
        if not len(flat):
            self._view, self._index, self._saved = np.zeros(0, np.uint32), flat, b""
            return
        low = int(flat.min())
        self._view = np.asarray(_RawWords(low, (int(flat.max()) - low) // 4 + 1))
        self._index = (flat - low) // 4
        self._saved = self._view[self._index].tobytes()

    def same(self) -> bool:
        return self._view[self._index].tobytes() == self._saved


class _Snapshot:
    """One snapshot of the watched tensors; immutable once made except ``seen``, so a check
    running while another thread refreshes uses one consistent set (and holds its storages)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.seen = _generation_key()
        self.tensors = watched_tensors(model)
        self.readable = [t for t in self.tensors if _readable(t)]
        self.versions = list(map(_VERSION, self.tensors))
        self.pointers = list(map(_POINTER, self.readable))
        # Holding the storages keeps the fingerprint's addresses allocated even after a tensor's
        # memory was swapped (``.data = other``): never reused, nor unmapped, under the gather.
        self.storages = [t.untyped_storage() for t in self.readable]
        self.fingerprint = Fingerprint(self.readable)


class ValuesWatch:
    """``stale()`` is True once a watched tensor was replaced, written in place, moved to other
    memory or (as far as the fingerprint sees) rewritten through ``.data``."""

    def __init__(self, model: torch.nn.Module) -> None:
        install()
        self.model = model
        self._snap = _Snapshot(model)

    def refresh(self) -> None:
        self._snap = _Snapshot(self.model)

    def stale(self) -> bool:
        snap = self._snap
        seen = _generation_key()
        if seen != snap.seen:
            current = watched_tensors(self.model)
            if len(current) != len(snap.tensors) or any(a is not b for a, b in zip(current, snap.tensors)):
                return True
            snap.seen = seen
        # The pointers first: the gather reads where the tensors were when the snapshot was made.
        return (list(map(_VERSION, snap.tensors)) != snap.versions
                or list(map(_POINTER, snap.readable)) != snap.pointers
                or not snap.fingerprint.same())


class WeightsWatch:
    """Both watches for code that keeps one kind of program: ``changed()`` is True once after
    anything the programs took from the model changed (and takes a new snapshot)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.config = ConfigWatch(model)
        self.values = ValuesWatch(model)

    def changed(self) -> bool:
        if self.config.stale() or self.values.stale():
            self.config.refresh()
            self.values.refresh()
            return True
        return False
