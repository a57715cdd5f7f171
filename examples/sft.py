"""The guide's "Supervised Fine-Tuning" section, corrected, runnable offline.

The guide's `sft_training` loop: builds datums without `target_tokens`, formats chats
as `role: content` instead of the model's chat template, waits on nothing (or, with
`.result()`, on everything), never evaluates, cannot resume, and prints every 100 steps.
`tk.sft.train` is that loop done right; this script shows both ways to call it.

Run: python examples/sft.py   (TINKERKIT_BACKEND=local for the torch engine)
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tinker import types

import tinkerkit as tk

workdir = Path(tempfile.mkdtemp(prefix="tinkerkit-sft-"))
chats = [
    {
        "messages": [
            {"role": "user", "content": f"Translate '{en}' to French."},
            {"role": "assistant", "content": fr},
        ]
    }
    for en, fr in [
        ("cat", "chat"),
        ("dog", "chien"),
        ("bread", "pain"),
        ("water", "eau"),
        ("house", "maison"),
        ("tree", "arbre"),
    ]
]
data_path = workdir / "chats.jsonl"
data_path.write_text("".join(json.dumps(c) + "\n" for c in chats))

service = tk.connect(os.environ.get("TINKERKIT_BACKEND", "mock"))

# 1. The whole loop: pipelined, checkpointed, resumable, logged to workdir/run.
result = tk.sft.train(
    tk.sft.Config(
        data=data_path,
        model="tinkerkit/tiny",
        epochs=100,
        batch_size=6,
        learning_rate=1e-2,
        rank=16,
        warmup_steps=5,
        sample_prompts=["Translate 'cat' to French."],
        sample_every=20,
        log_dir=workdir / "run",
    ),
    service=service,
)
print(f"final loss {result.final_loss:.4f}; sampler weights at {result.sampler_path}")

# 2. Sampling the result with text in, text out.
sampler = service.create_sampling_client(model_path=result.sampler_path).result()
for word in ("cat", "bread", "tree"):
    answer = tk.sample_text(sampler, f"Translate '{word}' to French.", temperature=0.0)[0].text
    print(f"{word} → {answer}")

# 3. The same building blocks by hand, if you want your own loop.
training = service.create_lora_training_client(
    base_model="tinkerkit/tiny", rank=16, seed=0
).result()
tokenizer = training.get_tokenizer()
datums = tk.data.chat_datums(tk.data.load_chat_jsonl(data_path), tokenizer)
tk.data.check_datums(datums, vocab_size=len(tokenizer))
print(tk.data.show_datum(datums[0], tokenizer))
futures = []
for _ in range(30):
    futures.append(training.forward_backward(datums, "cross_entropy"))  # submit...
    training.optim_step(types.AdamParams(learning_rate=1e-2))  # ...and keep going
losses = [f.result().metrics["loss:sum"] for f in futures]  # read results afterwards
print(f"hand-written loop: loss {losses[0]:.1f} → {losses[-1]:.2f}")
print(f"logs in {workdir}")
