"""``generate()`` of an optimized Hugging Face model: the decode step compiled once, not per token.

Why a static cache. Eager generation grows a ``DynamicCache`` by one position per token, so every
decode step has new shapes, and sol's code is shape-specialized: that would be one compile per
token. transformers' ``StaticCache`` (built for exactly this, for ``torch.compile``) preallocates
keys and values for ``max_cache_len`` positions, writes each step's keys at the run-time position
(``index_copy_``) and masks the unused positions, so every decode step has the same shapes. When
the user names no cache, :func:`generate` asks transformers for a static cache whose length is the
call's ``max_length`` rounded up to a power of two (a *bucket*, at least 64): calls with other
prompt or output lengths in the same bucket reuse the compiled step. Masked positions add exact
zeros to the attention, so the tokens are eager's.

How the step runs. The model's own ``generate`` runs (sampling, stopping criteria, streamers: all
transformers' code) on a stand-in of the model whose ``forward`` is :class:`GenerationForward`. A
decode step (one new token per row, an initialized static cache) goes to a :class:`CacheStep`,
the model's forward over the cache's tensors as inputs, which sol compiles like any model; its
in-place cache updates are the program's input updates (``OutputLayout.updates``), copied into the
cache's own tensors after each step. The prompt (several tokens per row, the cache not yet
allocated) runs in PyTorch: its length changes from call to call, and a compile per prompt length
would cost more than it saves. Encoder-decoder models (T5, Whisper) have two static caches
(self-attention and cross-attention); the encoder and the first decoder step, which fills the
cross-attention cache, run in PyTorch, every later decoder step compiled. Anything else (a
``DynamicCache`` the user passes, attention weights or hidden states asked for) runs in PyTorch
with one warning saying why.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from sol_pytorch.errors import torch_errors

if TYPE_CHECKING:
    from sol_pytorch.wrapper import SolModule

SMALLEST_BUCKET = 64
STATE = ("keys", "values", "cumulative_length")
"""A static cache layer's tensors, in the order :class:`CacheStep` takes them."""

COMPILED_ARGUMENTS = {"input_ids", "attention_mask", "position_ids", "cache", "past_key_values", "use_cache",
                      "return_dict", "output_attentions", "output_hidden_states", "logits_to_keep", "kwargs",
                      "decoder_input_ids", "decoder_attention_mask", "decoder_position_ids", "encoder_outputs"}
"""Forward arguments a compiled decode step handles; any other one given (not None) runs in PyTorch."""


def bucket(length: int) -> int:
    """The static cache length for ``length`` positions: a power of two, at least 64."""
    size = SMALLEST_BUCKET
    while size < length:
        size *= 2
    return size


def generate(module: SolModule, *args: Any, **kwargs: Any) -> Any:
    """``model.generate(*args, **kwargs)`` with the decode steps run by sol (see the module doc)."""
    model = module.model
    wants_cache = kwargs.get("use_cache", getattr(getattr(model, "generation_config", None), "use_cache", True))
    chosen = any(kwargs.get(k) is not None for k in ("cache", "past_key_values", "cache_implementation"))
    if not chosen and wants_cache is not False and getattr(type(model), "_can_compile_fullgraph", False):
        kwargs["cache_implementation"] = "static"
        if kwargs.get("max_cache_len") is None:
            kwargs["max_cache_len"] = bucket(_max_length(model, args, kwargs))
    kwargs.setdefault("disable_compile", True)  # sol is the compiler: transformers must not torch.compile the stand-in
    return type(model).generate(_stand_in(module), *args, **kwargs)


def _max_length(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The positions this call may fill: prompt plus new tokens (transformers' own rule: an
    explicit ``max_new_tokens`` wins over ``max_length``)."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    prompt = int(ids.shape[-1]) if isinstance(ids, torch.Tensor) else 0
    config = getattr(model, "generation_config", None)
    new = kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None) if "max_length" not in kwargs else None)
    if new is not None:
        return prompt + int(new)
    return max(int(kwargs.get("max_length", getattr(config, "max_length", 20) or 20)), prompt + 1)


def _stand_in(module: SolModule) -> torch.nn.Module:
    """An object of the model's class over the model's attributes (its submodules, parameters
    and config are the model's own), whose ``forward`` is :class:`GenerationForward`: the model
    itself is never changed, and attributes ``generate`` sets stay on the stand-in."""
    model = module.model
    shell: Any = object.__new__(type(model))
    object.__setattr__(shell, "__dict__", dict(model.__dict__))
    shell.__dict__["forward"] = GenerationForward(module)
    return shell  # type: ignore[no-any-return]


class GenerationForward:
    """The stand-in's ``forward``: a decode step on a static cache through sol, else PyTorch."""

    def __init__(self, module: SolModule) -> None:
        self.module = module
        self.eager = module.model.forward
        self.__signature__ = inspect.signature(self.eager)  # transformers inspects forward's parameters

    @torch_errors  # as SolModule.forward: PyTorch's LinAlgError for a failed factorization check
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.__signature__.bind(*args, **kwargs)
        given = {k: v for k, v in bound.arguments.items() if v is not None}
        extra = given.pop("kwargs", {})
        given.update({k: v for k, v in extra.items() if v is not None})
        why = _why_eager(given)
        if why == PROMPT:
            return self.eager(*args, **kwargs)  # by design (see the module doc): no warning
        if why:
            self.module._warn_once(f"generate: {why}, so this step runs in PyTorch")
            return self.eager(*args, **kwargs)
        cache: Any = given.get("cache", given.get("past_key_values"))
        tensors = step_tensors(given)
        names = tuple(tensors)
        inputs = (*tensors.values(), *state(cache))
        out = self.module._cache_step(cache, names, inputs)(*inputs)
        out["cache" if "cache" in self.__signature__.parameters else "past_key_values"] = cache
        return out


