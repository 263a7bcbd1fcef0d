"""The networks the VE tests run: every IR network of the core and x86 suites, and the PyTorch
models of benchmarks/zoo.py (when the PyTorch frontend is installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from sol.ir import Graph

from graphs import branchy, conv_block, conv_bn_relu_pool, dense_mm, seed_net

HAVE_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("sol_pytorch") is not None


IR_NETWORKS: dict[str, Callable[[], Graph]] = {
    "seed": lambda: seed_net(1),
    "conv_bn_relu_pool": conv_bn_relu_pool,
    "branchy": branchy,
    "conv_block": lambda: conv_block(False),
    "conv_block_residual": lambda: conv_block(True),
    "dense_mm_2d": lambda: dense_mm((4, 32)),
    "dense_mm_3d": lambda: dense_mm((2, 3, 32)),
}


def torch_models() -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """name -> (model factory, input shape)."""
    from torch import nn

    from zoo import SeedNet, mlp, randomize_batchnorm, small_resnet, unet

    def resnet() -> nn.Module:
        return randomize_batchnorm(small_resnet().eval())

    def small_unet(bilinear: bool) -> Callable[[], nn.Module]:
        # Transposed convolutions (a generated kernel) or bilinear resizing (vector gathers).
        return lambda: randomize_batchnorm(unet(3, 2, base=8, bilinear=bilinear).eval())

    return {"SeedNet": (lambda: SeedNet().eval(), (1, 512, 13, 13)), "mlp": (lambda: mlp().eval(), (16, 64)),
            "small_resnet_b1": (resnet, (1, 3, 32, 32)), "small_resnet_b3": (resnet, (3, 3, 32, 32)),
            "small_unet": (small_unet(False), (2, 3, 32, 32)),
            "small_unet_bilinear": (small_unet(True), (2, 3, 32, 32))}
