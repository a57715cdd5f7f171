"""Prompt distillation: the student learns, without the system prompt, what the teacher
does with it — trained on the teacher's exact sampled tokens (the guide re-tokenises text).

Offline, a teacher whose behaviour depends on the system prompt is made first by SFT.

Run: python examples/prompt_distillation.py
"""

from __future__ import annotations

import tempfile

import tinkerkit as tk
from tinkerkit.recipes import distill_prompt

SYSTEM = "You are a pirate."
service = tk.connect("mock")
topics = [f"Tell me about topic number {i}." for i in range(16)]
teacher_run = tk.sft.train(
    tk.sft.Config(
        data=[
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": t},
                    {"role": "assistant", "content": "Arr matey, to the sea!"},
                ]
            }
            for t in topics[:8]
        ],
        epochs=40,
        batch_size=8,
        learning_rate=1e-2,
        rank=16,
        save_each_epoch=False,
        log_dir=tempfile.mkdtemp(prefix="teacher-"),
    ),
    service=service,
)
teacher = service.create_sampling_client(model_path=teacher_run.sampler_path).result()
report = distill_prompt(
    service, SYSTEM, topics[:12], topics[12:], teacher=teacher, epochs=30, max_tokens=24
)
print(
    f"held-out: student matches teacher {report.eval_before.exact_match:.0%} → {report.eval_after.exact_match:.0%}; "
    f"mean logprob of the teacher's answers {report.eval_before.mean_logprob:.2f} → {report.eval_after.mean_logprob:.2f}"
)
