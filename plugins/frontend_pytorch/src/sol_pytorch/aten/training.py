"""Converters for training-mode ATen: BatchNorm with batch statistics and random masks.

BatchNorm in training mode normalizes with the statistics of the batch it sees (biased variance)
and updates the running statistics as PyTorch does (``momentum``; the unbiased variance; with
``momentum=None`` a cumulative average over ``num_batches_tracked``). The statistics are built
from sol's own ops (``mean``, ``sub``, ``mul``) feeding the ``batch_norm`` op, so core autodiff
differentiates through them like anything else and no BatchNorm-specific backward exists. The
new running statistics are ordinary values: the training importer makes them graph outputs and
the wrapper writes them into the model's buffers.

Random masks (dropout, ``bernoulli``) are not drawn by sol: each becomes a graph input that the
wrapper fills right before the call with the very RNG call eager PyTorch makes at that point
(``torch.empty(shape).bernoulli_(1 - p)``, then ``div_(1 - p)`` for dropout), so the same seed
gives the same mask, bit for bit, and ``torch.manual_seed`` keeps working as users expect. Only
a training import (:mod:`sol_pytorch.training`) provides such inputs; an inference import finds
no :data:`RANDOM_KEY` in the graph's meta and reports the op as unsupported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sol.plugin_api import TensorType, Value
from sol_pytorch.aten.base import (
    CONVERTERS,
    Args,
    Emitter,
    Unsupported,
    _batch_norm,
    _tensor,
    converts,
    dtype_name,
    tensor_type,
)

RANDOM_KEY = "pytorch.random_inputs"
"""``Graph.meta`` key: the list of :class:`RandomInput` a training import fills."""

CUMULATIVE_MOMENTUM = math.nan
"""What the training importer sets as the ``momentum`` of a BatchNorm with ``momentum=None``
while tracing: PyTorch computes that module's factor in Python from ``num_batches_tracked``
(``1 / float(...)``), which tracing cannot do; NaN is never a real momentum, so the converter
recognizes it and computes the factor inside the graph instead."""


@dataclass(frozen=True)
class RandomInput:
    """A graph input filled with ``torch.empty(shape, dtype).bernoulli_(p)`` (then divided by
    ``divide`` unless it is None) at every call, in graph order."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    p: float
    divide: float | None

    def draw(self) -> torch.Tensor:
        t = torch.empty(self.shape, dtype=getattr(torch, self.dtype)).bernoulli_(self.p)
        return t.div_(self.divide) if self.divide is not None else t


def random_input(em: Emitter, shape: tuple[int, ...], dtype: str, p: float, divide: float | None) -> Value:
    randoms: list[RandomInput] | None = em.graph.meta.get(RANDOM_KEY)
    if randoms is None:
        raise Unsupported("random numbers at inference (training-mode dropout or bernoulli); sol draws them "
                          "only for a model compiled for training")
    name = f"random{len(randoms)}"
    randoms.append(RandomInput(name, tuple(shape), dtype, float(p), divide))
    return em.graph.add_input(name, TensorType(tuple(shape), dtype))


# --- dropout ----------------------------------------------------------------------------------


def training_dropout(em: Emitter, x: Value, p: float, feature: bool) -> Value:
    """Eager ``at::dropout`` on the CPU: no random numbers for p == 0 (identity) or p == 1
    (zeros); otherwise ``noise = bernoulli(1 - p) / (1 - p)``, of the input's shape (per
    channel for feature dropout), and ``x * noise``."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise Unsupported(f"dropout probability {p} outside [0, 1]")
    if p == 0.0:
        return x
    if p == 1.0:
        return em.emit("mul", [x, em.const(0.0, x.dtype)])
    if not x.dtype.startswith("float"):
        raise Unsupported(f"dropout of a {x.dtype} tensor")
    shape = x.shape
    if feature:
        if x.type.rank < 2:
            raise Unsupported(f"feature dropout of a rank-{x.type.rank} tensor")
        shape = x.shape[:2] + (1,) * (x.type.rank - 2)
    noise = random_input(em, shape, x.dtype, 1.0 - p, 1.0 - p)
    return em.emit("mul", [x, noise])


@converts("aten.dropout.default")
def _dropout(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "input")
    return training_dropout(em, x, a["p"], feature=False) if a["train"] else x


@converts("aten.feature_dropout.default")
def _feature_dropout(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "input")
    return training_dropout(em, x, a["p"], feature=True) if a["train"] else x


@converts("aten.native_dropout.default")
def _native_dropout(em: Emitter, a: Args) -> tuple[Value, None]:
    """What functionalization makes of ``dropout``: eager models reach ``at::dropout``, whose
    random numbers (and whose results for p == 0 and 1) this reproduces. The boolean mask
    output is for PyTorch's own backward; sol's backward reads the noise input."""
    x = _tensor(a, "input")
    if a["train"] is False:
        return x, None
    return training_dropout(em, x, a["p"], feature=False), None


@converts("aten.bernoulli.p")
def _bernoulli(em: Emitter, a: Args) -> Value:
    """``bernoulli(t, p)`` (feature dropout, decomposed) reads only ``t``'s shape and dtype."""
    t = em.out
    if not t.dtype.startswith("float"):
        raise Unsupported(f"bernoulli into a {t.dtype} tensor")
    return random_input(em, t.shape, t.dtype, float(a["p"]), None)


