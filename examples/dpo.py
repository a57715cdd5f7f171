"""Preference learning with DPO (the guide has none: its `bradley_terry` loss does not exist).

DPO trains the policy directly on (prompt, chosen, rejected) pairs through
`forward_backward_custom`, against a frozen reference (the base model). Runs offline.

Run: python examples/dpo.py
"""

from __future__ import annotations

import random
import tempfile

import tinkerkit as tk

rng = random.Random(0)
good = ["Sure, happy to help with that.", "Of course! Here is a careful answer."]
bad = ["No.", "Figure it out yourself."]
pairs = [
    {
        "prompt": f"Can you help me with task {i}?",
        "chosen": rng.choice(good),
        "rejected": rng.choice(bad),
    }
    for i in range(20)
]
result = tk.preference.train_dpo(
    tk.preference.DPOConfig(
        data=pairs[:16],
        eval_data=pairs[16:],
        epochs=3,
        batch_size=4,
        beta=0.1,
        learning_rate=5e-3,
        rank=8,
        log_dir=tempfile.mkdtemp(prefix="dpo-"),
    ),
    service=tk.connect("mock"),
)
first, last = result.evals()[0], result.evals()[-1]
print(
    f"held-out pairs: accuracy {first['eval_accuracy']:.2f} → {last['eval_accuracy']:.2f}, "
    f"margin {first['eval_margin']:.2f} → {last['eval_margin']:.2f}"
)

# The loss itself, for your own loop:
#   ref = tk.losses.reference_logprobs(reference_sampler, data)   # [chosen_0, rejected_0, ...]
#   training.forward_backward_custom(data, tk.losses.dpo(ref, beta=0.1))
