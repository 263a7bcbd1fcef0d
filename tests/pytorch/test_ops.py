"""Every ATen operation the PyTorch frontend maps, against PyTorch eager.

Each case is a tiny model. ``test_reference`` imports it and evaluates the sol graph with the
ops' NumPy references (no device involved): this checks the frontend's mapping, case by case.
``test_device`` compiles all cases of one op family as one model on each device (one compile per
family, as tests/conformance does per op) and compares every case's output with PyTorch.
fp32 tolerance for single ops: rtol 1e-4, atol 1e-5 scaled by the output's magnitude.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sol.errors import UnsupportedOpError
from sol_pytorch.importer import import_module

from op_cases import Cases, Fn, check_device, check_reference, checked_arrays, r

torch.manual_seed(0)

CASES = Cases()
case = CASES.add


def pos(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) + 0.1


# --- convolution ------------------------------------------------------------------------------
for _name, _kw in {
    "k3-s1-p0": dict(kernel_size=3),
    "k3-s2-p1-nobias": dict(kernel_size=3, stride=2, padding=1, bias=False),
    "pad(1,2)": dict(kernel_size=3, padding=(1, 2)),
    "dilation2": dict(kernel_size=3, dilation=2, padding=2),
    "groups2": dict(kernel_size=3, groups=2, padding=1),
    "depthwise": dict(kernel_size=3, groups=4, padding=1),
    "1x1": dict(kernel_size=1),
    "k(3,1)-s(2,1)": dict(kernel_size=(3, 1), stride=(2, 1)),
    "same-even-kernel": dict(kernel_size=4, padding="same"),
    "valid": dict(kernel_size=2, padding="valid"),
    "s2-dil2-groups2-nobias": dict(kernel_size=3, stride=2, dilation=2, groups=2, padding=1, bias=False),
}.items():
    case("conv2d", _name, nn.Conv2d(4, 8, **_kw), r(2, 4, 9, 10))
case("conv2d", "unbatched", nn.Conv2d(4, 6, 3, padding=1), r(4, 7, 7))
case("weight_input", "conv2d", lambda x, w: F.conv2d(x, w, padding=1), r(1, 4, 6, 6), r(3, 4, 3, 3))
case("conv1d", "k3-p1", nn.Conv1d(4, 6, 3, padding=1), r(2, 4, 11))
case("conv1d", "s2-groups2-nobias", nn.Conv1d(4, 6, 3, stride=2, groups=2, bias=False), r(2, 4, 11))
case("conv1d", "unbatched-dilation2", nn.Conv1d(4, 6, 3, dilation=2), r(4, 11))

# --- transposed convolution, upsampling, group / instance norm (decoder models: U-Net) ---------
for _name, _kw in {
    "k2-s2": dict(kernel_size=2, stride=2),
    "k3-s2-p1-op1": dict(kernel_size=3, stride=2, padding=1, output_padding=1),
    "k3-s2-op1-nopad": dict(kernel_size=3, stride=2, output_padding=1),
    "groups2-nobias": dict(kernel_size=3, padding=1, groups=2, bias=False),
    "dilation2": dict(kernel_size=3, dilation=2, padding=1),
    "k(3,2)-s(2,1)-op(1,0)": dict(kernel_size=(3, 2), stride=(2, 1), output_padding=(1, 0)),
    "s3-dil2-op2": dict(kernel_size=2, stride=3, dilation=2, output_padding=2),
}.items():
    case("conv_transpose2d", _name, nn.ConvTranspose2d(4, 6, **_kw), r(2, 4, 5, 6))
case("conv_transpose2d", "depthwise-k4-s2-p1", nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=4), r(2, 4, 5, 6))
case("conv_transpose2d", "unbatched", nn.ConvTranspose2d(4, 3, 3, 2), r(4, 5, 6))
_DECONV = nn.ConvTranspose2d(4, 5, 3, 2, 1)
case("conv_transpose2d", "then-relu-add", lambda x: torch.relu(_DECONV(x)) + 1.0, r(1, 4, 5, 6))
case("conv_transpose2d", "1d-s2-p1-op1", nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1),
     r(2, 4, 7))
case("weight_input", "conv_transpose2d", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), r(1, 4, 5, 5),
     r(4, 3, 3, 3))
case("weight_input", "convolution-transposed", lambda x, w, b: torch.ops.aten.convolution(
    x, w, b, [2, 2], [1, 1], [1, 1], True, [1, 1], 2), r(1, 4, 5, 5), r(4, 3, 3, 3), r(6))

for _name, _fn in {
    "Upsample-nearest-x2": nn.Upsample(scale_factor=2),
    "nearest-size": lambda x: F.interpolate(x, size=(7, 13)),
    "nearest-scale-1.5": lambda x: F.interpolate(x, scale_factor=1.5),
    "nearest-scale-(0.5,2.5)": lambda x: F.interpolate(x, scale_factor=(0.5, 2.5)),
    "nearest-exact-scale-1.7": lambda x: F.interpolate(x, scale_factor=1.7, mode="nearest-exact"),
    "nearest-exact-size": lambda x: F.interpolate(x, size=(4, 9), mode="nearest-exact"),
    "bilinear-x2": nn.Upsample(scale_factor=2, mode="bilinear"),
    "bilinear-x2-align-corners": nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
    "bilinear-size": lambda x: F.interpolate(x, size=(9, 4), mode="bilinear"),
    "bilinear-size-align-corners": lambda x: F.interpolate(x, size=(11, 13), mode="bilinear", align_corners=True),
    "bilinear-scale-1.7-recompute": lambda x: F.interpolate(x, scale_factor=1.7, mode="bilinear",
                                                            recompute_scale_factor=True),
    "bilinear-scale-0.6": lambda x: F.interpolate(x, scale_factor=0.6, mode="bilinear"),
    "UpsamplingNearest2d": nn.UpsamplingNearest2d(size=(8, 8)),
    "UpsamplingBilinear2d": nn.UpsamplingBilinear2d(scale_factor=3),
    "aten-nearest-default-scales": lambda x: torch.ops.aten.upsample_nearest2d.default(x, [10, 9], 2.0, 1.5),
    "aten-bilinear-default": lambda x: torch.ops.aten.upsample_bilinear2d.default(x, [8, 9], False, None, None),
    "aten-nearest-exact-default": lambda x: torch.ops.aten._upsample_nearest_exact2d.default(x, [8, 8], None, None),
    "bilinear-then-relu-mul": lambda x: torch.relu(F.interpolate(x, scale_factor=2, mode="bilinear")) * 2,
}.items():
    case("upsample", _name, _fn, r(2, 3, 5, 6))
case("upsample", "nearest-uint8-image", lambda x: F.interpolate(x, scale_factor=(2, 1.5)),
     torch.randint(0, 256, (1, 3, 5, 6), dtype=torch.uint8))


def _affine(m: nn.Module) -> nn.Module:
    """Non-trivial affine parameters (the defaults, ones and zeros, would hide a mix-up) and,
    where tracked, running statistics."""
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return m


for _groups in (1, 2, 3, 6):
    case("group_norm", f"groups{_groups}", _affine(nn.GroupNorm(_groups, 6)), r(2, 6, 5, 4) * 3 + 1)
case("group_norm", "no-affine-eps", nn.GroupNorm(2, 6, eps=1e-3, affine=False), r(2, 6, 5, 4))
case("group_norm", "3d-input", lambda x: F.group_norm(x, 3, eps=1e-4), r(2, 6, 7))
case("group_norm", "aten-native_group_norm", lambda x, w, b: torch.ops.aten.native_group_norm(
    x, w, b, 2, 6, 20, 3, 1e-5)[0], r(2, 6, 5, 4), r(6), r(6))
case("group_norm", "conv-gn-silu", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _affine(nn.GroupNorm(4, 8)), nn.SiLU()),
     r(2, 3, 6, 6))
case("group_norm", "instance_norm", nn.InstanceNorm2d(6), r(2, 6, 5, 4))
case("group_norm", "instance_norm-affine", _affine(nn.InstanceNorm2d(6, affine=True)), r(2, 6, 5, 4))
case("group_norm", "instance_norm-running-stats", _affine(nn.InstanceNorm2d(6, track_running_stats=True, affine=True)),
     r(2, 6, 5, 4))
case("group_norm", "instance_norm-1d", nn.InstanceNorm1d(6), r(2, 6, 7))

# --- dense and matrix products ----------------------------------------------------------------
case("linear", "2d", nn.Linear(16, 8), r(5, 16))
case("linear", "3d", nn.Linear(16, 8), r(2, 3, 16))
case("linear", "nobias", nn.Linear(16, 8, bias=False), r(5, 16))
case("linear", "vector", nn.Linear(16, 8), r(16))
case("weight_input", "linear", lambda x, w, b: F.linear(x, w, b), r(5, 16), r(8, 16), r(8))
case("matmul", "mm", torch.mm, r(3, 4), r(4, 5))
case("matmul", "bmm", torch.bmm, r(2, 3, 4), r(2, 4, 5))
case("matmul", "3d@2d", torch.matmul, r(2, 3, 4), r(4, 5))
case("matmul", "broadcast-batch", torch.matmul, r(1, 3, 4), r(2, 4, 5))
case("matmul", "vec@mat", torch.matmul, r(4), r(4, 5))
case("matmul", "mat@vec", torch.matmul, r(2, 3, 4), r(4))
case("matmul", "vec@vec", torch.matmul, r(4), r(4))
case("matmul", "x@w.t()", lambda x, w: x @ w.t(), r(3, 4), r(5, 4))
case("matmul", "addmm", torch.addmm, r(5), r(3, 4), r(4, 5))
case("matmul", "addmm-beta-alpha", lambda b, x, y: torch.addmm(b, x, y, beta=0.5, alpha=2.0), r(3, 5), r(3, 4),
     r(4, 5))
case("matmul", "addmm-beta0", lambda b, x, y: torch.addmm(b, x, y, beta=0.0), r(3, 5), r(3, 4), r(4, 5))
case("matmul", "einsum-decomposed", lambda x, y: torch.einsum("bij,bjk->bik", x, y), r(2, 3, 4), r(2, 4, 5))


# --- normalization ----------------------------------------------------------------------------
def _bn(m: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        if m.weight is not None:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
    return m


case("batch_norm", "2d", _bn(nn.BatchNorm2d(4)), r(2, 4, 5, 5))
case("batch_norm", "2d-affine-false-eps", _bn(nn.BatchNorm2d(4, eps=1e-3, affine=False)), r(2, 4, 5, 5))
case("batch_norm", "1d-NC", _bn(nn.BatchNorm1d(6)), r(3, 6))
case("batch_norm", "1d-NCL", _bn(nn.BatchNorm1d(6)), r(3, 6, 7))
case("batch_norm", "conv-bn-relu", nn.Sequential(nn.Conv2d(3, 4, 3), _bn(nn.BatchNorm2d(4)), nn.ReLU()),
     r(2, 3, 8, 8))
case("layer_norm", "last-dim", nn.LayerNorm(8), r(2, 3, 8))
case("layer_norm", "two-dims-no-affine", nn.LayerNorm((3, 8), elementwise_affine=False), r(2, 3, 8))

# --- element-wise -----------------------------------------------------------------------------
for _name, _fn in {
    "relu": torch.relu, "relu6": nn.ReLU6(), "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.5),
    "leaky_relu": F.leaky_relu, "leaky_relu-0.2": lambda x: F.leaky_relu(x, 0.2), "sigmoid": torch.sigmoid,
    "tanh": torch.tanh, "gelu": F.gelu, "gelu-tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": F.silu,
    "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid, "relu-inplace": lambda x: nn.ReLU(inplace=True)(x * 1),
    "exp": torch.exp, "neg": torch.neg, "abs": torch.abs, "erf": torch.erf, "square": torch.square,
    "pow2": lambda x: x**2, "pow3": lambda x: x**3, "rpow": lambda x: 2**x,
    "clamp": lambda x: torch.clamp(x, -0.5, 0.5), "clamp-min": lambda x: torch.clamp(x, min=0.0),
    "clamp-max": lambda x: x.clamp(max=0.3),
}.items():
    case("activation", _name, _fn, r(2, 3, 4, 5))
for _name, _fn in {
    "log": torch.log, "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "pow0.5": lambda x: x**0.5,
    "pow1.7": lambda x: torch.pow(x, 1.7), "reciprocal": torch.reciprocal, "rdiv": lambda x: 2 / x,
}.items():
    case("activation", _name, _fn, pos(2, 3, 4, 5))

case("binary", "add", torch.add, r(2, 3, 4), r(2, 3, 4))
case("binary", "add-channel-bias", torch.add, r(2, 3, 4, 5), r(3, 1, 1))
case("binary", "add-row", torch.add, r(2, 3, 4, 5), r(5))
case("binary", "add-int-scalar", lambda x: x + 2, r(3, 4))
case("binary", "add-float-scalar", lambda x: 0.5 + x, r(3, 4))
case("binary", "add-alpha", lambda x, y: torch.add(x, y, alpha=2), r(3, 4), r(3, 4))
case("binary", "add-scalar-alpha", lambda x: torch.add(x, 3, alpha=0.5), r(3, 4))
case("binary", "sub", torch.sub, r(3, 4), r(4))
case("binary", "sub-alpha", lambda x, y: torch.sub(x, y, alpha=0.5), r(3, 4), r(3, 4))
case("binary", "rsub-scalar", lambda x: 3 - x, r(3, 4))
case("binary", "mul", torch.mul, r(2, 3, 4), r(2, 3, 4))
case("binary", "mul-broadcast-ranks", torch.mul, r(3, 1), r(2, 1, 4))
case("binary", "mul-scalar", lambda x: x * 1.5, r(3, 4))
case("binary", "div", torch.div, r(3, 4), pos(3, 4))
case("binary", "div-scalar", lambda x: x / 4, r(3, 4))
case("binary", "maximum", torch.maximum, r(3, 4), r(3, 4))
case("binary", "minimum", torch.minimum, r(3, 4), r(4))
case("binary", "max-of-two", torch.max, r(3, 4), r(3, 4))
case("binary", "pow-tensor", torch.pow, pos(3, 4), r(3, 4))
case("binary", "clamp-tensor-bounds", lambda x, lo: torch.clamp(x, lo, lo + 0.5), r(3, 4), r(4))
case("binary", "zero-dim-constant", lambda x: x * torch.tensor(3.0), r(3, 4))
case("binary", "inplace-add", lambda x, y: (x * 1).add_(y), r(3, 4), r(3, 4))
case("binary", "int-plus-float", torch.add, torch.randint(0, 5, (3, 4)), r(3, 4))
case("binary", "int-true-division", lambda i: i / 2, torch.randint(0, 9, (3, 4)))

# --- pooling ----------------------------------------------------------------------------------
for _name, _m in {
    "max-k2": nn.MaxPool2d(2), "max-k3-s2-p1": nn.MaxPool2d(3, 2, 1), "max-ceil": nn.MaxPool2d(3, 2, ceil_mode=True),
    "max-dilation2": nn.MaxPool2d(3, 1, 1, dilation=2), "max-k(2,3)-s(1,2)": nn.MaxPool2d((2, 3), (1, 2)),
    "max-ceil-pad": nn.MaxPool2d(3, 2, 1, ceil_mode=True),
    "avg-k2": nn.AvgPool2d(2), "avg-k3-s2-p1": nn.AvgPool2d(3, 2, 1),
    "avg-no-count-pad": nn.AvgPool2d(3, 2, 1, count_include_pad=False),
    "avg-ceil": nn.AvgPool2d(3, 2, ceil_mode=True),
    "avg-ceil-pad-no-count": nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
    "avg-divisor": nn.AvgPool2d(3, 2, 1, divisor_override=3), "avg-k(3,2)": nn.AvgPool2d((3, 2)),
    "adaptive-1x1": nn.AdaptiveAvgPool2d(1), "adaptive-2x3": nn.AdaptiveAvgPool2d((2, 3)),
    "adaptive-uneven": nn.AdaptiveAvgPool2d(3), "adaptive-None": nn.AdaptiveAvgPool2d((None, 2)),
}.items():
    case("pool", _name, _m, r(2, 3, 7, 8))
case("pool", "max-unbatched", nn.MaxPool2d(2), r(3, 6, 6))
case("pool", "max-return-indices-unused", lambda x: F.max_pool2d(x, 2, return_indices=True)[0], r(1, 2, 6, 6))

# --- softmax and reductions -------------------------------------------------------------------
for _dim in (0, 1, -1):
    case("softmax", f"softmax-dim{_dim}", lambda x, d=_dim: torch.softmax(x, d), r(2, 3, 5))
    case("softmax", f"log_softmax-dim{_dim}", lambda x, d=_dim: F.log_softmax(x, dim=d), r(2, 3, 5))
case("softmax", "module", nn.Softmax(dim=1), r(4, 10))
case("softmax", "float64-result", lambda x: torch.softmax(x, -1, dtype=torch.float64), r(2, 5))
case("reduce", "mean-dim1", lambda x: x.mean(1), r(2, 3, 4, 5))
case("reduce", "mean-hw-keepdim", lambda x: x.mean((2, 3), keepdim=True), r(2, 3, 4, 5))
case("reduce", "mean-all", lambda x: x.mean(), r(2, 3, 4))
case("reduce", "mean-negative-dim", lambda x: torch.mean(x, dim=-1), r(2, 3, 4))
case("reduce", "sum-dim0", lambda x: x.sum(0), r(2, 3, 4))
case("reduce", "sum-keepdim", lambda x: torch.sum(x, (1, 2), keepdim=True), r(2, 3, 4))
case("reduce", "sum-all", lambda x: x.sum(), r(2, 3, 4))
case("reduce", "sum-int-to-int64", lambda i: i.sum(1), torch.randint(-5, 5, (3, 4), dtype=torch.int32))

# --- shapes and data movement -----------------------------------------------------------------
for _name, _fn in {
    "flatten1": lambda x: torch.flatten(x, 1), "flatten(0,2)": lambda x: x.flatten(0, 2), "Flatten": nn.Flatten(),
    "reshape-1": lambda x: x.reshape(-1), "view": lambda x: x.view(2, -1),
    "permute": lambda x: x.permute(0, 2, 3, 1), "transpose": lambda x: x.transpose(1, 2),
    "mT": lambda x: x.mT, "swapaxes": lambda x: torch.swapaxes(x, 0, 3),
    "squeeze-dim": lambda x: x.view(2, 1, 60).squeeze(1),
    "squeeze-all": lambda x: x.view(2, 1, 3, 1, 20).squeeze(), "unsqueeze0": lambda x: x.unsqueeze(0),
    "unsqueeze-last": lambda x: x.unsqueeze(-1), "contiguous": lambda x: x.permute(0, 3, 1, 2).contiguous(),
    "expand": lambda x: x.sum(1, keepdim=True).expand(2, 3, 4, 5),
    "expand-new-dims": lambda x: x.expand(3, 2, 3, 4, 5),
}.items():
    case("layout", _name, _fn, r(2, 3, 4, 5))
case("layout", "t", lambda x: x.t(), r(3, 4))
case("layout", "T", lambda x: x.T, r(3, 4))
case("layout", "cat-dim0", lambda a, b, c: torch.cat([a, b, c]), r(2, 3), r(1, 3), r(3, 3))
case("layout", "cat-dim1", lambda a, b: torch.cat((a, b), dim=1), r(2, 3, 4), r(2, 5, 4))
case("layout", "cat-dim-last", lambda a, b, c: torch.cat([a, b, c], -1), r(2, 3), r(2, 1), r(2, 4))
case("layout", "stack", lambda a, b: torch.stack([a, b], 1), r(2, 3), r(2, 3))
case("layout", "expand-as", lambda x, y: x.expand_as(y), r(3, 1), r(2, 3, 4))

# --- slicing, splitting and padding ----------------------------------------------------------
for _name, _fn in {
    "dim1": lambda x: x[:, 1:3], "last-dim-step2": lambda x: x[..., ::2], "negative-bounds": lambda x: x[:, -3:-1],
    "out-of-range": lambda x: x[:, 2:100], "before-start": lambda x: x[-100:1], "step3-offset": lambda x: x[:, :, 1::3],
    "several-dims": lambda x: x[1:, ::2, 1:-1, 3:], "full-range": lambda x: x[:, :] * 2,
    "empty-and-more": lambda x: x[:, 2:].sum(1) + x[:, 3:1].sum(1), "None-index": lambda x: x[None, :, 1:, None],
    "select-class-token": lambda x: x[:, 0], "select-negative": lambda x: x[..., -1],
    "select-then-slice": lambda x: x[1, :, 2:4], "narrow": lambda x: x.narrow(2, 1, 2),
    "narrow-negative-start": lambda x: torch.narrow(x, -1, -3, 2),
}.items():
    case("slice", _name, _fn, r(2, 3, 4, 5))
case("slice", "vit-class-token", lambda x: nn.functional.layer_norm(x, (8,))[:, 0], r(2, 5, 8))
for _name, _fn in {
    "split2": lambda x: x.split(2, dim=1), "split-uneven": lambda x: torch.split(x, 4, -1),
    "split-sizes": lambda x: x.split([1, 3, 2], dim=1), "chunk3-last": lambda x: x.chunk(3, dim=-1),
    "chunk4-uneven": lambda x: torch.chunk(x, 4, 1), "unbind0": lambda x: x.unbind(0),
    "unbind-last": lambda x: torch.unbind(x, -1), "tensor_split-sections": lambda x: x.tensor_split(4, dim=1),
    "tensor_split-indices": lambda x: torch.tensor_split(x, [1, 4], dim=-1),
    "tensor_split-unordered": lambda x: torch.tensor_split(x, [4, 2], dim=1),
    "split-piece-used": lambda x: x.split(3, dim=1)[1] * 2,
}.items():
    case("split", _name, _fn, r(2, 6, 7))
for _name, _fn in {
    "constant-last": lambda x: F.pad(x, (1, 2)), "constant-value": lambda x: F.pad(x, (2, 0, 1, 3), value=-1.5),
    "constant-all-dims": lambda x: F.pad(x, (1, 1, 0, 2, 3, 0, 1, 0)),
    "negative-crop": lambda x: F.pad(x, (1, -1, -2, 0)), "crop-only": lambda x: F.pad(x, (-1, -2)),
    "constant_pad_nd": lambda x: torch.constant_pad_nd(x, (0, 1, 2, 2), 3.0), "ZeroPad2d": nn.ZeroPad2d((1, 0, 2, 1)),
    "ConstantPad1d": nn.ConstantPad1d(2, 0.5), "reflect-1d": lambda x: F.pad(x[0], (2, 3), mode="reflect"),
    "reflect-2d": nn.ReflectionPad2d((1, 2, 3, 0)), "replicate-2d": nn.ReplicationPad2d((2, 0, 1, 3)),
    "replicate-1d": lambda x: F.pad(x[0], (0, 2), mode="replicate"),
    "circular-2d": lambda x: F.pad(x, (1, 3, 2, 0), mode="circular"),
}.items():
    case("pad", _name, _fn, r(2, 3, 4, 5))


class _Attention(nn.Module):
    """A ViT-style attention block: fused qkv projection taken apart with chunk or unbind."""

    def __init__(self, dim: int, heads: int, split: str) -> None:
        super().__init__()
        self.heads, self.split = heads, split
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.split == "chunk":
            q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        else:
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, n, c))[:, 0]


case("attention", "qkv-chunk", _Attention(16, 2, "chunk"), r(2, 5, 16))
case("attention", "qkv-unbind", _Attention(16, 4, "unbind"), r(2, 5, 16))
_SDPA = F.scaled_dot_product_attention
_BOOL_MASK = torch.rand(5, 7) > 0.3
_BOOL_MASK[:, 0] = True  # no fully masked row: PyTorch's NaN rows are not what this tests
case("attention", "sdpa", lambda q, k, v: _SDPA(q, k, v), r(2, 3, 5, 8), r(2, 3, 7, 8), r(2, 3, 7, 4))
case("attention", "sdpa-causal-scale", lambda q, k, v: _SDPA(q, k, v, is_causal=True, scale=0.3),
     r(2, 4, 6, 8), r(2, 4, 6, 8), r(2, 4, 6, 8))
case("attention", "sdpa-float-mask", lambda q, k, v, m: _SDPA(q, k, v, attn_mask=m),
     r(1, 2, 5, 8), r(1, 2, 7, 8), r(1, 2, 7, 8), r(5, 7))
case("attention", "sdpa-const-bool-mask", lambda q, k, v: _SDPA(q, k, v, attn_mask=_BOOL_MASK),
     r(1, 2, 5, 8), r(1, 2, 7, 8), r(1, 2, 7, 8))
case("attention", "multihead", nn.MultiheadAttention(16, 4, batch_first=True).eval().requires_grad_(False),
     r(2, 5, 16), r(2, 5, 16), r(2, 5, 16))

# --- no-ops, casts, constants -----------------------------------------------------------------
for _name, _fn in {
    "Dropout": nn.Dropout(0.5), "dropout-functional": lambda x: F.dropout(x * 2, 0.3, training=False),
    "Identity": nn.Identity(), "clone": lambda x: (x * 2).clone(), "detach": lambda x: (x + 1).detach(),
    "to-float32": lambda x: (x - 1).to(torch.float32), "to-float64": lambda x: x.double(),
    "zeros_like": lambda x: torch.zeros_like(x) + x, "full_like": lambda x: torch.full_like(x, 2.0) * x,
    "arange-constant": lambda x: x + torch.arange(5.0), "ones-constant": lambda x: x * torch.ones(5),
}.items():
    case("identity", _name, _fn, r(2, 3, 4, 5))

BY_ID = CASES.by_id()
FAMILIES = CASES.families()


# --- checks -----------------------------------------------------------------------------------


def _close(got: Any, want: torch.Tensor, what: str) -> None:
    got, w = checked_arrays(got, want, what)
    scale = float(np.abs(w).max()) if w.size else 1.0
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5 * max(1.0, scale), err_msg=what)


SAME_PADDING_NOTE = "ignore:Using padding='same' with even kernel lengths:UserWarning"  # PyTorch's own note


@pytest.mark.filterwarnings(SAME_PADDING_NOTE)
@pytest.mark.parametrize("case_id", list(BY_ID))
def test_reference(case_id: str) -> None:
    """The imported graph, run with sol's NumPy references, computes what PyTorch computes; no
    output is a constant the importer folded."""
    check_reference(BY_ID[case_id], _close, constant_outputs=False)


@pytest.mark.filterwarnings(SAME_PADDING_NOTE)
@pytest.mark.parametrize("family", FAMILIES)
def test_device(device: str, family: str) -> None:
    """All cases of one family compiled together on ``device``, against PyTorch eager."""
    check_device([c for c in CASES if c.family == family], device, _close)


@pytest.mark.parametrize("fn", [lambda x: F.pad(x, (40, 40), mode="reflect"),
                                lambda x: F.pad(x, (-1, 2), mode="reflect")], ids=["reflect-wide", "reflect-crop"])
def test_pad_left_to_pytorch(fn: Callable[..., Any]) -> None:
    """Edge padding sol does not express as slices stays unsupported (the fallback runs it)."""
    with pytest.raises(UnsupportedOpError, match=r"aten\.pad\.default"):
        import_module(Fn(fn).eval(), (r(2, 3, 50),), {})
