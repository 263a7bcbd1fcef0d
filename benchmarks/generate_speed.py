"""Token generation speed (issue 22, item 4): ``generate()`` of a GPT-2 and a Llama-architecture
decoder (random weights, built from configs: nothing is downloaded) through eager PyTorch, through
``torch.compile`` as transformers recommends it (a static cache, the decode step compiled by
inductor, ``CompileConfig(mode="default")`` on the CPU) and through ``sol.optimize``. Greedy
decoding of ``--new`` tokens after a ``--prompt``-token prompt at batch 1; tokens per second over the
whole call (prompt included), the median of ``--repeats`` calls after one warm-up call; the engine's
set-up (``sol.optimize``) and that first call (the compiles) are reported apart. Every engine's
tokens are checked against eager's.

    .venv/bin/python benchmarks/generate_speed.py [--models gpt2,llama] [--repeats 5] [--engines eager,compile,sol]

Say whether the machine was busy when quoting the numbers."""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import sol  # noqa: E402

MODELS: dict[str, Callable[[], torch.nn.Module]] = {
    # GPT-2 small's shape (124M parameters)
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(bos_token_id=0, eos_token_id=0)),
    # a Llama-architecture decoder of about the same size: grouped-query attention, rotary, SiLU-gated MLP
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=4, max_position_embeddings=1024, bos_token_id=0, eos_token_id=0)),
}


def engine(model: Any, ids: torch.Tensor, name: str) -> Callable[..., Any]:
    """The engine's ``generate``; its set-up (sol.optimize) counts towards the first call."""
    if name == "eager":
        return model.generate  # type: ignore[no-any-return]
    if name == "compile":
        config = transformers.CompileConfig(mode="default", fullgraph=True)
        config._compile_all_devices = True  # type: ignore[assignment]  # transformers: accelerators only unless told

        def compiled(*args: Any, **kwargs: Any) -> Any:
            return model.generate(*args, cache_implementation="static", compile_config=config, **kwargs)

        return compiled
    if name == "sol":
        return sol.optimize(model, ids, device="x86").generate  # type: ignore[no-any-return]
    raise SystemExit(f"unknown engine {name!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,llama")
    parser.add_argument("--engines", default="eager,compile,sol")
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    transformers.logging.set_verbosity_error()
    rows = []
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        model: Any = MODELS[model_name]().eval()
        ids = torch.randint(2, model.config.vocab_size, (1, args.prompt))
        settings = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False)
        print(f"{model_name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, "
              f"prompt {args.prompt}, {args.new} new tokens, batch 1")
        want = None
        for name in args.engines.split(","):
            with torch.no_grad():
                start = time.perf_counter()
                run = engine(model, ids, name)
                tokens = run(ids, **settings)
                first = time.perf_counter() - start
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    run(ids, **settings)
                    times.append(time.perf_counter() - start)
            if want is None:
                want = tokens
            same = torch.equal(tokens, want)
            rate = args.new / statistics.median(times)
            rows.append((model_name, name, rate, first, same))
            print(f"  {name:8} {rate:7.1f} tokens/s  set-up and first call {first:6.1f} s  tokens as eager: {same}")
    print("\n| model | engine | tokens/s | vs eager | set-up and first call (s) | tokens as eager |")
    print("|---|---|--:|--:|--:|---|")
    base = {m: r for m, e, r, _, _ in rows if e == "eager"}
    for m, e, r, f, same in rows:
        ratio = f"{r / base[m]:.2f}x" if m in base else "-"
        print(f"| {m} | {e} | {r:.1f} | {ratio} | {f:.1f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
