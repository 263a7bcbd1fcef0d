"""3-D convolution and transposed convolution, written with sol's 2-D ones.

sol's compute-bound ops are 2-D (``conv2d``, ``conv_transpose2d``: oneDNN and every device's
loops take them), so a 3-D one becomes a 2-D one whose channels carry the depth taps:

* ``conv3d``: output depth ``od`` reads input depths ``od * stride - pad + kd * dilation``; the
  depth-padded input sliced once per tap ``kd`` (each slice strided like the output) and stacked
  next to the channels is a (N * OD, C * KD, H, W) image, and the weight (O, C/g, KD, KH, KW) read
  as (O, C/g * KD, KH, KW) convolves it in one 2-D convolution (groups keep their channel blocks:
  channel ``c * KD + kd`` is tap ``kd`` of channel ``c``).
* ``conv_transpose3d``: every input depth slice goes through one 2-D transposed convolution
  whose weight (C, O/g * KD, KH, KW) yields all taps at once; tap ``kd`` of input depth ``d``
  lands on output depth ``d * stride + kd * dilation - pad``, which is placed by spreading the
  depths ``stride`` apart (zeros between), shifting by ``kd * dilation`` (padding) and adding.

Both are sums of the same products as PyTorch's kernels (in another order), padding included
(PyTorch pads with zeros that multiply the weight, as here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Emitter, Unsupported


def _per_dim(v: Any, name: str) -> list[int]:
    items = [v] if isinstance(v, int) else [int(i) for i in v]
    if len(items) == 1:
        items *= 3
    if len(items) != 3:
        raise Unsupported(f"{name} {v!r} for a 3-D convolution")
    return items


def _pads(padding: Any, kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """Per axis (before, after): PyTorch's 'valid', 'same' (the odd element at the end) or numbers."""
    if padding == "valid":
        return [(0, 0)] * 3
    if padding == "same":
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    return [(p, p) for p in _per_dim(padding, "padding")]


def _batched(em: Emitter, x: Value, w: Value, what: str) -> Value:
    if x.type.rank == 4:
        x = em.reshape(x, (1,) + x.shape)
    if x.type.rank != 5 or w.type.rank != 5:
        raise Unsupported(f"{what} of {x.type} with weight {w.type}")
    if x.type.numel == 0:
        raise Unsupported(f"{what} of an empty tensor {x.type}")
    return x


def conv3d(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, dilation: Any, groups: int) -> Value:
    """PyTorch's conv3d (batched or not) as one conv2d (see the module docstring)."""
    want = em.out
    x = _batched(em, x, w, "3-D convolution")
    s, d = _per_dim(stride, "stride"), _per_dim(dilation, "dilation")
    pads = _pads(padding, w.shape[2:], d)
    n, c = x.shape[:2]
    o, kd = w.shape[0], w.shape[2]
    if pads[0] != (0, 0):
        x = em.emit("pad", [x], pads=((0, 0), (0, 0), pads[0], (0, 0), (0, 0)), value=0.0)
    depth = x.shape[2]
    od = (depth - d[0] * (kd - 1) - 1) // s[0] + 1
    if od < 1:
        raise Unsupported(f"3-D convolution kernel {w.shape[2:]} larger than the padded input {x.shape[2:]}")
    taps = []
    for k in range(kd):
        start = k * d[0]
        tap = em.emit("slice", [x], axes=(2,), starts=(start,), stops=(start + (od - 1) * s[0] + 1,),
                      steps=(s[0],)) if (start, s[0], od) != (0, 1, depth) else x
        taps.append(em.reshape(tap, (n, c, 1) + tap.shape[2:]))
    stacked = taps[0] if kd == 1 else em.emit("concat", taps, axis=2)  # (N, C, KD, OD, H, W)
    h, wd = x.shape[3:]
    image = em.reshape(em.transpose(stacked, (0, 3, 1, 2, 4, 5)), (n * od, c * kd, h, wd))
    w2 = em.reshape(w, (o, w.shape[1] * kd) + w.shape[3:])
    inputs = [image, w2] + ([b] if b is not None else [])
    y = em.emit("conv2d", inputs, stride=tuple(s[1:]), padding=tuple(pads[1:]), dilation=tuple(d[1:]),
                groups=int(groups))  # (N * OD, O, OH, OW)
    y = em.transpose(em.reshape(y, (n, od, o) + y.shape[2:]), (0, 2, 1, 3, 4))
    return em.reshape(y, want.shape)


def conv_transpose3d(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, output_padding: Any,
                     dilation: Any, groups: int) -> Value:
    """PyTorch's conv_transpose3d (batched or not) as one conv_transpose2d and a depth
    placement (see the module docstring)."""
    want = em.out
    x = _batched(em, x, w, "3-D transposed convolution")
    s, d = _per_dim(stride, "stride"), _per_dim(dilation, "dilation")
    p, e = _per_dim(padding, "padding"), _per_dim(output_padding, "output_padding")
    n, c, depth, h, wd = x.shape
    og, kd = w.shape[1], w.shape[2]
    o = og * int(groups)
    od = want.shape[-3]
    planes = em.reshape(em.transpose(x, (0, 2, 1, 3, 4)), (n * depth, c, h, wd))
    w2 = em.reshape(w, (c, og * kd) + w.shape[3:])
    z = em.emit("conv_transpose2d", [planes, w2], stride=tuple(s[1:]), padding=tuple((q, q) for q in p[1:]),
                output_padding=tuple(e[1:]), dilation=tuple(d[1:]), groups=int(groups))  # (N*D, O*KD, OH, OW)
    oh, ow = z.shape[2:]
    rest = o * kd * oh * ow
    z = em.reshape(z, (n, depth, 1, rest))
    if s[0] > 1:  # depth d moves to d * stride: zeros between
        zeros = em.graph.add_const(np.zeros((n, depth, s[0] - 1, rest), dtype=z.dtype), hint="zeros")
        z = em.emit("concat", [z, zeros], axis=2)
    spread = depth * s[0]
    z = em.reshape(z, (n, spread, o, kd, oh, ow))
    total = max(d[0] * (kd - 1) + spread, p[0] + od)
    y: Value | None = None
    for k in range(kd):
        tap = em.reshape(em.emit("slice", [z], axes=(3,), starts=(k,), stops=(k + 1,)) if kd > 1 else z,
                         (n, spread, o, oh, ow))
        shift = k * d[0]
        tap = em.emit("pad", [tap], pads=((0, 0), (shift, total - spread - shift), (0, 0), (0, 0), (0, 0)),
                      value=0.0)
        y = tap if y is None else em.emit("add", [y, tap])
    assert y is not None
    y = em.emit("slice", [y], axes=(1,), starts=(p[0],), stops=(p[0] + od,))
    y = em.transpose(y, (0, 2, 1, 3, 4))  # (N, O, OD, OH, OW)
    if b is not None:
        y = em.emit("add", [y, em.reshape(b, (o, 1, 1, 1))])
    return em.reshape(y, want.shape)
