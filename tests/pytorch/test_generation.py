"""``generate()`` on an optimized Hugging Face decoder or encoder-decoder (issue #22 item 4), and
the in-place updates it rests on.

The decode step must compile once per static-cache bucket, not once per token: these tests count
the compiled variants of the step. The tokens must be eager's (greedy decoding with left padding
in a batch, sampling under the same seed, beam search), for GPT-2, a Llama-architecture decoder
(rotary embeddings, grouped-query attention), T5 and Whisper. Models are small random-weight
configs.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch

import sol
from sol.errors import UnsupportedOpError
from sol_pytorch.fallback import SolFallbackWarning

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the models are built from configs
transformers = pytest.importorskip("transformers", reason="transformers is a test dependency (scripts/env.sh)")

DEVICE = "x86"


@pytest.fixture(autouse=True)
def _x86() -> None:
    import sol.plugins

    if DEVICE not in sol.plugins.roles().devices:
        pytest.skip("the x86 device is not installed")


# --- in-place updates of the forward's inputs -------------------------------------------------------


class Counter(torch.nn.Module):
    def forward(self, x: torch.Tensor, count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        count.add_(1)
        x.mul_(2)
        return x + count, x


def test_input_updates_are_written_back_as_eager_writes_them() -> None:
    """A forward that updates its inputs in place (a counter, a scaled tensor) compiles whole; after
    each call the caller's tensors hold eager's new values, and a returned updated input is that
    very tensor (eager's alias), call after call."""
    x, count = torch.randn(3, 4), torch.zeros((), dtype=torch.int64)
    fast = sol.optimize(Counter().eval(), x.clone(), count.clone(), device=DEVICE, fallback=False)
    x1, c1, x2, c2 = x.clone(), count.clone(), x.clone(), count.clone()
    for _ in range(3):
        want, got = Counter()(x1, c1), fast(x2, c2)
        torch.testing.assert_close(got[0], want[0])
        assert got[1] is x2
        torch.testing.assert_close(x2, x1)
        assert int(c2) == int(c1)
    assert int(c2) == 3


class Steps(torch.nn.Module):
    """A buffer the forward updates in place (a step counter), beside a weight."""

    def __init__(self, fft: bool = False) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros(()))
        self.lin = torch.nn.Linear(4, 4)
        self.fft = fft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.steps.add_(1)
        y = torch.fft.fft(x).real if self.fft else x  # torch.fft: an op PyTorch runs
        return self.lin(y) * self.steps


