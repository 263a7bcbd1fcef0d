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
    if name == "densenet_small":  # DenseNet's code (dense blocks, transitions, final 7x7 pooling) at 56x56
        net = vision.DenseNet(8, 4, [2, 2])
    else:
        net = vision.get_model(name, pretrained=False, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=1.5))
    return net


# Every family of the model zoo (ResNet v1/v2, MobileNet v1/v2, DenseNet, SqueezeNet, VGG with BN,
# Inception v3, AlexNet) at batch 1 and 8 on x86: the smallest member and the smallest input the
# network allows (DenseNet, SqueezeNet and Inception end in a fixed-size pooling); DenseNet-121 at
# 224 and Inception v3 at 299 at batch 1 only (batch 8 of DenseNet's code: a small DenseNet at
# 56x56), to keep the suite's time. On the emulated
# SX-Aurora one batch size per family (the emulation runs the C kernels on the host, slowly);
# Inception v3 there (299x299, about 55 s) is left to a manual run.
X86 = [("resnet18_v1", 32, (1, 8)), ("resnet18_v2", 32, (1, 8)), ("mobilenet0.25", 32, (1, 8)),
       ("mobilenetv2_0.25", 32, (1, 8)), ("squeezenet1.1", 224, (1, 8)), ("densenet_small", 56, (1, 8)),
       ("densenet121", 224, (1,)), ("vgg11_bn", 32, (1, 8)), ("alexnet", 64, (1, 8)), ("inceptionv3", 299, (1,))]
VE = [("resnet18_v1", 32, 8), ("resnet18_v2", 32, 1), ("mobilenet0.25", 32, 1), ("mobilenetv2_0.25", 32, 8),
      ("squeezenet1.1", 224, 1), ("densenet_small", 56, 8), ("vgg11_bn", 32, 1), ("alexnet", 64, 8)]
CASES = [(name, "x86", size, b) for name, size, b in X86] + [(name, "ve", size, (b,)) for name, size, b in VE]


def _trained_statistics(net: object) -> None:
    """BatchNorm statistics of a trained network, not 0 and 1."""
    for p in net.collect_params().values():
        if "running_mean" in p.name:
            p.set_data(mx.nd.random.uniform(-0.1, 0.1, shape=p.shape))
        elif "running_var" in p.name:
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))


@pytest.mark.parametrize(("name", "device", "size", "batches"), CASES,
                         ids=[f"{n}-{d}-{s}-b{'+'.join(map(str, b))}" for n, d, s, b in CASES])
def test_zoo_network_matches_mxnet(name: str, device: str, size: int, batches: tuple[int, ...]) -> None:
    net = _net(name)
    xs = [mx.nd.random.uniform(-1, 1, shape=(b, 3, size, size)) for b in batches]
    net(xs[0])  # deferred shapes
    _trained_statistics(net)
    wants = [net(x) for x in xs]
    opt = sol.mxnet.optimize(net, xs[0], device=device)
    assert not opt.fallback_ops
    for x, want in zip(xs, wants):  # a second batch size: a variant compiled on its first call
        assert_close(opt(x), want, rtol=1e-3, atol=1e-4)
