"""``local`` ``sample()`` through the official SDK against transformers' own
``model.generate`` on the same base model, and 8 concurrent requests against one, side by
side in one run, at the byte vocabulary (``tinkerkit/tiny``, 261 tokens) and at Qwen's
151,936 (``Qwen/Qwen3-8B``'s local stand-in: a tiny Llama with the real vocabulary).

Run: ``python benchmarks/local_sampling.py [--repeats 3] [--quick] [--models NAME ...]``.
Targets (exits 1 when one is missed): ``sample()`` tokens/s >= 1.0x ``generate``'s at each
vocabulary; 8 concurrent requests finish in <= 2.0x one request's time::

    tinkerkit/tiny (vocab 261): 16-token prompt, 16 samples x 32 tokens, T=1.0 (median of 3)
                                          time   tokens/s
      local sample()                  205.1 ms      2,497
      HF model.generate               178.1 ms      2,875  ours 0.87x HF
      8 concurrent sample()           457.6 ms      8,951  2.23x one request
    Qwen/Qwen3-8B (vocab 151,936): 16-token prompt, 16 samples x 32 tokens, T=1.0 (median of 3)
                                          time   tokens/s
      local sample()                 560.6 ms        913
      HF model.generate              2541.4 ms        201  ours 4.53x HF
      8 concurrent sample()         5831.6 ms        702  10.40x one request
    (HF generate ran on 2 torch threads)
    tinkerkit/tiny: sample() tokens/s 0.87x HF generate (target >= 1.0x): FAIL
    tinkerkit/tiny: 8 concurrent requests 2.23x one request (target <= 2.0x): FAIL
    Qwen/Qwen3-8B: sample() tokens/s 4.53x HF generate (target >= 1.0x): PASS
    Qwen/Qwen3-8B: 8 concurrent requests 10.40x one request (target <= 2.0x): FAIL

(2 shared cores, mid-change working tree: figures for the shape of the output only.)

The sides, per model (every round calls each side once, so all see the same machine
state; two untimed rounds of the first two sides come first):

- **local sample()**: ``tk.connect("local")`` (the SDK's ``tinker.ServiceClient`` against
  tinkerkit's service in this process), a base-model sampling client, one prompt,
  ``num_samples=16``, ``SamplingParams(max_tokens=32, temperature=1.0, stop=[])``: no stop
  token, so every sequence runs all 32 tokens (checked).
- **HF model.generate**: the same base model object the service samples from (the
  ``local`` backend loads a base once per process: ``models.base_model``), the prompt
  repeated 16 times, ``do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
  max_new_tokens=32, min_new_tokens=32``, under ``torch.inference_mode``: plain
  multinomial sampling from the full softmax, as ``sample()`` does at temperature 1;
  every row runs 32 new tokens (checked). It runs on torch's default thread count (one
  per core; ``--hf-threads``), set before every call: the count is process-wide and the
  ``local`` engine sets its own.
- **8 concurrent sample()**: 8 requests of the same shape with 8 different prompts, all
  submitted before the first ``.result()``; compared with the round's one-request time.

Tokens/s counts generated tokens (prompt tokens are not counted on either side).
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
import torch
from tinker import types
from transformers import GenerationConfig

import tinkerkit as tk
from tinkerkit.backends.local import models
from tinkerkit.backends.local.engine import LocalFactory

MODELS = ("tinkerkit/tiny", "Qwen/Qwen3-8B")
RATE_TARGET = 1.0  # ours / HF tokens/s, at least
CONCURRENT_TARGET = 2.0  # 8 concurrent requests / one request, time at most


def _result(x: Any) -> Any:
    return x.result() if hasattr(x, "result") else x


def _prompts(n: int, length: int, seed: int) -> list[list[int]]:
    """``n`` different prompts of byte-range ids (valid in both vocabularies)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 256, length).tolist() for _ in range(n)]


