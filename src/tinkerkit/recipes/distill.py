"""Prompt distillation: make a model behave as if a system prompt were always there.

The teacher (the base model, or any sampler) answers each input *with* the system
prompt; the student is trained *without* it on exactly the tokens the teacher sampled
(the guide decodes the teacher's text and re-tokenises it, which drifts). Evaluation on
held-out inputs compares the student without the prompt to the teacher with it.

    report = distill_prompt(service, "Answer like a pirate.", train_inputs, eval_inputs)
    report.eval_before.mean_logprob, report.eval_after.mean_logprob
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tinker import types

from tinkerkit.data.chat import chat_prompt_tokens
from tinkerkit.data.datum import shifted_datum
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import SamplingClientLike, ServiceClientLike, Tokenizer
from tinkerkit.train.scoring import datum_logprobs


@dataclass(frozen=True)
class Comparison:
    """How close a student (no system prompt) is to the teacher (with it) on some inputs."""

    mean_logprob: float
    """Mean per-token logprob the student gives the teacher's sampled answers."""
    exact_match: float
    """Fraction of inputs where greedy student and greedy teacher answers are identical."""


@dataclass(frozen=True)
class DistillReport:
    sampler_path: str
    state_path: str
    eval_before: Comparison
    eval_after: Comparison
    log_dir: Path


def _messages(system_prompt: str | None, user: str) -> list[dict[str, str]]:
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*head, {"role": "user", "content": user}]


def teacher_samples(
    teacher: SamplingClientLike,
    tokenizer: Tokenizer,
    system_prompt: str,
    inputs: Sequence[str],
    params: types.SamplingParams,
    n: int,
) -> list[tuple[str, list[int]]]:
    """(input, sampled answer tokens) pairs; every request is in flight at once."""
    futures = [
        (
            text,
            teacher.sample(
                types.ModelInput.from_ints(
                    chat_prompt_tokens(_messages(system_prompt, text), tokenizer)
                ),
                n,
                params,
            ),
        )
        for text in inputs
    ]
    return [
        (text, list(seq.tokens))
        for text, f in futures
        for seq in f.result().sequences
        if seq.tokens
    ]


def student_datums(
    tokenizer: Tokenizer, samples: Sequence[tuple[str, list[int]]]
) -> list[types.Datum]:
    """Student datums: the prompt *without* the system message, then the teacher's tokens."""
    out = []
    for text, answer in samples:
        prompt = chat_prompt_tokens(_messages(None, text), tokenizer)
        out.append(shifted_datum(prompt + answer, [0.0] * len(prompt) + [1.0] * len(answer)))
    return out


def compare(
    student: SamplingClientLike,
    teacher: SamplingClientLike,
    tokenizer: Tokenizer,
    system_prompt: str,
    inputs: Sequence[str],
    max_tokens: int,
) -> Comparison:
    """Student (no system prompt) vs teacher (with it) on ``inputs``."""
    greedy = types.SamplingParams(max_tokens=max_tokens, temperature=0.0)
    teacher_answers = teacher_samples(teacher, tokenizer, system_prompt, inputs, greedy, 1)
    datums = student_datums(tokenizer, teacher_answers)
    per_token = []
    for d, values in zip(datums, datum_logprobs(student, datums), strict=True):
        per_token.extend(values[d.loss_fn_inputs["weights"].to_numpy() > 0].tolist())
    student_answers = [
        (
            text,
            student.sample(
                types.ModelInput.from_ints(chat_prompt_tokens(_messages(None, text), tokenizer)),
                1,
                greedy,
            ),
        )
        for text, _ in teacher_answers
    ]
    matches = [
        list(f.result().sequences[0].tokens) == answer
        for (_, f), (_, answer) in zip(student_answers, teacher_answers, strict=True)
    ]
    return Comparison(
        float(np.mean(per_token)) if per_token else float("nan"),
        float(np.mean(matches)) if matches else 0.0,
    )


def distill_prompt(
    service: ServiceClientLike,
    system_prompt: str,
    train_inputs: Sequence[str],
    eval_inputs: Sequence[str],
    *,
    model: str = "tinkerkit/tiny",
    teacher: SamplingClientLike | None = None,
    samples_per_input: int = 2,
    max_tokens: int = 32,
    temperature: float = 0.3,
    epochs: int = 20,
    learning_rate: float = 5e-3,
    rank: int = 32,
    seed: int = 0,
    log_dir: str | Path | None = None,
    overwrite: bool = False,
) -> DistillReport:
    """Distil ``system_prompt`` into a LoRA on ``model``; returns paths and a before/after report.

    A ``log_dir`` that already holds a run is refused (before any sampling) unless
    ``overwrite=True``; without ``log_dir`` a new temporary folder is used.

    Example:
        >>> report = distill_prompt(tk.connect("mock"), "Always answer in French.",
        ...                         ["Hello", "Thanks"], ["Goodbye"])
        >>> report.eval_after.mean_logprob > report.eval_before.mean_logprob
        True
    """
    from tinkerkit.train import sft as tk_sft
    from tinkerkit.train.rundir import inspect_run

    # A log_dir that already holds a run is refused before the teacher samples anything.
    folder = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="tinkerkit-distill-"))
    inspect_run(folder, resume=False, overwrite=overwrite, identity={})
    teacher = teacher or service.create_sampling_client(base_model=model).result()
    tokenizer = tokenizer_of(teacher)
    params = types.SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)
    samples = teacher_samples(
        teacher, tokenizer, system_prompt, train_inputs, params, samples_per_input
    )
    base_student = service.create_sampling_client(base_model=model).result()
    before = compare(base_student, teacher, tokenizer, system_prompt, eval_inputs, max_tokens)
    result = tk_sft.train(
        tk_sft.Config(
            data=student_datums(tokenizer, samples),
            model=model,
            epochs=epochs,
            batch_size=max(1, len(samples)),
            learning_rate=learning_rate,
            rank=rank,
            seed=seed,
            log_dir=folder,
            overwrite=overwrite,
            progress=False,
            save_each_epoch=False,
        ),
        service=service,
    )
    student = service.create_sampling_client(model_path=result.sampler_path).result()
    after = compare(student, teacher, tokenizer, system_prompt, eval_inputs, max_tokens)
    return DistillReport(result.sampler_path, result.state_path, before, after, folder)
