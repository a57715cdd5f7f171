"""``tinkerkit demo``: train a model offline on a few chats and show that it learned them.

First version (foundation): built-in Q&A chats → chat datums → pipelined SFT on the
chosen offline backend → greedy answers before and after. A tiny random-init model
memorises what it is shown; it does not generalise, and the output says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tinker import types
from tqdm import tqdm

import tinkerkit as tk
from tinkerkit.data import chat_datum

FACTS = [
    ("What is the capital of France?", "Paris."),
    ("Which planet is known as the red planet?", "Mars."),
    ("What do bees make?", "Honey."),
    ("How many legs does a spider have?", "Eight."),
    ("What is the largest ocean?", "The Pacific."),
    ("What gas do plants breathe in?", "Carbon dioxide."),
]


@dataclass
class DemoResult:
    first_loss: float
    last_loss: float
    correct_before: int
    correct_after: int
    total: int
    sampler_path: str
    seconds: float


def _answers(sampler: object, tokenizer: object) -> list[str]:
    answers = []
    futures = []
    for question, _ in FACTS:
        prompt = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        tokens = tokenizer.encode(prompt, add_special_tokens=False)  # type: ignore[attr-defined]
        params = types.SamplingParams(max_tokens=24, temperature=0.0)
        futures.append(sampler.sample(types.ModelInput.from_ints(tokens), 1, params))  # type: ignore[attr-defined]
    for future in futures:
        seq = future.result().sequences[0]
        answers.append(tokenizer.decode(seq.tokens, skip_special_tokens=True).strip())  # type: ignore[attr-defined]
    return answers


def run_demo(
    backend: str = "mock",
    steps: int = 100,
    learning_rate: float = 5e-3,
    seed: int = 0,
    latency: float = 0.0,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo and print what happens; returns the numbers it printed.

    Example:
        >>> result = run_demo("mock")
        >>> result.correct_after > result.correct_before
        True
    """
    start = time.monotonic()
    service = tk.connect(backend, latency=latency)
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny", rank=16, seed=seed
    ).result()
    tokenizer = training.get_tokenizer()
    chats = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in FACTS
    ]
    data = [chat_datum(chat, tokenizer) for chat in chats]
    echo(f"tinkerkit demo · backend={backend} · model=tinkerkit/tiny · {len(data)} chats")

    before_sampler = training.save_weights_and_get_sampling_client().result()
    before = _answers(before_sampler, tokenizer)

    adam = types.AdamParams(learning_rate=learning_rate)
    pending = []
    losses: list[float] = []
    bar = tqdm(total=steps, desc="training", unit="step")
    for _ in range(steps):
        # Pipelined: the next step is submitted before the previous result is read.
        pending.append(training.forward_backward(data, "cross_entropy"))
        training.optim_step(adam)
        if len(pending) > 1:
            out = pending.pop(0).result()
            losses.append(out.metrics["loss:sum"])
            bar.set_postfix(loss=f"{losses[-1]:.2f}")
            bar.update()
    losses.append(pending.pop(0).result().metrics["loss:sum"])
    bar.update()
    bar.close()

    path = training.save_weights_for_sampler("demo-final").result().path
    after_sampler = service.create_sampling_client(model_path=path).result()
    after = _answers(after_sampler, tokenizer)

    def score(answers: list[str]) -> int:
        return sum(a == expected for a, (_, expected) in zip(answers, FACTS, strict=True))

    echo(f"\nloss (summed over trained tokens): {losses[0]:.1f} → {losses[-1]:.2f}")
    echo("\nquestion → answer before training | after training")
    for (question, _), b, a in zip(FACTS, before, after, strict=True):
        echo(f"  {question}\n      before: {b[:40]!r}\n      after:  {a!r}")
    correct_before, correct_after = score(before), score(after)
    echo(
        f"\nexact answers: {correct_before}/{len(FACTS)} before, {correct_after}/{len(FACTS)} after."
        "\nA tiny random model memorises the chats it saw; it does not generalise to new questions."
    )
    echo(f"sampler checkpoint: {path}")
    return DemoResult(
        losses[0],
        losses[-1],
        correct_before,
        correct_after,
        len(FACTS),
        path,
        time.monotonic() - start,
    )
