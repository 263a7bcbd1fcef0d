"""Gluon model-zoo networks (random weights, no downloads) against MXNet on x86 and the emulated
SX-Aurora ("ve"): whole networks at fp32, rtol 1e-3. Small inputs keep the suite fast: the
networks' code does not depend on the image size."""

from __future__ import annotations

import pytest

# "mxnet.gluon", not "mxnet": where MXNet is absent, this folder (tests/mxnet, on sys.path through
# tests/) would import as an empty namespace package named mxnet.
pytest.importorskip("mxnet.gluon", reason="MXNet 1.9 lives in its own environment (scripts/env_mxnet.sh)")
import mxnet as mx  # noqa: E402
from mxnet.gluon.model_zoo import vision  # noqa: E402

import sol.mxnet  # noqa: E402

from mx_helpers import assert_close  # noqa: E402

pytestmark = pytest.mark.slow


def _net(name: str, **kwargs: object) -> object:
    mx.random.seed(0)
    net = vision.get_model(name, pretrained=False, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=1.5))
    return net


@pytest.mark.parametrize(("name", "device", "size"), [
    ("resnet18_v1", "x86", 32), ("resnet18_v2", "x86", 32), ("mobilenetv2_0.25", "x86", 32),
    ("squeezenet1.1", "x86", 224), ("mobilenet0.25", "ve", 32),
])
def test_zoo_network_matches_mxnet(name: str, device: str, size: int) -> None:
    net = _net(name)
    x1 = mx.nd.random.uniform(-1, 1, shape=(1, 3, size, size))
    want = net(x1)
    for p in net.collect_params().values():  # BatchNorm statistics of a trained network, not 0 and 1
        if "running_mean" in p.name:
            p.set_data(mx.nd.random.uniform(-0.1, 0.1, shape=p.shape))
        elif "running_var" in p.name:
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))
    want = net(x1)
    opt = sol.mxnet.optimize(net, x1, device=device)
    assert not opt.fallback_ops
    assert_close(opt(x1), want, rtol=1e-3, atol=1e-4)
    if device == "x86" and name == "resnet18_v1":  # batch 8: a variant compiled on the first call
        x8 = mx.nd.random.uniform(-1, 1, shape=(8, 3, size, size))
        assert_close(opt(x8), net(x8), rtol=1e-3, atol=1e-4)
