"""Hugging Face transformers model families compile whole (issue #22): BERT, RoBERTa, DistilBERT,
ViT, GPT-2 (with and without its KV cache as an output), a Llama-architecture decoder (RMSNorm,
rotary embeddings, SiLU-gated MLP, grouped-query attention), the T5 encoder, CLIP and Whisper's
encoder, each built from a small config with random weights (nothing is downloaded), optimized
with ``fallback=False`` on x86 and compared with eager at rtol 1e-3 (every tensor of the output,
the cache's included). Padding masks hide positions in batch rows after the first, so the masks
transformers builds at run time (boolean, from the attention-mask input) matter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils import _pytree as pytree

import sol
from sol.errors import UnsupportedOpError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the models are built from configs
transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (scripts/env.sh)")

DEVICE = "x86"
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(autouse=True)
def _x86() -> None:
    import sol.plugins

    if DEVICE not in sol.plugins.roles().devices:
        pytest.skip("the x86 device is not installed")


def ids(batch: int, length: int = 8) -> torch.Tensor:
    return torch.randint(2, 100, (batch, length))


def padding_mask(batch: int, length: int = 8) -> torch.Tensor:
    """Rows after the first end in padding (a different amount each)."""
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, length - 1 - row % (length - 2):] = 0
    return mask


def tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor of a model's output, a cache's keys and values included."""
    found: list[torch.Tensor] = []
    for leaf in pytree.tree_leaves(out):
        if isinstance(leaf, torch.Tensor):
            found.append(leaf)
        elif hasattr(leaf, "layers"):  # transformers' DynamicCache
            found += [t for layer in leaf.layers for t in (layer.keys, layer.values)]
    return found


def check(model: torch.nn.Module, make: Callable[[int], tuple[Any, ...]], batches: tuple[int, ...] = (1, 4)) -> Any:
    """Optimize at the first batch size (whole: fallback=False), compare every output tensor
    with eager at each batch size (a new batch size compiles a variant); returns the last output."""
    torch.manual_seed(0)
    model.eval()
    fast = sol.optimize(model, *make(batches[0]), device=DEVICE, fallback=False)
    for batch in batches:
        args = make(batch)
        with torch.no_grad():
            want, got = model(*args), fast(*args)
        assert type(got) is type(want)
        w, g = tensors(want), tensors(got)
        assert len(g) == len(w) > 0
        for a, b in zip(g, w):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    return got


ENCODERS: dict[str, Callable[[], tuple[torch.nn.Module, Callable[[int], tuple[Any, ...]]]]] = {
    # token-type ids from a buffer (torch.gather), padding mask -> boolean SDPA mask at run time
    "bert": lambda: (transformers.BertModel(transformers.BertConfig(vocab_size=100, max_position_embeddings=32,
                                                                    **SMALL)),
                     lambda b: (ids(b), padding_mask(b))),
    # position ids from the input ids (cumsum)
    "roberta": lambda: (transformers.RobertaModel(transformers.RobertaConfig(
        vocab_size=100, max_position_embeddings=32, pad_token_id=1, **SMALL)), lambda b: (ids(b), padding_mask(b))),
    "distilbert": lambda: (transformers.DistilBertModel(transformers.DistilBertConfig(
        vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=32)),
        lambda b: (ids(b), padding_mask(b))),
    "vit": lambda: (transformers.ViTModel(transformers.ViTConfig(image_size=32, patch_size=8, **SMALL)),
                    lambda b: (torch.randn(b, 3, 32, 32),)),
}


@pytest.mark.parametrize("family", list(ENCODERS))
def test_encoder_compiles_whole_and_matches_eager(family: str) -> None:
    model, make = ENCODERS[family]()
    check(model, make)


@pytest.mark.parametrize("use_cache", [False, True])
def test_gpt2_compiles_whole_with_and_without_its_cache(use_cache: bool) -> None:
    """With use_cache the output holds a DynamicCache (which torch.export cannot return): sol
    returns one of the same class with the keys and values it computed."""
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                     use_cache=use_cache)
    model = transformers.GPT2LMHeadModel(config)
    out = check(model, lambda b: (ids(b), None, padding_mask(b)))
    cache = getattr(out, "past_key_values", None)
    if use_cache:
        assert type(cache).__name__ == "DynamicCache" and len(cache.layers) == 2
        assert cache.layers[0].keys.shape == (4, 2, 8, 16)
    else:
        assert cache is None


def test_llama_architecture_decoder_compiles_whole() -> None:
    """RMSNorm, rotary embeddings, SiLU-gated MLP, grouped-query attention (4 query heads, 2
    key/value heads), a causal mask combined with the padding mask."""
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=32,
                                      use_cache=False)
    check(transformers.LlamaForCausalLM(config), lambda b: (ids(b), padding_mask(b)))


def test_t5_encoder_compiles_whole() -> None:
    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2)
    check(transformers.T5EncoderModel(config), lambda b: (ids(b), padding_mask(b)))


def test_t5_encoder_decoder_compiles_whole() -> None:
    """T5ForConditionalGeneration: encoder, decoder with causal self-attention and cross-attention
    over the padded encoder output, relative position buckets, the LM head (logits and the
    encoder's last hidden state compared)."""
    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                                   decoder_start_token_id=0, use_cache=False)
    check(transformers.T5ForConditionalGeneration(config), lambda b: (ids(b), padding_mask(b), ids(b, 5)))


