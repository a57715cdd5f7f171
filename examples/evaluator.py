"""A fine-tuned evaluator (the guide's "Training Custom Kit Evaluators"), with robust scoring.

Train a scorer by SFT on (code, score, reasoning); `Evaluator.score` parses "Score: 85",
"4 out of 5", "80-90" or a bare number, clamps to the scale, and records failures
instead of crashing on junk (the guide's `float(text.strip())` does).

Run: python examples/evaluator.py
"""

from __future__ import annotations

import tempfile

import tinkerkit as tk
from tinkerkit.recipes import Evaluator, evaluator_chat

examples = [
    ("def add(a, b):\n    return a + b", 90, "Clear and correct."),
    ("def f(x): return x*2 # todo", 40, "Unclear name."),
    ("while True: pass", 5, "Never ends."),
]
service = tk.connect("mock")
run = tk.sft.train(
    tk.sft.Config(
        data=[evaluator_chat(c, s, r) for c, s, r in examples],
        epochs=80,
        batch_size=3,
        learning_rate=1e-2,
        rank=16,
        save_each_epoch=False,
        log_dir=tempfile.mkdtemp(prefix="judge-"),
    ),
    service=service,
)
judge = Evaluator(service.create_sampling_client(model_path=run.sampler_path).result())
for code, expected, _ in examples:
    print(f"expected {expected:3d}  scored {judge.score(code)}  ← {code.splitlines()[0]!r}")
print(f"unparseable replies: {len(judge.failures)}")