def step_tensors(given: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor arguments of a decode step, by name (sorted): ids, masks, positions, and the
    encoder's output of an encoder-decoder model (its first tensor: the model takes a tuple)."""
    out = {}
    for name in sorted(given):
        value = given[name]
        if name == "encoder_outputs":
            value = value[0]
        if isinstance(value, torch.Tensor):
            out[name] = value
    return out


PROMPT = "the prompt fills the cache"


def _why_eager(given: dict[str, Any]) -> str:
    """Why a forward call of ``generate`` cannot take the compiled decode step ('' if it can)."""
    cache = given.get("cache", given.get("past_key_values"))
    if cache is None:
        return "no KV cache is used"
    if not static_layers(cache):
        return (f"a {_cache_name(cache)} grows by one position per token (sol would compile every step); "
                f"pass cache_implementation='static' or leave the cache to sol")
    if not all(layer.is_initialized for part in parts(cache) for layer in part.layers) or not all(
            getattr(cache, "is_updated", {0: True}).values()):
        return PROMPT
    ids = given.get("decoder_input_ids", given.get("input_ids"))
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] != 1:
        return PROMPT
    if given.get("use_cache") is False or given.get("return_dict") is False:
        return "use_cache=False or return_dict=False"
    asked = [k for k in ("output_attentions", "output_hidden_states") if given.get(k)]
    if asked:
        return f"{' and '.join(asked)} asked for"
    if given.get("logits_to_keep") not in (None, 0, 1):
        return "logits_to_keep other than 0 or 1"
    other = sorted(k for k in given if k not in COMPILED_ARGUMENTS)
    if other:
        return f"forward arguments {', '.join(other)} given"
    encoded = given.get("encoder_outputs")
    if encoded is not None and not isinstance(encoded[0], torch.Tensor):
        return "encoder outputs without a tensor first"
    return ""


def _cache_name(cache: Any) -> str:
    inner = [type(p).__name__ for p in parts(cache)]
    return f"{type(cache).__name__}({', '.join(inner)})" if inner != [type(cache).__name__] else type(cache).__name__


def parts(cache: Any) -> list[Any]:
    """The caches of layers inside ``cache``: itself, or an encoder-decoder cache's self-attention
    and cross-attention caches."""
    if hasattr(cache, "self_attention_cache") and hasattr(cache, "cross_attention_cache"):
        return [cache.self_attention_cache, cache.cross_attention_cache]
    return [cache]


def state(cache: Any) -> list[torch.Tensor]:
    """Every static layer's tensors, in the order :class:`CacheStep` takes them."""
    return [getattr(layer, name) for part in parts(cache) for layer in part.layers for name in STATE]


def static_layers(cache: Any) -> bool:
    """Whether every layer of ``cache`` (of both caches of an encoder-decoder cache) is
    transformers' plain static layer (keys, values and a position counter, updated in place),
    the layout :class:`CacheStep` rebuilds."""
    for part in parts(cache):
        layers = getattr(part, "layers", None)
        if not layers or not getattr(part, "is_compileable", False):
            return False
        if not all(type(layer).__name__ == "StaticLayer" and all(hasattr(layer, n) for n in STATE) for layer in layers):
            return False
    return True


def cache_structure(cache: Any) -> tuple[Any, ...]:
    """What a :class:`CacheStep` is built for: the cache's classes and, per layer, its class and
    non-tensor attributes (lengths, head counts); the tensors themselves are the step's inputs."""
    return (type(cache), tuple((type(part), tuple((type(layer), tuple(sorted(
        (k, v) for k, v in vars(layer).items() if isinstance(v, (int, float, bool, str)))))
        for layer in part.layers)) for part in parts(cache)))


def template(cache: Any) -> Any:
    """A copy of ``cache`` without its tensors (the step rebuilds it around its inputs)."""
    return _rebuild(cache, [None] * len(state(cache)))


def _rebuild(cache: Any, tensors: Sequence[Any]) -> Any:
    """A shallow copy of ``cache`` whose static layers hold ``tensors`` (in :func:`state` order)."""
    it = iter(tensors)
    copies = []
    for part in parts(cache):
        shell = copy.copy(part)
        shell.layers = []
        for layer in part.layers:
            view = copy.copy(layer)
            for name in STATE:
                setattr(view, name, next(it))
            shell.layers.append(view)
        copies.append(shell)
    if len(copies) == 1:
        return copies[0]
    whole = copy.copy(cache)
    whole.self_attention_cache, whole.cross_attention_cache = copies
    whole.is_updated = dict(cache.is_updated)
    return whole


class CacheStep(torch.nn.Module):
    """The model's forward over a static cache given as tensors: what sol compiles for a decode
    step. ``names`` are the forward's tensor arguments, in the order the step takes them, before
    the cache's tensors; the cache's in-place updates are updates of this module's inputs."""

    def __init__(self, model: torch.nn.Module, cache: Any, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.template = template(cache)
        self.names = names
        self.cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, *tensors: torch.Tensor) -> Any:
        count = len(self.names)
        given: dict[str, Any] = dict(zip(self.names, tensors[:count]))
        if "encoder_outputs" in given:
            given["encoder_outputs"] = (given["encoder_outputs"],)
        cache = _rebuild(self.template, tensors[count:])
        out = self.model(**given, use_cache=True, return_dict=True, **{self.cache_argument: cache})
        # The cache object is the caller's (its tensors were updated in place): the rest is returned.
        return type(out)(**{k: v for k, v in out.items() if k not in ("cache", "past_key_values")})