@converts("aten.new_empty.default", "aten.empty_like.default", "aten.new_empty_strided.default")
def _empty(em: Emitter, a: Args) -> Value:
    """Uninitialized memory: any content is right, so zeros (a constant that is pruned when,
    as for ``bernoulli``, only its shape is read)."""
    t = em.out
    return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="k")


# --- BatchNorm --------------------------------------------------------------------------------


def _affine(em: Emitter, x: Value, weight: Any, bias: Any) -> tuple[Value, Value]:
    c, dt = x.shape[1], x.dtype
    w = weight if weight is not None else em.const(np.ones(c), dt)
    b = bias if bias is not None else em.const(np.zeros(c), dt)
    return w, b


def batch_statistics(em: Emitter, x: Value) -> tuple[Value, Value, int]:
    """Per-channel (axis 1) mean and biased variance of ``x``, and how many values each has."""
    if x.type.rank < 2:
        raise Unsupported(f"batch_norm of a rank-{x.type.rank} tensor")
    if not x.dtype.startswith("float"):
        raise Unsupported(f"batch_norm of a {x.dtype} tensor")
    axes = (0,) + tuple(range(2, x.type.rank))
    count = int(np.prod([x.shape[i] for i in axes]))
    mean = em.emit("mean", [x], axes=axes, keepdims=False)
    var = em.emit("variance", [x, mean], axes=axes, keepdims=False)
    return mean, var, count


def batch_norm_batch_stats(em: Emitter, x: Value, weight: Any, bias: Any, eps: float) -> tuple[Value, Value, Value]:
    """Normalization with the batch's own statistics: ``(y, mean, biased var)``."""
    mean, var, _ = batch_statistics(em, x)
    w, b = _affine(em, x, weight, bias)
    y = em.emit("batch_norm", [x, mean, var, w, b], eps=float(eps), axis=1)
    return y, mean, var


def invstd(em: Emitter, var: Value, eps: float) -> Value:
    return em.emit("rsqrt", [em.emit("add", [var, em.const(eps, var.dtype)])])


def _momentum(em: Emitter, momentum: float, running_mean: Value) -> Value:
    """The update factor: the module's momentum, or for ``momentum=None`` (traced as
    :data:`CUMULATIVE_MOMENTUM`) ``1 / num_batches_tracked`` after this batch's increment, read
    from the module's own counter (the buffer next to ``running_mean``)."""
    dt = running_mean.dtype
    if not math.isnan(momentum):
        return em.const(momentum, dt)
    prefix = running_mean.name.rpartition(".")[0]
    counter_name = f"{prefix}.num_batches_tracked" if prefix else "num_batches_tracked"
    counter = next((v for v in em.graph.inputs if v.name == counter_name), None)
    if counter is None:
        raise Unsupported("BatchNorm with momentum=None (a cumulative average) whose num_batches_tracked "
                          "is not next to its running_mean")
    tracked = em.emit("add", [counter, em.const(1, counter.dtype)])
    return em.emit("div", [em.const(1.0, dt), em.cast(tracked, dt)])


def _update(em: Emitter, running: Value, batch: Value, factor: Value) -> Value:
    """``(1 - factor) * running + factor * batch``, PyTorch's running-statistics update."""
    keep = em.emit("sub", [em.const(1.0, running.dtype), factor])
    return em.emit("add", [em.emit("mul", [running, keep]), em.emit("mul", [batch, factor])])


@converts("aten._native_batch_norm_legit_functional.default")
def _bn_functional(em: Emitter, a: Args) -> tuple[Value, ...]:
    """``(y, batch mean, batch invstd, new running_mean, new running_var)`` in training mode;
    with ``training=False`` the running statistics, unchanged."""
    x = _tensor(a, "input")
    rm, rv, eps = _tensor(a, "running_mean"), _tensor(a, "running_var"), float(a["eps"])
    if not a["training"]:
        y = _batch_norm(em, x, a["weight"], a["bias"], rm, rv, eps)
        return (y, *saved_statistics(em, rm, invstd(em, rv, eps)), rm, rv)
    return _bn_update(em, a, x, rm, rv, eps)


def saved_statistics(em: Emitter, mean: Value, inv: Value) -> tuple[Value, Value]:
    """The saved mean and invstd outputs, or the empty tensors PyTorch returns in their place
    (at inference, where there are none)."""
    vals = em.val[1:3]
    if all(isinstance(v, torch.Tensor) and tuple(v.shape) == (0,) for v in vals) and mean.shape != (0,):
        return tuple(em.graph.add_const(np.zeros((0,), dtype=dtype_name(v.dtype)), hint="empty")  # type: ignore[return-value]
                     for v in vals)
    return mean, inv


