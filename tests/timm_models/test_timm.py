"""timm model families compile whole (issue #22 item 2): ResNet, EfficientNet, ConvNeXt, ViT,
Swin, RegNet, MobileNetV3, MLP-Mixer and LeViT, built from timm's configs with random weights
(nothing is downloaded), optimized with ``fallback=False`` on x86 at batch 1 and compared with
eager at batch 1 and 4 (a second compiled variant), rtol 1e-3.

timm imports torchvision, which does not load beside the main environment's torch 2.13 CPU
build: these tests run in ``.venv-timm`` (torch 2.14.1 + torchvision 0.29.1, made by
``scripts/env_timm.sh``; ``scripts/test.sh`` runs them there) and skip, saying why, elsewhere.
The smallest member of each family keeps the suite fast: the families' code (attention windows,
squeeze-excitation, depthwise stages, token mixing, LeViT's attention biases) is the same at
every width. The folder is not called ``timm`` because ``tests/`` is on ``sys.path``, where a
``timm`` folder would shadow the package.
"""

from __future__ import annotations

import pytest

timm = pytest.importorskip("timm", reason="timm lives in its own environment (scripts/env_timm.sh): PyPI's "
                                          "torchvision does not load beside the main environment's torch 2.13")
import torch  # noqa: E402

import sol  # noqa: E402

pytestmark = pytest.mark.slow

FAMILIES = {  # model name: image size (the smallest each family's code takes as configured)
    "resnet18": 64,
    "efficientnet_b0": 64,
    "convnext_atto": 64,
    "vit_tiny_patch16_224": 224,
    "swin_tiny_patch4_window7_224": 224,
    "regnetx_002": 64,
    "mobilenetv3_small_050": 64,
    "mixer_s16_224": 224,
    "levit_128s": 224,
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_compiles_whole_and_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    size = FAMILIES[name]
    fast = sol.optimize(model, torch.randn(1, 3, size, size), device="x86", fallback=False)
    for batch in (1, 4):
        x = torch.randn(batch, 3, size, size)
        with torch.no_grad():
            want = model(x)
            got = fast(x)
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * max(1.0, float(want.abs().max())))
    assert len(fast.variants) == 2
