"""4 LoRA training clients stepping at once on one ``local`` service against one client
stepping alone, side by side in one run.

Run: ``python benchmarks/multi_lora.py [--rounds 20] [--clients 4] [--model NAME]
[--quick]``. Target (exits 1 when missed): a round of 4 clients takes <= 2.5x one
client's step::

    tinkerkit/tiny, LoRA rank 8, 8 x 64 tokens, fb + optim_step (median of 20)
      1 client step                    48.6 ms
      4 clients round                 195.0 ms  4.01x one client's step
    4 clients round: 4.01x one client's step (target <= 2.5x): FAIL

The sides (every round calls each once, so both see the same machine state; 3 untimed
rounds first):

- **1 client step**: one training client's ``forward_backward(data, "cross_entropy")``
  and ``optim_step(AdamParams(learning_rate=1e-4))``, both submitted, then both results
  waited for.
- **N clients round**: N training clients (LoRA rank 8 on the same base, different
  seeds) of one ``tk.connect("local")`` service each submit their ``forward_backward`` and
  ``optim_step``, all before any ``.result()``; then every result is waited for. Client 0
  is also the lone client of the other side.

Every step trains on the same fixed batch: 8 random byte-range sequences of 64 tokens
(weights 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TINKER_TELEMETRY", "0")

import numpy as np
from tinker import types

import tinkerkit as tk
from tinkerkit.data import shifted_datum

MODEL = "tinkerkit/tiny"
TARGET = 2.5  # N-client round / one client's step, at most
ADAM = types.AdamParams(learning_rate=1e-4)


def _result(x: Any) -> Any:
    return x.result() if hasattr(x, "result") else x


def _datums(batch: int, length: int, seed: int) -> list[types.Datum]:
    rng = np.random.default_rng(seed)
    return [
        shifted_datum(rng.integers(1, 256, length + 1).tolist(), [1.0] * (length + 1))
        for _ in range(batch)
    ]


def _round(clients: list[Any], data: list[types.Datum]) -> Callable[[], None]:
    """Every client submits forward_backward + optim_step, then all results are awaited."""

    def run() -> None:
        futures = []
        for client in clients:
            futures.append(client.forward_backward(data, "cross_entropy"))
            futures.append(client.optim_step(ADAM))
        for future in futures:
            future.result()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (medians)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=64, help="tokens per datum")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="5 timed rounds, 1 warm-up")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.warmup = 5, 1

    service = tk.connect("local")
    clients = [
        _result(service.create_lora_training_client(base_model=args.model, rank=args.rank, seed=i))
        for i in range(args.clients)
    ]
    data = _datums(args.batch, args.length, args.seed)
    sides = [_round(clients[:1], data), _round(clients, data)]
    for _ in range(args.warmup):
        for side in sides:
            side()
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(args.rounds):
        for side, bucket in zip(sides, times, strict=True):
            start = time.perf_counter()
            side()
            bucket.append(time.perf_counter() - start)
    one, many = (statistics.median(t) * 1000 for t in times)
    ratio = many / one
    print(
        f"{args.model}, LoRA rank {args.rank}, {args.batch} x {args.length} tokens, "
        f"fb + optim_step (median of {args.rounds})"
    )
    print(f"  {'1 client step':29} {one:7.1f} ms")
    print(f"  {f'{args.clients} clients round':29} {many:7.1f} ms  {ratio:.2f}x one client's step")
    ok = ratio <= TARGET
    print(
        f"{args.clients} clients round: {ratio:.2f}x one client's step "
        f"(target <= {TARGET:.1f}x): {'PASS' if ok else 'FAIL'}"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
