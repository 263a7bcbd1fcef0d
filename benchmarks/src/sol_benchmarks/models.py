"""Which networks ``sol bench`` runs and how each is built.

The networks themselves live in the model zoo (:mod:`sol_benchmarks.zoo`, plain ``torch.nn``,
shipped in this package); :func:`load_zoo` is the one place that finds it, so that
``$SOL_BENCH_ZOO`` can put another zoo file in its place. Every model is built with a fixed seed
and non-trivial BatchNorm statistics, in eval mode, so that all engines of one run see the same
weights and inputs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ZOO_ENV = "SOL_BENCH_ZOO"
ZOO_MODULE = "sol_benchmarks.zoo"


def zoo_path() -> Path:
    """Where the zoo's source is, without importing it (it imports torch): ``$SOL_BENCH_ZOO`` if
    set (a path to a ``zoo.py``), else this package's own ``zoo.py``."""
    override = os.environ.get(ZOO_ENV)
    if override:
        return Path(override).resolve()
    spec = importlib.util.find_spec(ZOO_MODULE)  # imports this package only, not the zoo
    if spec is None or spec.origin is None:  # cannot happen in an intact install
        raise ImportError(f"sol bench cannot find its model zoo {ZOO_MODULE} (the sol-benchmarks install is broken)")
    return Path(spec.origin).resolve()


def load_zoo() -> ModuleType:
    """The model zoo module: the file ``$SOL_BENCH_ZOO`` names (imported as ``zoo``), else
    :mod:`sol_benchmarks.zoo`."""
    override = os.environ.get(ZOO_ENV)
    if not override:
        return importlib.import_module(ZOO_MODULE)
    loaded = sys.modules.get("zoo")
    path = Path(override).resolve()
    if loaded is not None and getattr(loaded, "__file__", None) and Path(str(loaded.__file__)).resolve() == path:
        return loaded
    if not path.is_file():
        raise ImportError(f"sol bench cannot find the model zoo: {ZOO_ENV}={override!r} is not a file")
    spec = importlib.util.spec_from_file_location("zoo", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo"] = module  # dataclasses and pickling resolve the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["zoo"]
        raise
    return module


def _zoo_factories() -> set[str]:
    """Top-level functions and classes of the zoo, read from its source (importing it would
    import torch into the CLI's process)."""
    path = zoo_path()
    tree = ast.parse(path.read_text(), str(path))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


@dataclass(frozen=True)
class BenchModel:
    """One benchmark network: ``build(zoo, size)`` makes it, ``input_shape(batch, size)`` its
    input's shape; ``size`` is the image size (or the feature count of a non-image model)."""

    name: str
    build: Callable[[ModuleType, int], Any]
    default_size: int
    quick_size: int
    input_shape: Callable[[int, int], tuple[int, ...]]
    note: str = ""
    vocab: int = 0
    """Token models: the input is token ids drawn from [0, vocab) (int64), else uniform floats."""


def _image(batch: int, size: int) -> tuple[int, ...]:
    return (batch, 3, size, size)


def _zoo(factory: str, **kwargs: Any) -> Callable[[ModuleType, int], Any]:
    return lambda zoo, size: getattr(zoo, factory)(**kwargs)


# The zoo at the published sizes (1000 classes, 224x224). The smallest image each network's
# strides allow is what the tests use (tests/zoo/test_zoo.py); --size picks another.
FULL = [
    BenchModel("resnet18", _zoo("resnet18"), 224, 64, _image),
    BenchModel("resnet50", _zoo("resnet50"), 224, 64, _image),
    BenchModel("vgg11_bn", _zoo("vgg11_bn"), 224, 32, _image),
    BenchModel("mobilenet_v2", _zoo("mobilenet_v2"), 224, 64, _image),
    BenchModel("mobilenet_v3_small", _zoo("mobilenet_v3_small"), 224, 64, _image),
    BenchModel("densenet121", _zoo("densenet121"), 224, 64, _image),
    BenchModel("squeezenet1_0", _zoo("squeezenet1_0"), 224, 64, _image),
    BenchModel("googlenet", _zoo("googlenet"), 224, 64, _image),
    BenchModel("efficientnet_b0", _zoo("efficientnet_b0"), 224, 64, _image),
    BenchModel("convnext_tiny", _zoo("convnext_tiny"), 224, 64, _image),
    BenchModel("vit_b_16", lambda zoo, size: zoo.vit_b_16(image_size=size), 224, 64, _image),
]

def _tokens(batch: int, size: int) -> tuple[int, ...]:
    return (batch, size)


# Hugging Face transformers families (built from configs, random weights; transformers must be
# installed): ``size`` is the sequence length for token models, the image size for ViT.
TRANSFORMERS = [
    BenchModel("hf_bert_base", _zoo("hf_bert_base"), 128, 16, _tokens, "BertModel, BERT-base size", 30522),
    BenchModel("hf_gpt2", _zoo("hf_gpt2"), 128, 16, _tokens, "GPT2LMHeadModel, GPT-2 small, no cache", 50257),
    BenchModel("hf_llama", _zoo("hf_llama"), 128, 16, _tokens, "LlamaForCausalLM, 12 x 768, GQA 12/4, no cache",
               32000),
    BenchModel("hf_vit_base", lambda zoo, size: zoo.hf_vit_base(image_size=size), 224, 32, _image,
               "ViTModel, ViT-B/16 size"),
]

# Small networks for quick runs and tests.
SMALL = [
    BenchModel("small_resnet", _zoo("small_resnet"), 32, 32, _image, "ResNet (1,1,1,1), width 8, 10 classes"),
    BenchModel("mlp", lambda zoo, size: zoo.mlp(d_in=size), 64, 64, lambda batch, size: (batch, size),
               "Linear-GELU-Linear-ReLU-Linear-LogSoftmax"),
    BenchModel("seednet", lambda zoo, size: zoo.SeedNet(), 13, 13, lambda batch, size: (batch, 512, size, size),
               "the seed's Conv2d(512, 1000, 1) + ReLU + AvgPool2d(13)"),
]

MODELS: dict[str, BenchModel] = {m.name: m for m in FULL + TRANSFORMERS + SMALL}
DEFAULT = [m.name for m in FULL]
QUICK_DEFAULT = ["small_resnet"]


def resolve(name: str) -> BenchModel:
    """A model by name; a zoo factory not listed here (e.g. one just added to the zoo) is taken
    as an image classifier at 224x224 (64x64 in quick runs)."""
    if name in MODELS:
        return MODELS[name]
    if not name.startswith("_") and name in _zoo_factories():
        return BenchModel(name, _zoo(name), 224, 64, _image, "zoo factory, image input assumed")
    raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODELS)} "
                     "(or any factory function of the model zoo, sol_benchmarks/zoo.py)")


def build(name: str, batch: int, size: int, train: bool = False) -> tuple[Any, Any]:
    """(model in eval mode, or train mode if ``train``; input tensor), the same in every process
    of a run: fixed seeds, BatchNorm statistics made non-trivial as in the zoo tests."""
    import torch

    spec = resolve(name)
    zoo = load_zoo()
    torch.manual_seed(0)
    model = spec.build(zoo, size)
    randomize = getattr(zoo, "randomize_batchnorm", None)
    if randomize is not None:
        randomize(model)
    model.train(train)
    generator = torch.Generator().manual_seed(batch)
    shape = spec.input_shape(batch, size)
    if spec.vocab:
        x = torch.randint(0, spec.vocab, shape, generator=generator)
    else:
        x = torch.rand(shape, generator=generator)
    return model, x