def test_clip_compiles_whole() -> None:
    """Text and vision towers; the text tower pools at each row's end-of-text position (an index
    computed at run time)."""
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=100, max_position_embeddings=16, **SMALL),
        vision_config=dict(image_size=32, patch_size=8, **SMALL), projection_dim=16)
    check(transformers.CLIPModel(config), lambda b: (ids(b), torch.randn(b, 3, 32, 32), padding_mask(b)))


def test_whisper_encoder_compiles_whole() -> None:
    config = transformers.WhisperConfig(vocab_size=100, num_mel_bins=8, d_model=32, encoder_layers=2, decoder_layers=1,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                        decoder_ffn_dim=64, max_source_positions=16, max_target_positions=16,
                                        pad_token_id=1, bos_token_id=2, eos_token_id=3, decoder_start_token_id=2)
    encoder = transformers.WhisperModel(config).get_encoder()
    check(encoder, lambda b: (torch.randn(b, 8, 32),))


# --- training (issue #22 item 5) --------------------------------------------------------------


def _train_step(model: torch.nn.Module, args: tuple[Any, ...], seed: int) -> list[torch.Tensor]:
    """Forward with the RNG seeded (dropout masks), backward of a fixed random projection of every
    floating-point output (not a sum: LayerNorm makes the gradient of a sum zero)."""
    torch.manual_seed(seed)
    outs = [t for t in tensors(model(*args)) if t.dtype.is_floating_point]
    probe = torch.Generator().manual_seed(1234)
    sum((t * torch.randn(t.shape, generator=probe)).sum() for t in outs).backward()  # type: ignore[union-attr]
    return [t.detach() for t in outs]


def _assert_grads_close(fast: torch.nn.Module, eager: torch.nn.Module) -> None:
    """Each parameter's gradient against eager's at rtol 1e-3, relative to its own largest
    magnitude or 1e-3 of the model's largest gradient where that is larger: the key projection's
    bias has a zero gradient in exact arithmetic (softmax ignores a per-row shift), so both sides
    hold rounding noise there, which never matches relative to itself."""
    floor = 1e-3 * max(float(q.grad.abs().max()) for q in eager.parameters() if q.grad is not None)
    for (name, p), (_, q) in zip(fast.named_parameters(), eager.named_parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            scale = max(float(q.grad.abs().max()), floor)
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-3 * scale, msg=lambda m, n=name: f"{n}: {m}")


TRAINING: dict[str, Callable[[], tuple[torch.nn.Module, tuple[Any, ...]]]] = {
    # padding tokens (id 0, the word embedding's padding_idx: its row gets no gradient) under a
    # padding mask; dropout in the embeddings, the attention weights and after each layer
    "bert": lambda: (transformers.BertModel(transformers.BertConfig(
        vocab_size=100, max_position_embeddings=32, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
        **SMALL)), (torch.tensor([[5, 9, 13, 2, 7, 11], [3, 8, 4, 0, 0, 0]]), padding_mask(2, 6))),
    # the input's gradient too (pixel values that require grad)
    "vit": lambda: (transformers.ViTModel(transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, **SMALL)),
        (torch.randn(2, 3, 32, 32, requires_grad=True),)),
}


@pytest.mark.parametrize("family", list(TRAINING))
def test_encoder_training_gives_eagers_gradients(family: str) -> None:
    """``optimize(model.train())`` compiles forward and backward whole (fallback=False); two steps
    with the same seeds as eager give eager's outputs and dropout masks (drawn by PyTorch's own RNG
    calls, the attention weights' included), parameter gradients and input gradients, rtol 1e-3."""
    import copy

    torch.manual_seed(0)
    model, args = TRAINING[family]()
    model.train()
    eager = copy.deepcopy(model)
    fast = sol.optimize(model, *args, device=DEVICE, fallback=False)
    mine = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in args)
    theirs = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in args)
    for step in range(2):
        for got, want in zip(_train_step(fast, mine, step), _train_step(eager, theirs, step), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
        _assert_grads_close(model, eager)
        for x, y in zip(mine, theirs):
            if y.requires_grad:
                torch.testing.assert_close(x.grad, y.grad, rtol=1e-3, atol=1e-3 * float(y.grad.abs().max()))
                x.grad = y.grad = None
        model.zero_grad()
        eager.zero_grad()
    if family == "bert":  # the padding row of the word embeddings
        assert model.embeddings.word_embeddings.padding_idx == 0
        _train_step(fast, mine, 0)
        assert not model.embeddings.word_embeddings.weight.grad[0].any()


def test_attention_dropout_at_inference_is_refused_not_ignored() -> None:
    """``scaled_dot_product_attention`` has no training flag: dropout_p > 0 drops weights even in
    eval mode, which sol draws only for a model compiled for training; ignoring it would be wrong."""

    class Attend(torch.nn.Module):
        def forward(self, q: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.5)

    with pytest.raises(UnsupportedOpError, match="random numbers"):
        sol.optimize(Attend().eval(), torch.randn(1, 2, 4, 8), device=DEVICE, fallback=False)