def _sides(service: Any, name: str, args: argparse.Namespace) -> list[Callable[[], int]]:
    """ours, HF, concurrent: each call does the work and returns the tokens generated."""
    sampler = _result(service.create_sampling_client(base_model=name))
    factory = LocalFactory()
    base = models.base_model(factory._source(name), factory.names)
    prompts = _prompts(args.concurrent, args.prompt_len, args.seed)
    params = types.SamplingParams(max_tokens=args.max_tokens, temperature=1.0, stop=[])
    expected = args.samples * args.max_tokens

    def submit(ids: list[int]) -> Any:
        return sampler.sample(
            prompt=types.ModelInput.from_ints(ids),
            num_samples=args.samples,
            sampling_params=params,
        )

    def count(response: Any) -> int:
        n = sum(len(seq.tokens) for seq in response.sequences)
        if n != expected:
            raise SystemExit(f"{name}: sample() gave {n} tokens, not {expected} (a stop?)")
        return n

    def ours() -> int:
        return count(submit(prompts[0]).result())

    def concurrent() -> int:
        futures = [submit(ids) for ids in prompts]
        return sum(count(f.result()) for f in futures)

    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=args.max_tokens,
        min_new_tokens=args.max_tokens,
        pad_token_id=base.config.pad_token_id,
        eos_token_id=None,
    )
    ids = torch.tensor([prompts[0]] * args.samples, device=base.device)
    mask = torch.ones_like(ids)

    def hf() -> int:
        # torch's thread count is process-wide and the local engine sets its own before
        # each unit of work: give generate torch's default (or --hf-threads) every call.
        torch.set_num_threads(args.hf_threads)
        with torch.inference_mode():
            out = base.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        n = out.shape[0] * (out.shape[1] - ids.shape[1])
        if n != expected:
            raise SystemExit(f"{name}: generate gave {n} tokens, not {expected}")
        return n

    return [ours, hf, concurrent]


def _run(calls: list[Callable[[], int]], n: int, warmup: int) -> list[tuple[float, int]]:
    """Median seconds and tokens of each call, interleaved round by round, after
    ``warmup`` untimed rounds of all but the last call."""
    for _ in range(warmup):
        for call in calls[:-1]:
            call()
    times: list[list[float]] = [[] for _ in calls]
    tokens = [0] * len(calls)
    for _ in range(n):
        for i, call in enumerate(calls):
            start = time.perf_counter()
            tokens[i] = call()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), k) for t, k in zip(times, tokens, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (medians)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (not concurrent)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--samples", type=int, default=16, help="num_samples per request")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--concurrent", type=int, default=8, help="concurrent requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hf-threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads for generate (default: torch's own default, one per core)",
    )
    parser.add_argument("--quick", action="store_true", help="one warm-up, one timed round")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 1, 1
    torch.manual_seed(args.seed)

    service = tk.connect("local")
    summary: list[tuple[str, bool]] = []
    for name in args.models:
        vocab = LocalFactory().resolve(name).vocab_size
        calls = _sides(service, name, args)
        # Warm ours and HF; the concurrent side is not warmed separately (its cost at
        # today's speed would double the run), the median over rounds absorbs it.
        timed = _run(calls, args.repeats, args.warmup)
        (t_ours, k_ours), (t_hf, k_hf), (t_many, k_many) = timed
        rate = (k_ours / t_ours) / (k_hf / t_hf)
        many = t_many / t_ours
        print(
            f"{name} (vocab {vocab:,}): {args.prompt_len}-token prompt, {args.samples} samples"
            f" x {args.max_tokens} tokens, T=1.0 (median of {args.repeats})"
        )
        print(f"  {'':29} {'time':>10} {'tokens/s':>10}")
        rows = (
            ("local sample()", t_ours, k_ours, ""),
            ("HF model.generate", t_hf, k_hf, f"ours {rate:.2f}x HF"),
            (f"{args.concurrent} concurrent sample()", t_many, k_many, f"{many:.2f}x one request"),
        )
        for label, t, k, note in rows:
            print(f"  {label:29} {t * 1000:7.1f} ms {k / t:10,.0f}  {note}".rstrip())
        checks = (
            (
                f"sample() tokens/s {rate:.2f}x HF generate",
                f">= {RATE_TARGET:.1f}x",
                rate >= RATE_TARGET,
            ),
            (
                f"{args.concurrent} concurrent requests {many:.2f}x one request",
                f"<= {CONCURRENT_TARGET:.1f}x",
                many <= CONCURRENT_TARGET,
            ),
        )
        summary += [(f"{name}: {what} (target {bound})", ok) for what, bound, ok in checks]
    print(f"(HF generate ran on {args.hf_threads} torch threads)")
    for line, ok in summary:
        print(f"{line}: {'PASS' if ok else 'FAIL'}")
    if not all(ok for _, ok in summary):
        sys.exit(1)


if __name__ == "__main__":
    main()