def twins(fft: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    model = Steps(fft).eval()
    twin = Steps(fft).eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


def test_buffer_updates_compile_whole_and_are_not_mistaken_for_weight_changes() -> None:
    """The forward's own buffer update is compiled and written into the model's buffer at each call
    (eager's values, call after call) without compiling again; a weight the user changes still
    makes the next call use the new weight."""
    model, twin = twins()
    x = torch.randn(2, 4)
    fast = sol.optimize(model, x, device=DEVICE, fallback=False)
    assert int(model.steps) == 0  # optimize itself runs nothing on the model
    variant = fast.variants[0]
    for _ in range(3):
        with torch.no_grad():
            torch.testing.assert_close(fast(x), twin(x))
    assert int(model.steps) == int(twin.steps) == 3
    assert fast.variants[0] is variant
    with torch.no_grad():
        model.lin.weight.mul_(2)
        twin.lin.weight.mul_(2)
        torch.testing.assert_close(fast(x), twin(x))


def test_in_place_updates_beside_ops_pytorch_runs_go_through_dynamo() -> None:
    """Buffer updates in a forward PyTorch must run parts of (torch.fft): the Dynamo path, with a
    warning saying why; optimize leaves the buffer and the example input as they were, and the
    calls give eager's values."""
    model, twin = twins(fft=True)
    x = torch.randn(2, 4)
    given = x.clone()
    with pytest.warns(SolFallbackWarning, match="updates tensors in place"):
        fast = sol.optimize(model, x, device=DEVICE)
    assert int(model.steps) == 0 and torch.equal(x, given)
    for _ in range(3):
        with torch.no_grad():
            torch.testing.assert_close(fast(x), twin(x))
    assert int(model.steps) == 3


# --- generate() ---------------------------------------------------------------------------------


def gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=160,
                                     bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def llama() -> torch.nn.Module:
    config = transformers.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=160,
                                      bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(config).eval()


def prompt(batch: int = 2, length: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and an attention mask whose later rows start with padding (left padding)."""
    torch.manual_seed(1)
    ids = torch.randint(2, 100, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(1, batch):
        mask[row, :row + 1] = 0
    return ids, mask


def decode_variants(fast: torch.nn.Module) -> int:
    return sum(len(step.variants) for step in fast._cache_steps.values())


@pytest.mark.parametrize("family", [gpt2, llama], ids=["gpt2", "llama"])
def test_generate_matches_eager_and_compiles_the_decode_step_once(family) -> None:  # type: ignore[no-untyped-def]
    """Greedy tokens equal eager's (which grows a DynamicCache); two calls with other output lengths
    in the same bucket (up to 64 positions) reuse the one compiled decode step, and a longer call
    compiles one more (the 128 bucket), not one per token."""
    model = family()
    ids, mask = prompt()
    fast = sol.optimize(model, ids, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # the compiled path: nothing falls back
        for new in (5, 20):
            got = fast.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
            want = model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
            assert torch.equal(got, want)
        assert decode_variants(fast) == 1
        got = fast.generate(ids, attention_mask=mask, max_new_tokens=70, do_sample=False)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=70, do_sample=False)
    assert torch.equal(got, want)
    assert decode_variants(fast) == 2


def t5() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    config = transformers.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    ids, mask = prompt()
    model = transformers.T5ForConditionalGeneration(config).eval()
    return model, (ids, None, torch.zeros(2, 1, dtype=torch.long)), {"input_ids": ids, "attention_mask": mask}


def whisper() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    config = transformers.WhisperConfig(
        vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=20,
        max_target_positions=64, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1,
        suppress_tokens=[], begin_suppress_tokens=[])
    torch.manual_seed(2)
    features = torch.randn(1, 16, 40)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    return model, (features, None, torch.ones(1, 1, dtype=torch.long)), {"input_features": features}


@pytest.mark.parametrize("family", [t5, whisper], ids=["t5", "whisper"])
def test_encoder_decoder_generate_compiles_the_decoder_step_once(family) -> None:  # type: ignore[no-untyped-def]
    """T5 and Whisper: the encoder and the first decoder step run in PyTorch, every later decoder
    step (self-attention and cross-attention caches both static) in the one compiled step."""
    model, examples, inputs = family()
    fast = sol.optimize(model, *examples, device=DEVICE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        for new in (4, 9):
            got = fast.generate(**inputs, max_new_tokens=new, do_sample=False)
            want = model.generate(**inputs, max_new_tokens=new, do_sample=False)
            assert torch.equal(got, want)
    assert decode_variants(fast) == 1


def test_generate_samples_and_searches_beams_as_eager() -> None:
    """Sampling (top-k) draws from transformers' loop, so the same seed gives eager's tokens; beam
    search gives eager's beams."""
    model = gpt2()
    ids, mask = prompt(batch=1)
    fast = sol.optimize(model, ids, device=DEVICE)
    torch.manual_seed(5)
    got = fast.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, top_k=20)
    torch.manual_seed(5)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=True, top_k=20)
    assert torch.equal(got, want)
    # beam search reorders the cache's rows between steps (a new batch: one more compiled step)
    got = fast.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3, do_sample=False)
    want = model.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=3, do_sample=False)
    assert torch.equal(got, want)


def test_a_dynamic_cache_the_user_passes_runs_in_pytorch_with_a_warning() -> None:
    """A DynamicCache grows every token: sol runs those steps in PyTorch (the tokens are eager's)
    and says why once, naming the way to the compiled path."""
    model = gpt2()
    ids, mask = prompt()
    fast = sol.optimize(model, ids, device=DEVICE)
    cache = transformers.DynamicCache(config=model.config)
    with pytest.warns(SolFallbackWarning, match="DynamicCache grows by one position per token") as caught:
        got = fast.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, cache=cache)
    assert sum("DynamicCache" in str(w.message) for w in caught) == 1
    want = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(got, want)
    assert not getattr(fast, "_cache_steps", {})


def test_generate_leaves_the_model_as_it_was() -> None:
    """The model's own generate still runs eager (its forward is not replaced), and a model
    without generate has none on its optimized module either."""
    model = gpt2()
    ids, _ = prompt(batch=1)
    fast = sol.optimize(model, ids, device=DEVICE)
    fast.generate(ids, max_new_tokens=3, do_sample=False)
    assert "forward" not in vars(model)
    plain = sol.optimize(torch.nn.Linear(4, 4).eval(), torch.randn(2, 4), device=DEVICE)
    with pytest.raises(AttributeError, match="generate"):
        plain.generate  # noqa: B018 - the attribute access is what is tested


def test_a_forward_call_with_a_cache_object_runs_in_pytorch_not_a_type_error() -> None:
    """A hand-written decode loop passes the cache object back into forward: eager takes it, so sol
    runs that call in PyTorch with a warning naming the input (fallback=False: an error naming it)."""
    model = gpt2()
    ids, _ = prompt(batch=1)
    fast = sol.optimize(model, ids, device=DEVICE)
    with torch.no_grad():
        first = fast(ids, use_cache=True)
        with pytest.warns(SolFallbackWarning, match=r"input 1 \(cache\): a DynamicCache"):
            got = fast(ids[:, -1:], cache=first.cache)
        eager_first = model(ids, use_cache=True)
        want = model(ids[:, -1:], cache=eager_first.cache)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-3, atol=1e-4)
    strict = sol.optimize(model, ids, device=DEVICE, fallback=False)
    with pytest.raises(UnsupportedOpError, match=r"input 1 \(cache\): a DynamicCache"):
        strict(ids[:, -1:], cache=eager_first.cache)
