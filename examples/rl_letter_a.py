"""RL end to end, offline: teach the mock model to say "a" — the reward rises in seconds.

The reward is the fraction of the letter "a" in the completion. A random model writes
about 1 "a" in 256 characters; 30 steps of RL (groups of 8 samples for 4 prompts,
advantages = reward - group mean, importance-sampling loss on exactly the sampled
tokens) take it to nearly all "a"s.

Run:   python examples/rl_letter_a.py
Or the same through the CLI (this file is also a reward module):
    tinkerkit rl --prompts prompts.jsonl --reward examples/rl_letter_a.py:letter_a \\
        --backend mock --group-size 8 --batch-size 4 --steps 30 --lr 1e-2 \\
        --max-tokens 8 --log-dir runs/letter-a
"""

from __future__ import annotations

import tempfile
from typing import Any


def letter_a(prompt: Any, completion: str, **fields: Any) -> float:
    """Fraction of the completion's characters that are the letter "a"."""
    return completion.count("a") / len(completion) if completion else 0.0


def main() -> None:
    import tinkerkit as tk
    from tinkerkit.train import rl

    prompts = [f"Write something #{i}" for i in range(16)]
    with tempfile.TemporaryDirectory() as log_dir:
        result = rl.train(
            rl.Config(
                prompts=prompts,
                reward=letter_a,
                group_size=8,
                batch_size=4,
                steps=30,
                learning_rate=1e-2,  # mock's tiny LoRA; real models want ~1e-5 (the guide's)
                max_tokens=8,
                temperature=1.0,
                rank=8,
                seed=0,
                log_dir=log_dir,
                log_samples_every=10,
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
                print(f"step {row['step']:>2}  reward {row['reward']:.2f}  {row['completion']!r}")


if __name__ == "__main__":
    main()
