"""sample() on the mock engine at real vocabulary sizes: the factorised head's direct draw
(a cluster, then a slot: O(sqrt V) a token) vs the full-distribution path (the (n, V)
logits, log-softmax and inverse CDF every token), side by side in one run.

Both paths run the same decoder on the same prompt (267 tokens, 8 sampled, one sample —
a guess_number turn of tinker-cookbook); the full path is what the sampler does when it
must see every logit (top-k/top-p filters, top-k logprobs), forced here by hiding the
decoder's ``draw``. CPU time per sample() call, medians over interleaved rounds.

Usage: python benchmarks/mock_sampling.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from tinker import types

from tinkerkit.backends import sampler
from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.mock.engine import MockEngine
from tinkerkit.models.registry import ModelSpec

VOCABS = {"Qwen3 (151,936)": 151_936, "Qwen3.5 (248,320)": 248_320}


class FullLogits:
    """A decoder seen through the ``Decoder`` protocol only (no ``draw``)."""

    def __init__(self, decoder: object) -> None:
        self._decoder = decoder

    @property
    def logits(self) -> np.ndarray:
        return self._decoder.logits  # type: ignore[attr-defined, no-any-return]

    def step(self, tokens: np.ndarray) -> None:
        self._decoder.step(tokens)  # type: ignore[attr-defined]


def _cpu_ms(engine: MockEngine, prompt: list[int], full: bool) -> float:
    def factory(p, n):  # type: ignore[no-untyped-def]
        decoder = engine.decoder(p, n)
        return FullLogits(decoder) if full else decoder

    params = types.SamplingParams(max_tokens=8, temperature=1.0, stop=[], seed=0)
    start = time.process_time()
    sampler.sample(
        factory, prompt, 1, params, max_context=32768, default_stop_tokens=[], decode=str
    )
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for name, vocab in VOCABS.items():
        spec = ModelSpec(f"vocab-{vocab}", "tinkerkit-mock", vocab, 32768)
        engine = MockEngine(spec, LoraConfig(rank=32, seed=0)).snapshot()
        prompt = [int(t) for t in np.random.default_rng(0).integers(0, vocab, 267)]
        _cpu_ms(engine, prompt, full=False), _cpu_ms(engine, prompt, full=True)  # warm
        direct, full = [], []
        for _ in range(args.rounds):
            direct.append(_cpu_ms(engine, prompt, full=False))
            full.append(_cpu_ms(engine, prompt, full=True))
        d, f = statistics.median(direct), statistics.median(full)
        print(
            f"{name}: direct draw {d:.2f} ms, full logits {f:.1f} ms per sample() "
            f"(CPU, 267+8 tokens): {f / d:.0f}x"
        )


if __name__ == "__main__":
    main()
