"""What the MXNet tests share: a block from a function of F (one compiled graph for many cases),
weights copied between twin blocks, and the comparison with MXNet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import mxnet as mx
import numpy as np
from mxnet import gluon


class Cases(gluon.HybridBlock):
    """``fn(F, x, **params) -> list of outputs``: many op cases in one block, so one compile."""

    def __init__(self, fn: Callable[..., Sequence[Any]], params: dict[str, tuple[int, ...]] | None = None) -> None:
        super().__init__()
        self.fn = fn
        with self.name_scope():
            for name, shape in (params or {}).items():
                setattr(self, name, self.params.get(name, shape=shape, init=mx.init.Uniform(0.5)))

    def hybrid_forward(self, F: Any, x: Any, *args: Any, **params: Any) -> Any:
        return list(self.fn(F, x, *args, **params))


def outputs(result: Any) -> list[np.ndarray]:
    items = result if isinstance(result, (list, tuple)) else [result]
    return [r.asnumpy() for r in items]


def assert_close(got: Any, want: Any, rtol: float = 1e-4, atol: float = 1e-5,
                 names: Sequence[str] | None = None) -> None:
    got_l, want_l = outputs(got), outputs(want)
    assert len(got_l) == len(want_l)
    for i, (g, w) in enumerate(zip(got_l, want_l)):
        what = names[i] if names else f"output {i}"
        assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=what)


def copy_params(src: gluon.Block, dst: gluon.Block) -> None:
    """Same weights in ``dst`` as in ``src`` (parameters matched in order)."""
    for p, q in zip(src.collect_params().values(), dst.collect_params().values()):
        q.set_data(p.data().copy())


def small_net(dropout: float = 0.0) -> gluon.HybridSequential:
    """Conv, BatchNorm, ReLU, max-pool and two dense layers (optionally a Dropout between them)."""
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(6, 3, padding=1), gluon.nn.BatchNorm(), gluon.nn.Activation("relu"),
            gluon.nn.MaxPool2D(), gluon.nn.Dense(16, activation="tanh"))
    if dropout:
        net.add(gluon.nn.Dropout(dropout))
    net.add(gluon.nn.Dense(5))
    net.initialize(mx.init.Xavier())
    return net
