"""Every converted MXNet operator against MXNet itself, on x86, through sol.mxnet.optimize.

Each test builds one block whose outputs are many cases of an op family (one compile per family)
and compares every output with the block run by MXNet (fp32: rtol 1e-4)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

# "mxnet.gluon", not "mxnet": where MXNet is absent, this folder (tests/mxnet, on sys.path through
# tests/) would import as an empty namespace package named mxnet.
pytest.importorskip("mxnet.gluon", reason="MXNet 1.9 lives in its own environment (scripts/env_mxnet.sh)")
import mxnet as mx  # noqa: E402
from mxnet import gluon  # noqa: E402

import sol.mxnet  # noqa: E402
from sol.plugin_api import SolFallbackWarning  # noqa: E402

from mx_helpers import Cases, assert_close  # noqa: E402


def run(block: gluon.HybridBlock, *xs: object, device: str = "x86") -> tuple[object, object]:
    """(sol's outputs, MXNet's): the whole block must compile (a fallback fails the test)."""
    if any(p._data is None and not p._deferred_init for p in block.collect_params().values()):  # noqa: SLF001
        block.initialize(mx.init.Uniform(0.5))
    want = block(*xs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        opt = sol.mxnet.optimize(block, *xs, device=device)
    assert not opt.fallback_ops
    return opt(*xs), want


@pytest.fixture
def x4() -> object:
    mx.random.seed(1)
    return mx.nd.random.normal(shape=(2, 4, 7, 9))


def test_elementwise_and_activations(x4: object) -> None:
    def fn(F, x, alpha):  # noqa: N803
        return [F.relu(x), F.sigmoid(x), F.tanh(x), F.Activation(x, act_type="softrelu"),
                F.Activation(x, act_type="softsign"), F.LeakyReLU(x, act_type="leaky", slope=0.1),
                F.LeakyReLU(x, act_type="elu", slope=0.7), F.LeakyReLU(x, act_type="selu"),
                F.LeakyReLU(x, act_type="gelu"), F.LeakyReLU(x, alpha, act_type="prelu"),
                x + 2.5, 3.0 - x, x * 1.5, x / 4.0, 2.0 / (F.abs(x) + 1), (F.abs(x) + 0.5) ** 1.5, x ** 2,
                F.maximum(x, 0.3), F.minimum(x, -0.2), F.clip(x, -0.5, 0.7), F.exp(x), F.log(F.abs(x) + 1),
                F.sqrt(F.abs(x)), F.rsqrt(F.abs(x) + 1), F.negative(x), F.square(x), F.erf(x),
                F.reciprocal(F.abs(x) + 1), F.elemwise_add(x, x), F.elemwise_sub(x, F.exp(x)),
                F.elemwise_mul(x, x), F.elemwise_div(x, F.exp(x)),
                F.broadcast_add(x, F.sum(x, axis=1, keepdims=True)),
                F.broadcast_mul(x, F.mean(x, axis=(2, 3), keepdims=True)),
                F.broadcast_sub(x, F.max(x, axis=3, keepdims=True)),
                F.broadcast_div(x, F.exp(F.min(x, axis=0, keepdims=True))),
                F.broadcast_maximum(x, F.mean(x, axis=2, keepdims=True)), F.add_n(x, x, x),
                F.Dropout(x, p=0.5), F.BlockGrad(x) + x, F.softmax(x, axis=1), F.log_softmax(x),
                F.softmax(x, axis=2, temperature=2.0)]

    got, want = run(Cases(fn, {"alpha": (4,)}), x4)
    assert_close(got, want)


def test_reductions_and_layout(x4: object) -> None:
    def fn(F, x):  # noqa: N803
        return [F.sum(x, axis=(1, 3)), F.mean(x, axis=2, keepdims=True), F.max(x, axis=1), F.min(x, axis=-1),
                F.sum(x), F.mean(x, axis=1, exclude=True),
                F.reshape(x, shape=(0, -1)), F.reshape(x, shape=(-3, -2)), F.reshape(x, shape=(0, -4, 2, -1, -2)),
                F.reshape(x, shape=(-1, 0), reverse=True), F.reshape(x, shape=(2, 0, -1)), F.Flatten(x),
                F.transpose(x), F.transpose(x, axes=(0, 2, 3, 1)), F.SwapAxis(x, dim1=1, dim2=3),
                F.expand_dims(x, axis=1), F.squeeze(F.sum(x, axis=1, keepdims=True), axis=1),
                F.concat(x, F.relu(x), dim=1), F.concat(x, x, dim=3),
                F.slice(x, begin=(None, 1, 2), end=(None, 3, -1)), F.slice(x, begin=(0, 0, 0, 1), end=(2, 4, 7, 9),
                                                                          step=(1, 2, 3, 2)),
                F.slice_axis(x, axis=3, begin=2, end=-3), F.slice_axis(x, axis=1, begin=1, end=None),
                *F.split(x, num_outputs=2, axis=1), *F.split(x, num_outputs=7, axis=2, squeeze_axis=True),
                F.Pad(x, mode="constant", pad_width=(0, 0, 0, 0, 1, 2, 3, 0), constant_value=0.5),
                F.Pad(x, mode="edge", pad_width=(0, 0, 0, 0, 2, 1, 0, 3)),
                F.Pad(x, mode="reflect", pad_width=(0, 0, 0, 0, 3, 2, 1, 4)),
                F.UpSampling(x, scale=2, sample_type="nearest")]

    got, want = run(Cases(fn), x4)
    assert_close(got, want)


def test_pooling(x4: object) -> None:
    def fn(F, x):  # noqa: N803
        return [F.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="max"),
                F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg"),
                F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg", count_include_pad=False),
                F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max", pooling_convention="full"),
                F.Pooling(x, kernel=(2, 3), stride=(2, 2), pool_type="avg", pooling_convention="full"),
                F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg"),
                F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="max"),
                F.Pooling(x, kernel=(2, 2), stride=(1, 1), pool_type="sum")]

    got, want = run(Cases(fn), x4)
    assert_close(got, want)


def test_convolutions_dense_and_norms(x4: object) -> None:
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(8, 3, padding=1, in_channels=4), gluon.nn.BatchNorm(in_channels=8),
            gluon.nn.Conv2D(8, 3, padding=2, dilation=2, groups=4, in_channels=8),
            gluon.nn.Conv2D(8, 3, strides=2, groups=8, use_bias=False, in_channels=8),
            gluon.nn.BatchNorm(scale=False, use_global_stats=True, in_channels=8),
            gluon.nn.Conv2DTranspose(6, 3, strides=2, padding=1, output_padding=1, in_channels=8),
            gluon.nn.Conv2DTranspose(4, 2, strides=1, groups=2, in_channels=6),
            gluon.nn.InstanceNorm(in_channels=4), gluon.nn.LayerNorm(in_channels=9),
            gluon.nn.Dense(10, flatten=False, in_units=9), gluon.nn.Dense(7))
    net.initialize(mx.init.Uniform(0.5))
    net(x4)
    for p in net.collect_params().values():  # random statistics, so that BatchNorm is not the identity
        if "running" in p.name:
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))
    got, want = run(net, x4)
    assert_close(got, want)


def test_conv1d_embedding_and_dot() -> None:
    def fn(F, x, ids, w1, emb, m):  # noqa: N803
        y = F.Convolution(x, w1, kernel=(3,), num_filter=5, pad=(1,), no_bias=True)
        e = F.Embedding(ids, emb, input_dim=6, output_dim=3)
        return [y, F.Pooling(y, kernel=(2,), stride=(2,), pool_type="max"), e,
                F.dot(F.Flatten(x), m), F.batch_dot(x, x, transpose_b=True)]

    x = mx.nd.random.normal(shape=(2, 4, 8))
    ids = mx.nd.array([[0, 5, 2, 7], [-1, 1.7, 3, 4]])  # out of range and fractional ids: MXNet clips, truncates
    got, want = run(Cases(fn, {"w1": (5, 4, 3), "emb": (6, 3), "m": (32, 3)}), x, ids)
    assert_close(got, want)


def test_supported_ops_lists_the_converters() -> None:
    ops = sol.mxnet.supported_ops()
    for op in ("Convolution", "Deconvolution", "FullyConnected", "BatchNorm", "Activation", "LeakyReLU", "Pooling",
               "Flatten", "Concat", "elemwise_add", "broadcast_mul", "_plus_scalar", "Dropout", "softmax",
               "log_softmax", "LayerNorm", "InstanceNorm", "Embedding", "transpose", "Reshape", "slice",
               "slice_axis", "split", "clip", "sum", "mean", "max", "UpSampling", "Pad"):
        assert op in ops
    assert np.all(np.array(ops) == np.array(sorted(ops)))
