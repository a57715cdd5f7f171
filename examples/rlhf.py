"""The guide's three-stage RLHF pipeline, corrected, runnable offline in seconds.

Stage 1 SFT → stage 2 a Bradley-Terry reward model (a real loss, through
forward_backward_custom) → stage 3 RL from the SFT weights against the reward model.
Each stage checkpoints into its own folder; re-running skips finished stages.

Run: python examples/rlhf.py
"""

from __future__ import annotations

import tempfile

import tinkerkit as tk
from tinkerkit.recipes import RLHFConfig, rlhf

GOOD, BAD = "Sure, happy to help!", "No."
topics = [f"task {i}" for i in range(16)]
config = RLHFConfig(
    sft_data=[
        {
            "messages": [
                {"role": "user", "content": f"Help me with {t}."},
                {"role": "assistant", "content": GOOD if i % 2 else BAD},
            ]
        }
        for i, t in enumerate(topics)
    ],
    preference_data=[
        {"prompt": f"Help me with {t}.", "chosen": GOOD, "rejected": BAD} for t in topics
    ],
    prompts=[f"Help me with {t}." for t in topics],
    out_dir=tempfile.mkdtemp(prefix="rlhf-"),
    # The guide's learning rates (1e-4 / 1e-5 / 1e-6) suit real models; the tiny offline
    # model needs far larger ones to move in a few steps.
    sft_epochs=5,
    sft_learning_rate=5e-3,
    reward_epochs=3,
    reward_batch_size=4,
    reward_learning_rate=5e-3,
    reward_eval_split=0.25,
    rl_steps=10,
    group_size=8,
    rl_learning_rate=1e-2,
    max_tokens=12,
)
result = rlhf(config, service=tk.connect("mock"))
print(
    f"reward model held-out accuracy: {result.reward_evals[0]['eval_accuracy']:.2f} → "
    f"{result.reward_evals[-1]['eval_accuracy']:.2f}"
)
print(f"RL reward-model score: {result.rl_rewards[0]:.2f} → {result.rl_rewards[-1]:.2f}")
print(f"policy: {result.policy_sampler_path}")
