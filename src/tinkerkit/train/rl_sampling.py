"""Sample a step's groups: every request in flight at once, each seeded per (seed, step, prompt).

The guide samples one prompt, waits, scores, and only then asks for the next one: a
step of N prompts costs N round trips. Here all N ``sample`` requests are submitted
before the first ``.result()``, so a step costs about one round trip. Each request is
seeded from ``(seed, step, prompt index)``, so a resumed run draws exactly the samples
the uninterrupted one drew.

    groups = sample_groups(sampler, batch, tokenizer, group_size=4, step=1, seed=0,
                           max_tokens=32, temperature=1.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinker import types


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
    sampler: Any,
    prompts: Sequence[tuple[int, list[int]]],
    tokenizer: Any,
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


def base_logprobs(base_sampler: Any, samples: Sequence[Sample]) -> list[list[float]]:
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
