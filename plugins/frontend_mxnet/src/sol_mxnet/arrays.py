"""MXNet NDArrays <-> NumPy arrays without copies (DLPack), and MXNet's error type."""

from __future__ import annotations

from typing import Any

import mxnet as mx
import numpy as np


class _Capsule:
    """An object with ``__dlpack__``, which ``np.from_dlpack`` wants (MXNet 1.9 gives bare capsules)."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, stream: Any = None) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def to_numpy(x: Any) -> np.ndarray:
    """A CPU NDArray as a read-only NumPy view of its memory (after MXNet finished writing it);
    anything else through ``np.asarray``."""
    if isinstance(x, mx.nd.NDArray):
        if x.context.device_type != "cpu" or x.stype != "default":
            return x.asnumpy()  # type: ignore[no-any-return]
        try:
            view = np.from_dlpack(_Capsule(x.to_dlpack_for_read()))  # waits for pending writes
        except mx.base.MXNetError:  # held in a oneDNN layout (MXNet reorders weights it ran): a copy
            return x.asnumpy()  # type: ignore[no-any-return]
        return view if view.flags.c_contiguous else np.asarray(view, order="C")
    return np.asarray(x, order="C")


def to_ndarray(a: np.ndarray, ctx: Any = None) -> Any:
    """A NumPy result as an NDArray on ``ctx`` (CPU: sharing the array's memory). A read-only
    array (an output MXNet computed between compiled parts, a view of MXNet's memory) is copied:
    NumPy exports only writeable arrays through DLPack."""
    a = np.asarray(a, order="C")
    if not a.flags.writeable:
        a = a.copy()
    if ctx is None or ctx == mx.cpu(0):  # DLPack names no CPU index: cpu(1) gets a copy on it
        if a.size and a.dtype != np.bool_:
            return mx.nd.from_dlpack(a.__dlpack__())
        return mx.nd.array(a, dtype=a.dtype)
    return mx.nd.array(a, ctx=ctx, dtype=a.dtype)


def mxnet_error(message: str) -> Exception:
    """MXNet's own exception type (what its operators raise for a bad shape or dtype)."""
    return mx.base.MXNetError(message)  # type: ignore[no-any-return]
