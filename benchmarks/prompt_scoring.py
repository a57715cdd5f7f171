"""Prompt top-k / alternative tokens on the local engine: one prefill vs token-by-token.

``sample(..., topk_prompt_logprobs=k, prompt_alt_tokens_k=k)`` needs the full next-token
distribution at every prompt position. Measured side by side in one run on the same
engine and prompt: the engine's one-pass ``next_token_logprobs`` (what the sampling client
uses) and stepping the KV-cached decoder through the prompt one token at a time (the only
path before it). Usage: python benchmarks/prompt_scoring.py [--length N] [--repeats R]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tinkerkit.backends import prompt_scoring
from tinkerkit.backends.local.engine import LocalFactory


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    factory = LocalFactory()
    engine = factory.create(factory.resolve("tinkerkit/tiny"), None)
    prompt = list(np.random.default_rng(0).integers(3, 250, args.length))
    requests = prompt_scoring.PromptRequests(
        topk=5, alt_k=3, targets=None, last_n=None, temperature=1.0, seed=0
    )
    prefill = _best(
        lambda: prompt_scoring.score_prompt(
            engine.decoder, prompt, requests, engine.next_token_logprobs
        ),
        args.repeats,
    )
    stepped = _best(
        lambda: prompt_scoring.score_prompt(engine.decoder, prompt, requests), args.repeats
    )
    print(
        f"prompt scoring, {args.length} tokens on local tinkerkit/tiny: one prefill "
        f"{prefill * 1000:.0f} ms | token by token {stepped * 1000:.0f} ms | "
        f"speed-up {stepped / prefill:.0f}x"
    )


if __name__ == "__main__":
    main()
