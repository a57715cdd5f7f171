"""Time one mock training step (8 datums x 64 tokens, forward_backward + optim_step).

Measured two ways in one run: the engine alone, and through the Tinker-shaped client
(validation, loss, futures, ordering). Usage: python benchmarks/mock_step.py [--steps N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from tinker import types

import tinkerkit as tk
from tinkerkit.backends.engine import EngineInput, LoraConfig
from tinkerkit.backends.mock.engine import MockFactory


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rank", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("TINKERKIT_HOME", tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 256, 65) for _ in range(8)]
    adam = types.AdamParams(learning_rate=1e-4)

    factory = MockFactory()
    engine = factory.create(factory.resolve("tinkerkit/tiny"), LoraConfig(rank=args.rank, seed=0))
    batch = [EngineInput(s[:-1], s[1:]) for s in seqs]
    upstream = [np.full(64, -1.0) for _ in seqs]
    for _ in range(5):
        engine.forward(batch, grad=True).backward(upstream)
        engine.optim_step(adam)
    start = time.perf_counter()
    for _ in range(args.steps):
        engine.forward(batch, grad=True).backward(upstream)
        engine.optim_step(adam)
    engine_ms = (time.perf_counter() - start) / args.steps * 1e3

    client = (
        tk.connect("mock")
        .create_lora_training_client(base_model="tinkerkit/tiny", rank=args.rank, seed=0)
        .result()
    )
    data = [
        types.Datum(
            model_input=types.ModelInput.from_ints(s[:-1].tolist()),
            loss_fn_inputs={"target_tokens": s[1:], "weights": np.ones(64, np.float32)},
        )
        for s in seqs
    ]
    for _ in range(5):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(adam).result()
    start = time.perf_counter()
    futures = []
    for _ in range(args.steps):
        futures.append(client.forward_backward(data, "cross_entropy"))
        futures.append(client.optim_step(adam))
    for f in futures:
        f.result()
    client_ms = (time.perf_counter() - start) / args.steps * 1e3
    print(
        f"mock step (8x64 tokens, rank {args.rank}): engine {engine_ms:.2f} ms | "
        f"through the client {client_ms:.2f} ms | client overhead {client_ms - engine_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
