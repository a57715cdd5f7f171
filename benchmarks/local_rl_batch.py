"""Wall time of one RL batch on ``local`` and on ``mock``, side by side in one run.

The batch is the one a third-party RL program runs through the official SDK: 32 prompts
x 16 samples x 32 tokens from a sampling client (all 32 ``sample`` requests submitted
before the first ``.result()``), group-normalised advantages from a toy reward, then one
``forward_backward`` of the 512 sequences with ``importance_sampling`` and one
``optim_step``. The model is ``Qwen/Qwen3-8B``, which ``local`` stands in for with a tiny
Llama over the real 151,936-token vocabulary.

Target (issue 23): local <= 10 s on 2 cores. The floor is arithmetic: every sampled
token needs the full unembedding (151,936 x 64 multiply-adds) and a softmax over the
vocabulary, and training repeats that over every position, forward and backward; the
script prints that floor from the machine's measured matmul rate.

    python benchmarks/local_rl_batch.py [--quick] [--prompts 32] [--samples 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

os.environ.setdefault("TINKER_TELEMETRY", "0")

import numpy as np
import torch
from tinker import types

import tinkerkit as tk

MODEL = "Qwen/Qwen3-8B"
TARGET_S = 10.0


def _result(x: Any) -> Any:
    return x.result() if hasattr(x, "result") else x


def _batch(service: Any, args: argparse.Namespace) -> tuple[float, float, float]:
    """(sampling s, training s, total s) of one batch."""
    training = _result(service.create_lora_training_client(base_model=MODEL, rank=8, seed=0))
    sampler = _result(training.save_weights_and_get_sampling_client())
    rng = np.random.default_rng(0)
    prompts = [rng.integers(1, 5000, args.prompt_len).tolist() for _ in range(args.prompts)]
    params = types.SamplingParams(max_tokens=args.tokens, temperature=1.0, stop=[])
    start = time.perf_counter()
    futures = [sampler.sample(types.ModelInput.from_ints(p), args.samples, params) for p in prompts]
    results = [f.result() for f in futures]
    sampled = time.perf_counter()
    data = []
    for prompt, result in zip(prompts, results, strict=True):
        rewards = np.array([np.mean(np.asarray(s.tokens) % 2) for s in result.sequences])
        advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-6)
        for seq, adv in zip(result.sequences, advantages, strict=True):
            tokens = prompt + seq.tokens
            n_prompt = len(prompt) - 1
            data.append(
                types.Datum(
                    model_input=types.ModelInput.from_ints(tokens[:-1]),
                    loss_fn_inputs={
                        "target_tokens": tokens[1:],
                        "logprobs": [0.0] * n_prompt + list(seq.logprobs),
                        "advantages": [0.0] * n_prompt + [float(adv)] * len(seq.tokens),
                    },
                )
            )
    fb = training.forward_backward(data, "importance_sampling")
    step = training.optim_step(types.AdamParams(learning_rate=1e-5))
    fb.result()
    step.result()
    done = time.perf_counter()
    return sampled - start, done - sampled, done - start


def _floor(args: argparse.Namespace) -> float:
    """Seconds the unembedding matmuls alone need on this machine (fp32, all cores)."""
    w = torch.randn(151_936, 64)
    x = torch.randn(512, 64)
    x @ w.T
    start = time.perf_counter()
    for _ in range(3):
        x @ w.T
    rate = 3 * 512 / (time.perf_counter() - start)  # rows per second
    sampled_rows = args.prompts * args.samples * args.tokens
    trained_rows = args.prompts * args.samples * (args.prompt_len + args.tokens)
    # sampling: one pass per token; training: forward + two backward matmuls per position.
    return (sampled_rows + 3 * trained_rows) / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="8 prompts instead of 32")
    args = parser.parse_args()
    if args.quick:
        args.prompts = 8
    shape = f"{args.prompts} prompts x {args.samples} samples x {args.tokens} tokens"
    print(f"{MODEL}, {shape}, importance_sampling")
    totals = {}
    for backend in ("mock", "local"):
        sampling, training, total = _batch(tk.connect(backend), args)
        totals[backend] = total
        print(
            f"  {backend:6} sample {sampling:6.2f} s   train {training:6.2f} s   "
            f"batch {total:6.2f} s"
        )
    floor = _floor(args)
    print(f"  matmul floor of the unembedding alone on this machine: {floor:.1f} s")
    ok = totals["local"] <= TARGET_S
    print(
        f"local RL batch: {totals['local']:.1f} s, {totals['local'] / totals['mock']:.1f}x mock "
        f"(target <= {TARGET_S:.0f} s): {'PASS' if ok else 'FAIL'}"
    )
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
