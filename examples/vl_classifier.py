"""Teach a vision-language model to name what it sees: an image classifier by SFT.

Pictures of three coloured shapes (a circle, a square, a triangle, anywhere in the
frame, at any size, on a noisy background) become chats — the user sends the picture
and asks, the assistant names the shape — and ``tk.data.chat_datums`` turns them into
datums whose image is an ``ImageChunk`` (its tokens untrained) and whose trained tokens
are the answer. After SFT, the model names held-out pictures it never saw, by greedy
sampling from a ``tk.data.chat_prompt``.

Runs offline on ``tinkerkit/tiny-vl`` (``mock`` by default; ``local`` trains a tiny
Qwen3-VL built from transformers' own classes); on Tinker, use a vision model such as
``Qwen/Qwen3-VL-30B-A3B-Instruct``, whose tokenizer has the same vision tokens.

    python examples/vl_classifier.py                          # mock
    TINKERKIT_BACKEND=local python examples/vl_classifier.py

Prints ``held-out accuracy BEFORE → AFTER``.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw
from tinker import types

import tinkerkit as tk

SHAPES = {"circle": (220, 40, 40), "square": (40, 200, 60), "triangle": (50, 80, 230)}
QUESTION = "What shape is this?"


def picture(shape: str, rng: np.random.Generator) -> Image.Image:
    """A 64×64 picture of ``shape`` in its colour, placed and sized at random."""
    image = Image.new("RGB", (64, 64), tuple(int(x) for x in rng.integers(0, 70, 3)))
    size = int(rng.integers(18, 34))
    x, y = (int(v) for v in rng.integers(2, 62 - size, 2))
    colour = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in SHAPES[shape])
    box = [x, y, x + size, y + size]
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=colour)
    return image


def chat(image: Image.Image, answer: str | None = None) -> list[dict]:
    user = {
        "role": "user",
        "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}],
    }
    return [user] if answer is None else [user, {"role": "assistant", "content": answer}]


def accuracy(sampler, tokenizer, pictures: list[tuple[Image.Image, str]]) -> float:
    """The share of ``pictures`` whose greedy answer starts with the right shape."""
    greedy = types.SamplingParams(max_tokens=10, temperature=0.0)
    futures = [
        sampler.sample(tk.data.chat_prompt(chat(image), tokenizer), 1, greedy)
        for image, _ in pictures
    ]
    answers = [tokenizer.decode(f.result().sequences[0].tokens) for f in futures]
    return float(
        np.mean([a.startswith(shape) for a, (_, shape) in zip(answers, pictures, strict=True)])
    )


def main(backend: str = "mock", steps: int = 100, learning_rate: float = 8e-3) -> float:
    service = tk.connect(backend)
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny-vl", rank=16, seed=0
    ).result()
    tokenizer = training.get_tokenizer()
    rng = np.random.default_rng(0)
    train = [(picture(s, rng), s) for _ in range(20) for s in SHAPES]
    held_out = [(picture(s, rng), s) for _ in range(10) for s in SHAPES]
    data = tk.data.chat_datums([chat(image, shape) for image, shape in train], tokenizer)
    before = accuracy(training.save_weights_and_get_sampling_client().result(), tokenizer, held_out)
    for step in range(steps):
        batch = [data[i] for i in rng.permutation(len(data))[:12]]
        result = training.forward_backward(batch, "cross_entropy")
        training.optim_step(types.AdamParams(learning_rate=learning_rate * (1 - step / steps)))
        if step % 20 == 0 or step == steps - 1:
            loss = result.result().metrics["loss:sum"] / len(batch)
            print(f"step {step:3d}  loss per picture {loss:.3f}")
    after = accuracy(training.save_weights_and_get_sampling_client().result(), tokenizer, held_out)
    print(f"held-out accuracy {before:.2f} → {after:.2f} ({len(held_out)} pictures, {backend})")
    return after


if __name__ == "__main__":
    main(os.environ.get("TINKERKIT_BACKEND", "mock"))
