"""RL prompts in, samples out: the user's prompts → chat-template tokens → a step's groups.

Prompts may be a JSONL/JSON/CSV path, strings, dicts or ``RLPrompt``s; a string is one
user message, and the reward sees the prompt as the user wrote it (the string, or the
messages) plus the prompt's extra fields (``answer=...`` and so on).

The guide samples one prompt, waits, scores, and only then asks for the next one: a
step of N prompts costs N round trips. Here all N ``sample`` requests are submitted
before the first ``.result()``, so a step costs about one round trip. Each request is
seeded from ``(seed, step, prompt index)``, so a resumed run draws exactly the samples
the uninterrupted one drew.

    prompts = load("prompts.jsonl")
    groups = sample_groups(sampler, [(0, render(prompts, tokenizer)[0])], tokenizer,
                           group_size=4, step=1, seed=0, max_tokens=32, temperature=1.0)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tinker import types

from tinkerkit.data.chat import chat_prompt_tokens
from tinkerkit.data.loaders import load_rl_prompts
from tinkerkit.data.schemas import RLPrompt
from tinkerkit.data.sources import coerce_records, is_url
from tinkerkit.errors import DataError
from tinkerkit.protocols import SamplingClientLike, Tokenizer

PromptSource = str | Path | Sequence[str | dict[str, Any] | RLPrompt]


def load(source: PromptSource) -> list[RLPrompt]:
    """``RLPrompt``s from a JSONL/JSON/CSV path or an in-memory list; never empty.

    Example:
        >>> load(["What is 2+2?", {"prompt": "3+4?", "answer": "7"}])[1].fields
        {'answer': '7'}
    """
    return coerce_records(
        source, from_file=_from_file, from_item=_one, empty="has no prompts", label="prompts"
    )


def _from_file(source: str | Path) -> list[RLPrompt]:
    if not is_url(source) and not Path(source).exists():  # a URL's loader names what is missing
        raise DataError(str(source), None, None, "no such file; give a JSONL file of prompts")
    prompts = load_rl_prompts(source)
    if not prompts:
        raise DataError(str(source), None, None, "has no prompts")
    return prompts


def _one(item: Any, where: str) -> RLPrompt:
    if isinstance(item, RLPrompt):
        return item
    obj = {"prompt": item} if isinstance(item, str) else item
    if not isinstance(obj, dict):
        raise DataError(
            where,
            None,
            None,
            f"unsupported type {type(item).__name__}; use a string, a dict or an RLPrompt",
        )
    try:
        return RLPrompt.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise DataError(where, None, field, str(first["msg"])) from None


def messages(prompt: RLPrompt) -> list[dict[str, str]]:
    """The chat the model is prompted with."""
    if prompt.messages is not None:
        return [m.model_dump() for m in prompt.messages]
    return [{"role": "user", "content": str(prompt.prompt)}]


def for_reward(prompt: RLPrompt) -> str | list[dict[str, str]]:
    """What a reward function receives as ``prompt``: the string, or the messages."""
    return prompt.prompt if prompt.prompt is not None else messages(prompt)


def label(prompt: RLPrompt, index: int, width: int = 60) -> str:
    """A short name for log lines: ``prompt #3 'What is 2+2?'``."""
    text = prompt.prompt if prompt.prompt is not None else messages(prompt)[-1]["content"]
    text = " ".join(text.split())
    if len(text) > width:
        text = text[: width - 3] + "..."
    return f"prompt #{index} {text!r}"


def render(prompts: Sequence[RLPrompt], tokenizer: Tokenizer) -> list[list[int]]:
    """Prompt tokens through the chat template, exactly as sampled and trained."""
    return [chat_prompt_tokens(messages(p), tokenizer) for p in prompts]


def fingerprint(prompts: Sequence[RLPrompt]) -> str:
    """A hash of the prompts and their fields: resuming on other prompts is refused."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps(p.model_dump(), sort_keys=True, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


@dataclass
class Sample:
    """One sampled completion: exactly the sampler's tokens and logprobs, and its text."""

    prompt_index: int
    prompt_tokens: list[int]
    tokens: list[int]
    logprobs: list[float]
    text: str
    reward: float | None = None


def sampling_seed(seed: int, step: int, prompt_index: int) -> int:
    """A stable 31-bit seed for one sampling request (not Python's salted ``hash``).

    Example:
        >>> sampling_seed(0, 1, 3) == sampling_seed(0, 1, 3) != sampling_seed(0, 2, 3)
        True
    """
    digest = hashlib.blake2b(f"{seed}:{step}:{prompt_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def sample_groups(
    sampler: SamplingClientLike,
    prompts: Sequence[tuple[int, list[int]]],
    tokenizer: Tokenizer,
    *,
    group_size: int,
    step: int,
    seed: int,
    max_tokens: int,
    temperature: float,
    stop: Sequence[str] | Sequence[int] | None = None,
) -> list[list[Sample]]:
    """``group_size`` samples of each ``(prompt_index, prompt_tokens)``, one group per prompt.

    Example:
        >>> groups = sample_groups(sampler, [(0, tokens)], tok, group_size=4, step=1,
        ...                        seed=0, max_tokens=16, temperature=1.0)
        >>> len(groups[0])
        4
    """
    futures = [
        sampler.sample(
            types.ModelInput.from_ints(tokens),
            group_size,
            types.SamplingParams(
                max_tokens=max_tokens,
                temperature=temperature,
                seed=sampling_seed(seed, step, index),
                stop=stop,
            ),
        )
        for index, tokens in prompts
    ]
    groups = []
    for (index, tokens), future in zip(prompts, futures, strict=True):
        response = future.result()
        groups.append(
            [
                Sample(
                    prompt_index=index,
                    prompt_tokens=tokens,
                    tokens=[int(t) for t in seq.tokens],
                    logprobs=[float(x) for x in (seq.logprobs or [])],
                    text=tokenizer.decode(list(seq.tokens), skip_special_tokens=True),
                )
                for seq in response.sequences
            ]
        )
    return groups


def base_logprobs(base_sampler: SamplingClientLike, samples: Sequence[Sample]) -> list[list[float]]:
    """Per-token logprobs of each sample's completion under ``base_sampler`` (all at once).

    Example:
        >>> base = service.create_sampling_client(base_model="tinkerkit/tiny").result()
        >>> base_logprobs(base, samples)[0][:2]
        [-5.3, -5.6]
    """
    # prompt_logprobs_last_n: only the completion is scored, and the service can serve
    # the shared prompt prefix from its cache.
    futures = [
        base_sampler.compute_logprobs(
            types.ModelInput.from_ints(s.prompt_tokens + s.tokens),
            prompt_logprobs_last_n=len(s.tokens),
        )
        for s in samples
    ]
    out = []
    for sample, future in zip(samples, futures, strict=True):
        values = future.result()
        tail = values[len(values) - len(sample.tokens) :]
        out.append([float(v) if v is not None else 0.0 for v in tail])
    return out


def transcripts(
    step: int, groups: Sequence[Sequence[Sample]], prompts: Sequence[RLPrompt], limit: int
) -> list[dict[str, Any]]:
    """``samples.jsonl`` rows: one sample from each of the first ``limit`` groups (the
    spread across prompts), with its prompt as the reward saw it and its reward."""
    return [
        {
            "step": step,
            "prompt": for_reward(prompts[s.prompt_index]),
            "completion": s.text,
            "reward": s.reward,
        }
        for s in [group[0] for group in groups if group][:limit]
    ]
