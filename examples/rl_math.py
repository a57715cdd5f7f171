"""The guide's math recipe on the toy arithmetic environment, offline on mock.

Prompts are "What is 1+2?" with an ``answer`` field; ``math_reward`` finds the model's
final answer (``\\boxed{...}``, ``#### ...`` or the last number), compares it with the
expected one as a number (so 0.75 == 3/4 == \\frac{3}{4}) and scores the guide's way:
+1 correct, -0.1 wrong. The mock model starts out writing random bytes (-0.1 nearly
always); within 40 steps (a few seconds) it learns to answer with a digit, and settles
on a frequent sum — the tiny mock model barely reads the operands, so do not expect it
to do arithmetic. On a real model, use the same code with real questions and lr ~1e-5.

Run: python examples/rl_math.py
"""

from __future__ import annotations

import tempfile

import tinkerkit as tk
from tinkerkit.recipes import arithmetic_prompts, math_reward
from tinkerkit.train import rl


def main() -> None:
    with tempfile.TemporaryDirectory() as log_dir:
        result = rl.train(
            rl.Config(
                prompts=arithmetic_prompts(32, seed=0, max_operand=2),
                reward=math_reward,
                group_size=8,
                batch_size=8,
                steps=40,
                learning_rate=3e-3,
                max_tokens=2,
                rank=8,
                seed=0,
                log_dir=log_dir,
                log_samples_every=20,
                progress=False,
            ),
            service=tk.connect("mock"),
        )
        rewards = result.rewards
        print(" ".join(f"{r:.2f}" for r in rewards))
        first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
        print(f"mean reward: first 5 steps {first:.3f} -> last 5 steps {last:.3f}")
        for row in result.samples:  # the transcripts (LOG_DIR/samples.jsonl)
            if "completion" in row:
                print(
                    f"step {row['step']:>2}  {row['prompt']}  -> {row['completion']!r}  "
                    f"reward {row['reward']:+.1f}"
                )


if __name__ == "__main__":
    main()