def _bn_update(em: Emitter, a: Args, x: Value, rm: Value, rv: Value, eps: float) -> tuple[Value, ...]:
    """Training mode: ``(y, batch mean, batch invstd, new running_mean, new running_var)``."""
    y, mean, var = batch_norm_batch_stats(em, x, a["weight"], a["bias"], eps)
    count = int(np.prod(x.shape)) // x.shape[1]
    if count < 2:
        raise Unsupported("batch_norm in training mode with one value per channel")
    factor = _momentum(em, float(a["momentum"]), rm)
    unbiased = em.emit("mul", [var, em.const(count / (count - 1), var.dtype)])
    return (y, mean, invstd(em, var, eps), _update(em, rm, em.cast(mean, rm.dtype), factor),
            _update(em, rv, em.cast(unbiased, rv.dtype), factor))


@converts("aten._batch_norm_with_update_functional.default")
def _bn_with_update(em: Emitter, a: Args) -> tuple[Value, ...]:
    """``(y, batch mean, batch invstd, reserve, new running_mean, new running_var)``: training
    mode always; ``reserve`` is the empty byte tensor PyTorch's CPU kernel returns."""
    x = _tensor(a, "input")
    y, mean, inv, new_mean, new_var = _bn_update(em, a, x, _tensor(a, "running_mean"),
                                                 _tensor(a, "running_var"), float(a["eps"]))
    reserve = tensor_type(em.val[3])
    empty = em.graph.add_const(np.zeros(reserve.shape, dtype=reserve.dtype), hint="empty")
    return y, mean, inv, empty, new_mean, new_var


@converts("aten.native_batch_norm.default")
def _native_bn(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    """Without running statistics to update (training mode with none: batch statistics) or at
    inference; with both, the importer functionalizes the op first (``prepare.mutates``)."""
    x, eps = _tensor(a, "input"), float(a["eps"])
    rm, rv = a["running_mean"], a["running_var"]
    if a["training"] or rm is None or rv is None:
        if a["training"] and (rm is not None or rv is not None):
            raise Unsupported("native_batch_norm updating running statistics in place")
        y, mean, var = batch_norm_batch_stats(em, x, a["weight"], a["bias"], eps)
        return y, mean, invstd(em, var, eps)
    y = _batch_norm(em, x, a["weight"], a["bias"], rm, rv, eps)
    return (y, *saved_statistics(em, rm, invstd(em, rv, eps)))


@converts("aten._native_batch_norm_legit.no_stats")
def _bn_no_stats(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    """No running statistics (``track_running_stats=False``): batch statistics in any mode."""
    x = _tensor(a, "input")
    y, mean, var = batch_norm_batch_stats(em, x, a["weight"], a["bias"], float(a["eps"]))
    return y, mean, invstd(em, var, float(a["eps"]))


# --- InstanceNorm with running statistics --------------------------------------------------------


def instance_norm_training(em: Emitter, a: Args, running_mean: Value, running_var: Value | None) -> tuple[Value, ...]:
    """``InstanceNorm(track_running_stats=True)`` in training mode: ``(y, new running_mean,
    new running_var)``. ``y`` uses each sample's own statistics (the inference converter's
    conversion). The update is eager's (``at::instance_norm``): each (sample, channel) updates
    its own copy of the running statistics with its mean and *unbiased* variance, and the
    buffers become the mean over the batch of those copies:
    ``(1 - m) * running + m * mean_over_batch(statistic)``. ``running_mean``/``running_var``:
    the buffers' current values (a module called twice in one forward reads its first update)."""
    x = _tensor(a, "input")
    if x.type.rank < 3 or not x.dtype.startswith("float"):
        raise Unsupported(f"instance_norm with running statistics of a {x.type}")
    y = CONVERTERS["aten.instance_norm.default"](em, a)
    spatial = tuple(range(2, x.type.rank))
    count = int(np.prod([x.shape[i] for i in spatial]))
    if count < 2:
        raise Unsupported("instance_norm in training mode with one value per channel")
    mean = em.emit("mean", [x], axes=spatial, keepdims=False)  # (N, C)
    var = em.emit("variance", [x, mean], axes=spatial, keepdims=False)
    unbiased = em.emit("mul", [var, em.const(count / (count - 1), var.dtype)])
    factor = em.const(float(a["momentum"]), running_mean.dtype)
    new_mean = _update(em, running_mean, em.cast(em.emit("mean", [mean], axes=(0,), keepdims=False),
                                                 running_mean.dtype), factor)
    if running_var is None:
        return y, new_mean, None  # type: ignore[return-value]
    new_var = _update(em, running_var, em.cast(em.emit("mean", [unbiased], axes=(0,), keepdims=False),
                                               running_var.dtype), factor)
    return y, new_mean, new_var
