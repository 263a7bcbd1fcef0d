"""Issue #5 item 1: the model zoo of benchmarks/zoo.py (plain torch.nn, faithful to the published
architectures / torchvision), each randomly initialised, in eval mode, compiled for x86 with
``fallback=False`` (an op sol lacks is a failure, not a silent PyTorch fallback) and compared to
PyTorch eager at batch 1 and 8 (fp32, rtol 1e-3, atol 1e-3 * max|want|).

Reduced for test time, architectures otherwise unchanged:

- spatial size: 64x64 images (32x32 for VGG-11, whose adaptive 7x7 pooling and 25088-4096-4096
  classifier are kept), which every network's strides and ceil-mode poolings allow;
- ConvNeXt-Tiny: the stem, stage 1 (three 96-channel blocks) and the head (``convnext_tiny_stage``);
- ViT-B/16: 2 encoder blocks instead of 12 (width 768, 12 heads, MLP 3072, patch 16 kept) on a
  64x64 image (16 patches + class token).

Random initialisation is made non-trivial where the default is an identity or zero: BatchNorm
and LayerNorm affine parameters, ConvNeXt's layer scale (1e-6 by default, which would hide the
residual branch) and ViT's class token. BatchNorm running statistics are calibrated on random
images (as after training) and then perturbed: with default statistics (mean 0, var 1) the deep
networks' activations collapse and their output no longer depends on the input, which would make
the comparison vacuous; the test checks that the outputs of a batch differ.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from torch import nn

import sol

import zoo

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:sol device .* runs emulated")]

# name: (factory, image size, marks)
MODELS: dict[str, tuple[Callable[[], nn.Module], int, tuple]] = {
    "resnet18": (lambda: zoo.resnet18(10), 64, ()),
    "resnet50": (lambda: zoo.resnet50(10), 64, ()),
    "vgg11_bn": (lambda: zoo.vgg11_bn(10), 32, ()),
    "mobilenet_v2": (lambda: zoo.mobilenet_v2(10), 64, ()),
    "mobilenet_v3_small": (lambda: zoo.mobilenet_v3_small(10), 64, ()),
    "densenet121": (lambda: zoo.densenet121(10), 64, ()),
    "squeezenet1_0": (lambda: zoo.squeezenet1_0(10), 64, ()),
    "googlenet": (lambda: zoo.googlenet(10), 64, ()),
    "efficientnet_b0": (lambda: zoo.efficientnet_b0(10), 64, ()),
    "convnext_tiny_stage": (lambda: zoo.convnext_tiny_stage(10), 64, ()),
    "vit_b_16_depth2": (lambda: zoo.vit_b_16(10, image_size=64, num_layers=2, mha=False), 64, ()),
    "vit_b_16_depth2_mha": (lambda: zoo.vit_b_16(10, image_size=64, num_layers=2, mha=True), 64, ()),
}


def _randomize(model: nn.Module, size: int) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.momentum = None  # running statistics: the average over the calibration batches
            elif isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, zoo.CNBlock):
                m.layer_scale.uniform_(0.5, 1.0)
            elif isinstance(m, zoo.VisionTransformer):
                m.class_token.normal_()
        model.train()
        for _ in range(2):
            model(torch.rand(8, 3, size, size))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.add_(torch.empty_like(m.running_mean).uniform_(-0.1, 0.1))
                m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.8, 1.25))
    return model.eval()


@functools.cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return _randomize(MODELS[name][0](), MODELS[name][1])


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", [pytest.param(n, marks=MODELS[n][2]) for n in MODELS])
def test_zoo_model_matches_pytorch(name: str, batch: int) -> None:
    model = _model(name)
    size = MODELS[name][1]
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
    fast = sol.optimize(model, x, device="x86", fallback=False)
    with torch.no_grad():
        want = model(x)
        got = fast(x)
    assert want.shape == (batch, 10)
    scale = float(want.abs().max())
    if batch > 1:  # the output depends on the input: not a collapsed network
        assert float((want - want[0]).abs().max()) > 0.01 * scale
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * scale)


def _bert_inputs(batch: int, seq: int = 32, vocab: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """int64 token ids, token types (second half of each sequence is segment B) and an attention
    mask where every sequence but the first is padded at its end (the first is padded at batch 1)."""
    gen = torch.Generator().manual_seed(batch)
    ids = torch.randint(1, vocab, (batch, seq), generator=gen)
    types = torch.zeros(batch, seq, dtype=torch.int64)
    types[:, seq // 2:] = 1
    mask = torch.ones(batch, seq, dtype=torch.int64)
    for i in range(batch):
        pad = 3 * i if batch > 1 else 5
        if pad:
            mask[i, seq - pad:] = 0
            ids[i, seq - pad:] = 0  # the padding token
    return ids, types, mask


@functools.cache
def _bert(mask_mode: str) -> nn.Module:
    """BERT reduced to hidden 256, 4 heads, 2 layers, vocabulary 1000 (architecture unchanged)."""
    torch.manual_seed(0)
    model = zoo.bert_encoder(vocab_size=1000, hidden=256, num_layers=2, num_heads=4, max_position=64,
                             mask_mode=mask_mode)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("mask_mode", ["additive", "masked_fill"])
@pytest.mark.parametrize("batch", [1, 8])
def test_bert_encoder_matches_pytorch(batch: int, mask_mode: str) -> None:
    """Token model: int64 ids through embeddings (gather), a padding mask through comparisons
    and where/masked_fill, both outputs (sequence and pooled) against eager."""
    model = _bert(mask_mode)
    ids, types, mask = _bert_inputs(batch)
    fast = sol.optimize(model, ids, types, mask, device="x86", fallback=False)
    with torch.no_grad():
        want = model(ids, types, mask)
        got = fast(ids, types, mask)
        unmasked = model(ids, types, torch.ones_like(mask))[0]
    assert [w.shape for w in want] == [(batch, 32, 256), (batch, 256)]
    # The mask matters: padding changes what the padded sequences attend to.
    assert float((want[0] - unmasked).abs().max()) > 1e-2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-3 * float(w.abs().max()))


LANGUAGE_MODELS = {"lstm_lm": zoo.lstm_language_model, "gru_lm": zoo.gru_language_model}


@functools.cache
def _language_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return LANGUAGE_MODELS[name]().eval()


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", sorted(LANGUAGE_MODELS))
def test_language_model_matches_pytorch(name: str, batch: int) -> None:
    """word_language_model's RNNModel (vocabulary 1000, embedding/hidden 256, 2 layers, 35
    steps): embedding (gather), the recurrent layers as loops over time, decoder, log-softmax;
    log-probabilities and the final state against eager."""
    model = _language_model(name)
    tokens = torch.randint(0, 1000, (35, batch), generator=torch.Generator().manual_seed(batch))
    fast = sol.optimize(model, tokens, device="x86", fallback=False)
    with torch.no_grad():
        want = model(tokens)
        got = fast(tokens)
    assert want[0].shape == (35 * batch, 1000)
    for g, w in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-3 * float(w.abs().max()))
    # log-probabilities are about -log(1000) each: compare what tells the tokens apart too.
    centred = [lp - lp.mean(dim=1, keepdim=True) for lp in (got[0], want[0])]
    scale = float(centred[1].abs().max())
    assert float((centred[1] - centred[1][0]).abs().max()) > 0.1 * scale  # depends on the input
    torch.testing.assert_close(centred[0], centred[1], rtol=1e-3, atol=1e-3 * scale)


UNETS = {"unet": False, "unet_bilinear": True}  # name: bilinear upsampling instead of ConvTranspose2d


@functools.cache
def _unet(name: str) -> nn.Module:
    """Full-width U-Net (base 64: 64-1024 channels), 2 classes, on 64x64 images."""
    torch.manual_seed(0)
    return _randomize(zoo.unet(3, 2, base=64, bilinear=UNETS[name]), 64)


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("name", list(UNETS))
def test_unet_matches_pytorch(name: str, batch: int) -> None:
    """Decoder path: 2x2 stride-2 transposed convolutions (oneDNN deconvolution) or bilinear
    upsampling (align_corners=True) fused with its neighbours, skip concatenations, per-pixel
    class scores against eager."""
    model = _unet(name)
    x = torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    fast = sol.optimize(model, x, device="x86", fallback=False)
    with torch.no_grad():
        want = model(x)
        got = fast(x)
    assert want.shape == (batch, 2, 64, 64)
    scale = float(want.abs().max())
    assert float((want - want.mean()).abs().max()) > 0.01 * scale  # not a constant map
    if batch > 1:
        assert float((want - want[0]).abs().max()) > 0.01 * scale
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * scale)


def test_googlenet_aux_heads_only_in_training() -> None:
    model = zoo.googlenet(10)
    x = torch.rand(2, 3, 64, 64)
    assert isinstance(model.eval()(x), torch.Tensor)
    out = model.train()(x)
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 10)] * 3


def test_factories_build_the_published_sizes() -> None:
    """Parameter counts of the full-size models (1000 classes) as published by torchvision."""
    def count(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(zoo.resnet18()) == 11_689_512
    assert count(zoo.resnet50()) == 25_557_032
    assert count(zoo.vgg11_bn()) == 132_868_840
    assert count(zoo.mobilenet_v2()) == 3_504_872
    assert count(zoo.mobilenet_v3_small()) == 2_542_856
    assert count(zoo.densenet121()) == 7_978_856
    assert count(zoo.squeezenet1_0()) == 1_248_424
    assert count(zoo.googlenet()) == 13_004_888  # with the auxiliary heads
    assert count(zoo.efficientnet_b0()) == 5_288_548
    assert count(zoo.convnext_tiny()) == 28_589_128
    assert count(zoo.vit_b_16()) == 86_567_656
    assert count(zoo.bert_encoder()) == 109_482_240  # bert-base-uncased with its pooler
