"""Models written in plain torch.nn (torchvision cannot be installed beside our torch build),
faithful to the published architectures, and Hugging Face transformers families built from their
configs (``hf_*``). Shared by the demo, the benchmarks and the tests."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (torchvision): 1x1 reduce, 3x3 carrying the stride, 1x1 expand x4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet as in He et al. 2016 / torchvision: resnet18/34 (BasicBlock), resnet50/101/152 (Bottleneck)."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000, width: int = 64,
                 block: type[BasicBlock] | type[Bottleneck] = BasicBlock) -> None:
        super().__init__()
        self.block = block
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(width, layers[0], 1)
        self.layer2 = self._make(width * 2, layers[1], 2)
        self.layer3 = self._make(width * 4, layers[2], 2)
        self.layer4 = self._make(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)

    def _make(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers: list[nn.Module] = [self.block(self.inplanes, planes, stride)]
        self.inplanes = planes * self.block.expansion
        layers += [self.block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, block=Bottleneck)


def small_resnet(num_classes: int = 10) -> ResNet:
    """A narrow ResNet with BatchNorm for fast whole-network tests."""
    return ResNet((1, 1, 1, 1), num_classes, width=8)


class SeedNet(nn.Module):
    """The seed slides' network: 1x1 convolution with bias, ReLU, 13x13 average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(512, 1000, 1)
        self.relu = nn.ReLU()
        self.pool = nn.AvgPool2d(13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.conv(x)))


def mlp(d_in: int = 64, hidden: int = 128, d_out: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(0.1),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d_out), nn.LogSoftmax(dim=1))


# --- shared building blocks ----------------------------------------------------------------------


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never down by more than 10% (MobileNet/EfficientNet)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_act(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU, eps: float = 1e-5) -> nn.Sequential:
    """Convolution (no bias, 'same' padding for odd k) + BatchNorm + optional activation."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=eps)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Hu et al. 2018, as in torchvision.ops.SqueezeExcitation: global average pool, 1x1 conv (bias),
    activation, 1x1 conv (bias), gate (sigmoid or hardsigmoid), channel-wise scale."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))


class StochasticDepth(nn.Module):
    """Row-mode stochastic depth (Huang et al. 2016, torchvision.ops.StochasticDepth): in training each
    sample's residual branch is dropped with probability p and the rest rescaled; identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep


# --- VGG-11 with BatchNorm ---------------------------------------------------------------------


class VGG(nn.Module):
    """Simonyan & Zisserman 2015, torchvision's vgg11_bn: 3x3 convolutions + BatchNorm + ReLU, 2x2 max
    pooling, adaptive average pooling to 7x7 and the 4096-4096 classifier with dropout."""

    CFG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, cfg: tuple[int | str, ...] = CFG_A, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg11_bn(num_classes: int = 1000) -> VGG:
    return VGG(VGG.CFG_A, num_classes)


