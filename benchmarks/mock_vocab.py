"""The mock engine at real vocabulary sizes: byte vocabulary vs Qwen3 / Qwen3.5 sizes.

One training step (8 datums x 512 tokens, forward_backward + optim_step, LoRA rank 32)
at each vocabulary, the steps interleaved round by round so machine noise hits all of
them alike; medians and the ratio to the byte vocabulary. Also the base's creation time
and size, one 2,048-token prompt scored through ``next_token_logprobs`` (time and peak
allocation) and one decoder step for 4 samples.

Usage: python benchmarks/mock_vocab.py [--rounds N]
(on a shared machine, OPENBLAS_NUM_THREADS=1 keeps BLAS threads from spinning against
other processes; the figures in docs/performance.md give both)
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np
from tinker import types

from tinkerkit.backends.engine import EngineInput, LoraConfig
from tinkerkit.backends.mock import head, model
from tinkerkit.backends.mock.engine import MockEngine
from tinkerkit.models.registry import TINY, ModelSpec
from tinkerkit.models.tokenizer import VOCAB_SIZE as BYTE_VOCAB

VOCABS = {"byte": BYTE_VOCAB, "Qwen3 (151,936)": 151_936, "Qwen3.5 (248,320)": 248_320}


def _held_mib(weights: dict[str, np.ndarray]) -> float:
    buffers = {id(a.base if a.base is not None else a): a for a in weights.values()}
    return sum((a.base if a.base is not None else a).nbytes for a in buffers.values()) / 2**20


def _engine(vocab: int, rank: int) -> MockEngine:
    spec = ModelSpec(f"vocab-{vocab}", "tinkerkit-mock", vocab, 2048)
    return MockEngine(spec, LoraConfig(rank=rank, seed=0, alpha=32.0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args()
    adam = types.AdamParams(learning_rate=1e-4)
    steps = {}
    for label, vocab in VOCABS.items():
        model.base_weights.cache_clear()
        start = time.perf_counter()
        weights = model.base_weights(TINY, vocab)
        created_ms = (time.perf_counter() - start) * 1e3
        kind = "factorised" if vocab > head.FACTORISED_ABOVE else "dense"
        print(
            f"{label}: {kind} head, base created in {created_ms:.0f} ms, "
            f"{_held_mib(weights):.1f} MiB"
        )
        rng = np.random.default_rng(0)
        seqs = [rng.integers(0, vocab, 513) for _ in range(8)]
        batch = [EngineInput(s[:-1], s[1:]) for s in seqs]
        steps[label] = (_engine(vocab, args.rank), batch)

    upstream = [np.full(512, -1.0) for _ in range(8)]
    times: dict[str, list[float]] = {label: [] for label in steps}
    for round_ in range(args.rounds + 2):  # two warm-up rounds
        for label, (engine, batch) in steps.items():
            start = time.perf_counter()
            engine.forward(batch, grad=True).backward(upstream)
            engine.optim_step(adam)
            if round_ >= 2:
                times[label].append(time.perf_counter() - start)
    byte_ms = statistics.median(times["byte"]) * 1e3
    for label, samples in times.items():
        ms = statistics.median(samples) * 1e3
        print(f"step 8x512 tokens, {label}: median {ms:.1f} ms (ratio {ms / byte_ms:.2f}x)")

    engine = steps["Qwen3.5 (248,320)"][0]
    prompt = np.random.default_rng(1).integers(0, 248_320, 2048)
    tracemalloc.start()
    start = time.perf_counter()
    rows = sum(len(block) for block in engine.next_token_logprobs(prompt))
    scored_ms = (time.perf_counter() - start) * 1e3
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    decoder = engine.decoder(prompt[:100], 4)
    start = time.perf_counter()
    for token in prompt[100:110]:
        decoder.step(np.full(4, token))
    step_ms = (time.perf_counter() - start) / 10 * 1e3
    print(
        f"next_token_logprobs, {rows} rows at 248,320: {scored_ms:.0f} ms, "
        f"peak allocation {peak:.0f} MiB; decoder step (4 samples): {step_ms:.1f} ms"
    )


if __name__ == "__main__":
    main()
