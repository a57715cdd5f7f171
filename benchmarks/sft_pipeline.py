"""Wall time of ``tk.sft.train`` vs the guide's naive loop under simulated latency.

Both run the same 8 steps (same data, batches, learning rate) on the same backend with
``latency=0.1`` s per request, side by side in one run. The naive loop waits for every
result before the next call (two round trips a step); ``tk.sft.train`` keeps steps in
flight. Target ratio <= 0.25. Usage: python benchmarks/sft_pipeline.py [--backend mock]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from tinker import types

import tinkerkit as tk
from tinkerkit.data import chat_datum

CHATS = [
    [
        {"role": "user", "content": f"What is {i} squared?"},
        {"role": "assistant", "content": str(i * i)},
    ]
    for i in range(16)
]


def naive(service, steps: int, lr: float) -> float:
    """The guide's sft_training, waiting on each call as its `future.result()` advice says."""
    start = time.monotonic()
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny", rank=8, seed=0
    ).result()
    tok = training.get_tokenizer()
    data = [chat_datum(c, tok) for c in CHATS]
    for step in range(steps):
        batch = data[(step * 2) % 16 : (step * 2) % 16 + 2]
        training.forward_backward(batch, loss_fn="cross_entropy").result()
        training.optim_step(types.AdamParams(learning_rate=lr)).result()
    training.save_state("final").result()
    training.save_weights_for_sampler("final").result()
    return time.monotonic() - start


def ours(service, steps: int, lr: float, log_dir: Path) -> float:
    start = time.monotonic()
    config = tk.sft.Config(
        data=[{"messages": c} for c in CHATS],
        epochs=1,
        batch_size=2,
        learning_rate=lr,
        rank=8,
        log_dir=log_dir,
        progress=False,
    )
    result = tk.sft.train(config, service=service)
    assert result.steps == steps
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="mock")
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    os.environ.setdefault("TINKERKIT_HOME", tempfile.mkdtemp())
    service = tk.connect(args.backend, latency=args.latency)
    steps = 8
    t_naive = naive(service, steps, 1e-3)
    t_ours = ours(service, steps, 1e-3, Path(tempfile.mkdtemp()) / "run")
    print(
        f"sft, {steps} steps, backend={args.backend}, latency={args.latency}s: "
        f"naive loop {t_naive:.2f} s | tk.sft.train {t_ours:.2f} s | ratio {t_ours / t_naive:.2f}"
    )


if __name__ == "__main__":
    main()
