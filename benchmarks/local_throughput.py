"""Training throughput of the ``local`` engine vs a plain padded transformers + PEFT loop.

Both train the same LoRA (same init) on the built-in tiny Llama with the same
batches of variable-length sequences: forward, backward of the summed
cross-entropy, one AdamW step. The baseline pads each batch to its longest
sequence, as a straightforward loop does; the engine buckets by length. Steps
alternate between the two, and the summary line reports medians over steps, so a
step slowed by another process on a shared machine does not skew the figure.

    PYTHONPATH=src python benchmarks/local_throughput.py --steps 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import peft
import torch
from tinker import types

from tinkerkit.backends.engine import EngineInput, LoraConfig
from tinkerkit.backends.local import lora as lora_lib
from tinkerkit.backends.local.engine import LocalEngine, LocalFactory
from tinkerkit.backends.local.models import build_tiny
from tinkerkit.models.registry import TINY

VOCAB = 261


def make_batches(args: argparse.Namespace) -> list[list[EngineInput]]:
    rng = np.random.default_rng(args.seed)
    batches = []
    for _ in range(args.steps + 1):  # +1: the warm-up step
        lengths = rng.integers(args.min_len, args.max_len + 1, args.batch)
        tokens = [rng.integers(0, VOCAB, n + 1) for n in lengths]
        batches.append([EngineInput(t[:-1], t[1:]) for t in tokens])
    return batches


class PaddedLoop:
    """The baseline: HF model + PEFT LoRA + AdamW, every batch padded to its longest."""

    def __init__(self, engine: LocalEngine, rank: int, lr: float) -> None:
        base = build_tiny()
        lora = LoraConfig(rank=rank)
        config = lora_lib.peft_config(lora, lora_lib.target_modules(lora, base))
        self.model = peft.get_peft_model(base, config)
        own = lora_lib.lora_params(self.model)
        with torch.no_grad():
            for key, value in engine.get_weights().items():
                own[key].copy_(torch.from_numpy(value))
        self.opt = torch.optim.AdamW(list(own.values()), lr=lr, betas=(0.9, 0.95), eps=1e-12)

    def step(self, batch: list[EngineInput]) -> float:
        width = max(len(b.tokens) for b in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, b in enumerate(batch):
            n = len(b.tokens)
            ids[row, :n] = torch.from_numpy(b.tokens)
            labels[row, :n] = torch.from_numpy(b.targets)
            mask[row, :n] = 1
        logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
        )
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)
        return float(loss.detach())


def engine_step(engine: LocalEngine, batch: list[EngineInput], hp: types.AdamParams) -> float:
    fp = engine.forward(batch, grad=True)
    fp.backward([-np.ones_like(lp) for lp in fp.logprobs])  # d(sum of NLL)/d(logprobs)
    engine.optim_step(hp)
    return -float(sum(lp.sum() for lp in fp.logprobs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    factory = LocalFactory()
    engine = factory.create(factory.resolve(TINY), LoraConfig(rank=args.rank, seed=args.seed))
    baseline = PaddedLoop(engine, args.rank, args.lr)
    hp = types.AdamParams(learning_rate=args.lr)
    batches = make_batches(args)
    ours: list[float] = []  # per-step tokens/s
    theirs: list[float] = []
    total = [0.0, 0.0, 0.0]  # tokens, engine seconds, baseline seconds
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss_a = engine_step(engine, batch, hp)
        t1 = time.perf_counter()
        loss_b = baseline.step(batch)
        t2 = time.perf_counter()
        if i == 0:
            # same weights, same data: the two loops compute the same loss
            assert abs(loss_a - loss_b) <= 1e-3 * abs(loss_b), (loss_a, loss_b)
            continue  # warm-up, not timed
        n = sum(len(b.tokens) for b in batch)
        ours.append(n / (t1 - t0))
        theirs.append(n / (t2 - t1))
        total = [total[0] + n, total[1] + t1 - t0, total[2] + t2 - t1]
    print(
        f"{args.steps} steps x {args.batch} sequences of {args.min_len}..{args.max_len} "
        f"tokens, LoRA rank {args.rank}, {torch.get_num_threads()} threads"
    )
    mean_a, mean_b = total[0] / total[1], total[0] / total[2]
    print(f"overall (any step slowed by other load counts): ratio {mean_a / mean_b:.2f}x")
    # Medians over steps: robust to a step slowed by another process on the machine.
    ratio = float(np.median(np.asarray(ours) / np.asarray(theirs)))
    a, b = float(np.median(ours)), float(np.median(theirs))
    print(f"local engine: {a:,.0f} tok/s | padded HF+PEFT: {b:,.0f} tok/s | ratio: {ratio:.2f}x")


if __name__ == "__main__":
    main()