# --- MobileNetV2 ---------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2 block (Sandler et al. 2018): 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear
    projection; residual when stride 1 and channels equal."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's mobilenet_v2 (width 1.0): 32-channel stem, 17 inverted residuals, 1280-channel
    1x1 head, dropout 0.2 + linear classifier."""

    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))  # t (expansion), c (channels), n (repeats), s (first stride)

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0) -> None:
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [conv_bn_act(3, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in self.SETTING:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn_act(cin, self.last_channel, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(num_classes)


# --- MobileNetV3-Small ---------------------------------------------------------------------------


class MBv3Block(nn.Module):
    """MobileNetV3 bottleneck (Howard et al. 2019): optional 1x1 expand, kxk depthwise, optional
    squeeze-excitation (ReLU, hardsigmoid gate), 1x1 linear projection; ReLU or hardswish."""

    def __init__(self, cin: int, k: int, exp: int, cout: int, use_se: bool, act: str, stride: int) -> None:
        super().__init__()
        a: type[nn.Module] = nn.Hardswish if act == "HS" else nn.ReLU
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn_act(cin, exp, 1, act=a, eps=0.001))
        layers.append(conv_bn_act(exp, exp, k, stride, groups=exp, act=a, eps=0.001))
        if use_se:
            layers.append(SqueezeExcitation(exp, _make_divisible(exp // 4, 8), nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_bn_act(exp, cout, 1, act=None, eps=0.001))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV3(nn.Module):
    """torchvision's mobilenet_v3_small: hardswish stem, 11 bottlenecks, 576-channel 1x1 head,
    576-1024 hardswish classifier with dropout 0.2. BatchNorm eps 0.001 as in torchvision."""

    SMALL = (  # in, kernel, expanded, out, SE, activation, stride
        (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1))

    def __init__(self, num_classes: int = 1000, setting: tuple = SMALL, last_channel: int = 1024) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, setting[0][0], 3, 2, act=nn.Hardswish, eps=0.001)]
        layers += [MBv3Block(*cfg) for cfg in setting]
        last_conv = 6 * setting[-1][3]
        layers.append(conv_bn_act(setting[-1][3], last_conv, 1, act=nn.Hardswish, eps=0.001))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last_conv, last_channel), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2, inplace=True), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_small(num_classes: int = 1000) -> MobileNetV3:
    return MobileNetV3(num_classes)


# --- DenseNet-121 --------------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv (bn_size * growth) - BN-ReLU-3x3 conv (growth) on the concatenated features."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth, bn_size) for i in range(n)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False),
                         nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    """Huang et al. 2017, torchvision's densenet121: growth 32, blocks (6, 12, 24, 16), 64 initial
    features, bottleneck width 4 x growth, transitions halving channels, final BN-ReLU, linear."""

    def __init__(self, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16), init_features: int = 64,
                 bn_size: int = 4, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, init_features, 7, 2, 3, bias=False), nn.BatchNorm2d(init_features),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        c = init_features
        for i, n in enumerate(blocks):
            layers.append(DenseBlock(n, c, growth, bn_size))
            c += n * growth
            if i != len(blocks) - 1:
                layers.append(Transition(c, c // 2))
                c //= 2
        layers.append(nn.BatchNorm2d(c))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu(self.features(x))
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, (1, 1)), 1))


def densenet121(num_classes: int = 1000) -> DenseNet:
    return DenseNet(32, (6, 12, 24, 16), 64, 4, num_classes)


# --- SqueezeNet 1.0 ------------------------------------------------------------------------------


class Fire(nn.Module):
    """Iandola et al. 2016: 1x1 squeeze + ReLU, then 1x1 and 3x3 expands + ReLU, concatenated."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.squeeze(x))
        return torch.cat([self.relu(self.expand1x1(x)), self.relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """torchvision's squeezenet1_0: 7x7/2 stem with 96 channels, ceil-mode 3x3/2 max pooling, eight
    Fire modules, dropout + 1x1 conv classifier + ReLU + global average pooling."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(512, 64, 256, 256))
        final_conv = nn.Conv2d(512, num_classes, 1)
        self.classifier = nn.Sequential(nn.Dropout(0.5), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        for m in self.modules():  # torchvision's initialisation (no BatchNorm: PyTorch's default collapses)
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0(num_classes: int = 1000) -> SqueezeNet:
    return SqueezeNet(num_classes)


# --- GoogLeNet (Inception v1) --------------------------------------------------------------------


def _basic_conv(cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """torchvision's BasicConv2d: conv (no bias) + BatchNorm (eps 0.001) + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout, eps=0.001),
                         nn.ReLU(inplace=True))


class Inception(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 (torchvision's choice where the paper
    has 5x5); 3x3/1 ceil-mode max pool -> 1x1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = _basic_conv(cin, c1, 1)
        self.branch2 = nn.Sequential(_basic_conv(cin, c3r, 1), _basic_conv(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(_basic_conv(cin, c5r, 1), _basic_conv(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _basic_conv(cin, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (used in training only): 4x4 adaptive average pool, 1x1 conv to 128,
    1024-wide linear with ReLU and dropout 0.7, linear."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.conv = _basic_conv(cin, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        return self.fc2(self.dropout(nn.functional.relu(self.fc1(x), inplace=True)))


class GoogLeNet(nn.Module):
    """Szegedy et al. 2015, torchvision's googlenet (transform_input=False). The auxiliary heads exist
    (aux_logits=True) but only run in training mode; eval returns the main logits only."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True) -> None:
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = _basic_conv(3, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = _basic_conv(64, 64, 1)
        self.conv3 = _basic_conv(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if aux1 is not None and aux2 is not None:
            return x, aux2, aux1
        return x


def googlenet(num_classes: int = 1000) -> GoogLeNet:
    return GoogLeNet(num_classes)


# --- EfficientNet-B0 -----------------------------------------------------------------------------


class MBConv(nn.Module):
    """EfficientNet MBConv (Tan & Le 2019, torchvision): 1x1 expand + SiLU, kxk depthwise + SiLU,
    squeeze-excitation (SiLU, sigmoid; squeeze = input channels / 4), 1x1 projection, stochastic-depth
    residual when stride 1 and channels equal."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int, sd_prob: float) -> None:
        super().__init__()
        hidden = _make_divisible(cin * expand)
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, act=nn.SiLU))
        layers += [conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcitation(hidden, max(1, cin // 4), nn.SiLU, nn.Sigmoid),
                   conv_bn_act(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.stochastic_depth(out) if self.use_res else out


class EfficientNet(nn.Module):
    """torchvision's efficientnet_b0: 32-channel SiLU stem, 16 MBConv blocks in 7 stages, 1280-channel
    head, dropout 0.2 + linear; stochastic depth 0.2 scaled linearly over the blocks."""

    B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
          (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))  # t, k, s, in, out, n

    def __init__(self, num_classes: int = 1000, setting: tuple = B0, stochastic_depth_prob: float = 0.2,
                 dropout: float = 0.2, last_channel: int = 1280) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn_act(3, setting[0][3], 3, 2, act=nn.SiLU)]
        total = sum(cfg[5] for cfg in setting)
        block_id = 0
        for t, k, s, cin, cout, n in setting:
            stage: list[nn.Module] = []
            for i in range(n):
                sd = stochastic_depth_prob * block_id / total
                stage.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, t, sd))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        layers.append(conv_bn_act(setting[-1][4], last_channel, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0(num_classes: int = 1000) -> EfficientNet:
    return EfficientNet(num_classes)


# --- ConvNeXt-Tiny -------------------------------------------------------------------------------


class Permute(nn.Module):
    def __init__(self, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, through channels-last permutes (torchvision)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022, torchvision): 7x7 depthwise conv, permute to channels-last,
    LayerNorm (eps 1e-6), Linear 4x + GELU + Linear, permute back, layer scale, stochastic depth,
    residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-6, sd_prob: float = 0.0) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute((0, 2, 3, 1)), nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), Permute((0, 3, 1, 2)))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stochastic_depth(self.layer_scale * self.block(x))


class ConvNeXt(nn.Module):
    """torchvision's convnext_tiny: 4x4/4 patchify stem + LayerNorm2d, stages of CNBlocks with
    (96, 192, 384, 768) channels and (3, 3, 9, 3) blocks, LayerNorm2d + 2x2/2 conv downsampling,
    global average pool + LayerNorm2d + linear head; stochastic depth 0.1 scaled over the blocks.
    ``stages`` keeps only the first stages (``convnext_tiny_stage``); the head then takes the last
    kept stage's channels."""

    TINY = ((96, 3), (192, 3), (384, 9), (768, 3))

    def __init__(self, num_classes: int = 1000, setting: tuple = TINY, stochastic_depth_prob: float = 0.1,
                 layer_scale: float = 1e-6, stages: int | None = None) -> None:
        super().__init__()
        setting = setting[:stages] if stages is not None else setting
        c0 = setting[0][0]
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, c0, 4, 4), LayerNorm2d(c0, eps=1e-6))]
        total = sum(n for _, n in setting)
        block_id = 0
        for i, (dim, n) in enumerate(setting):
            blocks = []
            for _ in range(n):
                blocks.append(CNBlock(dim, layer_scale, stochastic_depth_prob * block_id / max(total - 1.0, 1.0)))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            if i + 1 < len(setting):
                nxt = setting[i + 1][0]
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, nxt, 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = setting[-1][0]
        self.classifier = nn.Sequential(LayerNorm2d(last, eps=1e-6), nn.Flatten(1), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny(num_classes: int = 1000) -> ConvNeXt:
    return ConvNeXt(num_classes)


def convnext_tiny_stage(num_classes: int = 1000, stages: int = 1) -> ConvNeXt:
    """ConvNeXt-Tiny cut after its first ``stages`` stages (default: stem + stage 1 of 3 blocks, 96
    channels) with the usual head; every layer as in convnext_tiny."""
    return ConvNeXt(num_classes, stages=stages)


# --- ViT-B/16 ------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameters (packed in_proj, out_proj),
    written out as matmul / softmax so that it exports as plain ops: q k^T / sqrt(d), softmax, @ v."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        qkv = self.in_proj(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * (d // h) ** -0.5, dim=-1)
        return self.out_proj(torch.matmul(attn, v).transpose(1, 2).reshape(b, n, d))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block (torchvision's ViT EncoderBlock): LayerNorm (eps 1e-6) -> attention
    -> residual; LayerNorm -> MLP (Linear, GELU, Linear, dropouts) -> residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, mha: bool = True) -> None:
        super().__init__()
        self.mha = mha
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention: nn.Module = (nn.MultiheadAttention(dim, heads, batch_first=True) if mha
                                          else SelfAttention(dim, heads))
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        if self.mha:
            y, _ = self.self_attention(y, y, y, need_weights=False)
        else:
            y = self.self_attention(y)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """Dosovitskiy et al. 2021, torchvision's vit_b_16: 16x16/16 patch-embedding convolution to 768,
    class token, learned position embedding, pre-norm encoder blocks (12 heads, MLP 3072), final
    LayerNorm, linear head on the class token. ``image_size`` sets the number of patches;
    ``mha=False`` uses :class:`SelfAttention` (same math) instead of nn.MultiheadAttention."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, num_layers: int = 12, num_heads: int = 12,
                 hidden_dim: int = 768, mlp_dim: int = 3072, num_classes: int = 1000, mha: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(hidden_dim, num_heads, mlp_dim, mha) for _ in range(num_layers)])
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.ln(self.layers(self.dropout(x + self.pos_embedding)))
        return self.head(x[:, 0])


def vit_b_16(num_classes: int = 1000, image_size: int = 224, num_layers: int = 12,
             mha: bool = True) -> VisionTransformer:
    """ViT-B/16; ``num_layers`` < 12 gives the reduced-depth variant (every block as in B/16)."""
    return VisionTransformer(image_size, 16, num_layers, 12, 768, 3072, num_classes, mha)


# --- U-Net ----------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """U-Net's unit: (3x3 convolution, BatchNorm, ReLU) twice; "same" padding keeps the size, so
    the skip connections need no cropping (the common form of Ronneberger et al.'s valid one)."""

    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        mid = mid or cout
        super().__init__(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetDown(nn.Sequential):
    """Contracting step: 2x2 max pooling, then the double convolution (channels doubled)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class UNetUp(nn.Module):
    """Expanding step: upsample the deeper map 2x (a 2x2 stride-2 transposed convolution that
    halves the channels, or bilinear upsampling keeping them), pad it to the skip connection's
    size if the input was not divisible by 16, concatenate [skip, upsampled], double convolution."""

    def __init__(self, cin: int, cout: int, bilinear: bool) -> None:
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = nn.functional.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with BatchNorm and same padding, as in the widely used
    PyTorch implementation: four 2x2 max-pool downsamplings (64-128-256-512-1024 channels for
    base width 64), four upsamplings with skip concatenations, a 1x1 output convolution giving
    per-pixel class scores. ``bilinear=True``: bilinear upsampling followed by the convolutions
    (the bottleneck then has half the channels, as in that implementation)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 64, bilinear: bool = False) -> None:
        super().__init__()
        f = 2 if bilinear else 1
        self.inc = DoubleConv(in_channels, base)
        self.down1 = UNetDown(base, base * 2)
        self.down2 = UNetDown(base * 2, base * 4)
        self.down3 = UNetDown(base * 4, base * 8)
        self.down4 = UNetDown(base * 8, base * 16 // f)
        self.up1 = UNetUp(base * 16, base * 8 // f, bilinear)
        self.up2 = UNetUp(base * 8, base * 4 // f, bilinear)
        self.up3 = UNetUp(base * 4, base * 2 // f, bilinear)
        self.up4 = UNetUp(base * 2, base, bilinear)
        self.outc = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        return self.outc(self.up4(x, x1))


def unet(in_channels: int = 3, num_classes: int = 2, base: int = 64, bilinear: bool = False) -> UNet:
    return UNet(in_channels, num_classes, base, bilinear)


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm2d non-trivial running statistics and affine parameters, so that a
    test comparing against eager also checks how BatchNorm is folded (fresh ones are identity)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


# --- BERT ------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm (eps 1e-12), dropout (Hugging Face's
    BertEmbeddings). Positions come from a buffer ``arange(max_position)`` sliced to the length."""

    position_ids: torch.Tensor  # a buffer (for type checkers: nn.Module's attributes are Tensor | Module)

    def __init__(self, vocab_size: int, hidden: int, max_position: int, type_vocab_size: int) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_position, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer("position_ids", torch.arange(max_position).expand((1, -1)), persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = self.position_ids[:, : input_ids.shape[1]]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Separate query/key/value projections, scaled dot products plus the additive mask, softmax,
    dropout, weighted sum of values; heads split and merged with view/permute."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(0.1)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        probs = self.dropout(torch.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.shape[0], context.shape[1], -1)


class BertLayer(nn.Module):
    """Post-norm encoder layer: attention, dense + dropout + residual + LayerNorm; GELU
    intermediate; dense + dropout + residual + LayerNorm."""

    def __init__(self, hidden: int, heads: int, intermediate: int) -> None:
        super().__init__()
        self.attention = BertSelfAttention(hidden, heads)
        self.attention_dense = nn.Linear(hidden, hidden)
        self.attention_dropout = nn.Dropout(0.1)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.act = nn.GELU()
        self.output = nn.Linear(intermediate, hidden)
        self.output_dropout = nn.Dropout(0.1)
        self.output_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention_norm(x + self.attention_dropout(self.attention_dense(self.attention(x, mask))))
        return self.output_norm(a + self.output_dropout(self.output(self.act(self.intermediate(a)))))


class BertEncoder(nn.Module):
    """Devlin et al. 2019 (Hugging Face's BertModel without the cross-attention options):
    embeddings, ``num_layers`` encoder layers, pooler (dense + tanh on the first token). Returns
    (sequence output, pooled output). Padding positions (``attention_mask == 0``) are masked with
    the extended mask ``(1 - mask) * finfo.min`` (``mask_mode="additive"``, as Hugging Face does)
    or with ``masked_fill`` on the scores (``mask_mode="masked_fill"``); the results agree."""

    def __init__(self, vocab_size: int = 30522, hidden: int = 768, num_layers: int = 12, num_heads: int = 12,
                 intermediate: int = 3072, max_position: int = 512, type_vocab_size: int = 2,
                 mask_mode: str = "additive") -> None:
        super().__init__()
        if mask_mode not in ("additive", "masked_fill"):
            raise ValueError(f"mask_mode must be 'additive' or 'masked_fill', got {mask_mode!r}")
        self.mask_mode = mask_mode
        self.embeddings = BertEmbeddings(vocab_size, hidden, max_position, type_vocab_size)
        self.layers = nn.ModuleList([BertLayer(hidden, num_heads, intermediate) for _ in range(num_layers)])
        self.pooler = nn.Linear(hidden, hidden)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embeddings(input_ids, token_type_ids)
        lowest = torch.finfo(x.dtype).min
        if self.mask_mode == "additive":
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * lowest
        else:
            mask = torch.zeros(attention_mask.shape, dtype=x.dtype).masked_fill(attention_mask == 0, lowest)
            mask = mask[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


def bert_encoder(vocab_size: int = 30522, hidden: int = 768, num_layers: int = 12, num_heads: int = 12,
                 intermediate: int | None = None, max_position: int = 512, mask_mode: str = "additive") -> BertEncoder:
    """BERT-base by default (109,482,240 parameters); smaller sizes give the reduced variants
    (``intermediate`` defaults to 4 * hidden, as in every published BERT)."""
    return BertEncoder(vocab_size, hidden, num_layers, num_heads, intermediate or 4 * hidden, max_position, 2,
                       mask_mode)


class RNNLanguageModel(nn.Module):
    """PyTorch's examples/word_language_model ``RNNModel``: token embedding, dropout, a multi-layer
    LSTM or GRU (dropout between layers), dropout, a linear decoder to the vocabulary and
    log-softmax over it. Time-major token ids (seq, batch) -> log-probabilities (seq * batch,
    vocab) and the final hidden state ((h_n, c_n) for an LSTM, h_n for a GRU)."""

    def __init__(self, rnn_type: str = "LSTM", ntoken: int = 1000, ninp: int = 256, nhid: int = 256,
                 nlayers: int = 2, dropout: float = 0.2) -> None:
        super().__init__()
        if rnn_type not in ("LSTM", "GRU"):
            raise ValueError(f"rnn_type must be 'LSTM' or 'GRU', got {rnn_type!r}")
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        # The example's initialisation: small uniform embeddings and decoder, zero decoder bias.
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, object]:
        emb = self.drop(self.encoder(tokens))
        output, hidden = self.rnn(emb)
        decoded = self.decoder(self.drop(output)).view(-1, self.ntoken)
        return torch.log_softmax(decoded, dim=1), hidden


def lstm_language_model(ntoken: int = 1000, size: int = 256, nlayers: int = 2) -> RNNLanguageModel:
    """2-layer LSTM language model, embedding and hidden size 256, vocabulary 1000."""
    return RNNLanguageModel("LSTM", ntoken, size, size, nlayers)


def gru_language_model(ntoken: int = 1000, size: int = 256, nlayers: int = 2) -> RNNLanguageModel:
    """2-layer GRU language model, embedding and hidden size 256, vocabulary 1000."""
    return RNNLanguageModel("GRU", ntoken, size, size, nlayers)


# --- Hugging Face transformers families (issue #22 item 6) --------------------------------------
# Built from their configs with random weights (nothing is downloaded); transformers is imported
# only when one is built (it is a test dependency of this project, pinned in scripts/env.sh).


class HuggingFace(nn.Module):
    """A transformers model with one tensor in and one out, as ``sol bench``'s engines call
    models: token ids (or images) in, the model's first output (its last hidden state, or the
    language model's logits) out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]  # type: ignore[no-any-return]


def _transformers() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    return transformers


def hf_bert_base() -> HuggingFace:
    """transformers' BertModel at BERT-base's size (110M parameters); token ids in."""
    t = _transformers()
    return HuggingFace(t.BertModel(t.BertConfig(), add_pooling_layer=False))


def hf_gpt2() -> HuggingFace:
    """transformers' GPT2LMHeadModel at GPT-2 small's size (124M parameters), without its cache;
    token ids in, logits over the 50,257-token vocabulary out."""
    t = _transformers()
    return HuggingFace(t.GPT2LMHeadModel(t.GPT2Config(use_cache=False)))


def hf_llama() -> HuggingFace:
    """A Llama-architecture decoder of about GPT-2 small's size (12 layers, width 768, grouped-query
    attention with 4 key/value heads, SiLU-gated MLP of 2048, rotary embeddings; 109M parameters)
    without its cache; token ids in, logits over 32,000 tokens out."""
    t = _transformers()
    config = t.LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                           num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=1024,
                           use_cache=False)
    return HuggingFace(t.LlamaForCausalLM(config))


def hf_vit_base(image_size: int = 224) -> HuggingFace:
    """transformers' ViTModel at ViT-B/16's size (86M parameters); images in."""
    t = _transformers()
    return HuggingFace(t.ViTModel(t.ViTConfig(image_size=image_size), add_pooling_layer=False))
