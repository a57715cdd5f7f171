"""Format and shape rewards, and a way to add rewards together.

reward = combine(math_reward, format_reward(r"\\\\boxed\\{"), length_penalty(400))
tk.rl.train(tk.rl.Config(prompts=..., reward=reward))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Reward = Callable[..., float]


def format_reward(
    pattern: str | re.Pattern[str], *, match: float = 1.0, miss: float = 0.0, full: bool = False
) -> Reward:
    """A reward of ``match`` when the completion matches ``pattern`` (``re.search``), else ``miss``.

    ``full=True`` requires the whole (stripped) completion to match.

    Example:
        >>> format_reward(r"^\\d+$", full=True)("2+2?", " 4 ")
        1.0
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern

    def reward(prompt: Any, completion: str, **fields: Any) -> float:
        text = completion.strip() if full else completion
        found = regex.fullmatch(text) if full else regex.search(text)
        return match if found else miss

    reward.__qualname__ = f"format_reward({regex.pattern!r})"
    return reward


def length_penalty(max_chars: int, *, per_char: float = 0.001) -> Reward:
    """``-per_char`` for every character beyond ``max_chars`` (0 within the budget).

    Example:
        >>> length_penalty(5, per_char=0.1)("q", "1234567")
        -0.2
    """

    def reward(prompt: Any, completion: str, **fields: Any) -> float:
        return -per_char * max(0, len(completion) - max_chars)

    reward.__qualname__ = f"length_penalty({max_chars})"
    return reward


def char_fraction(chars: str) -> Reward:
    """The fraction of the completion's characters that are in ``chars`` (0 when empty).

    A toy reward that any model can climb: ``char_fraction("a")`` rewards saying "aaaa".

    Example:
        >>> char_fraction("a")("q", "abca")
        0.5
    """
    wanted = set(chars)

    def reward(prompt: Any, completion: str, **fields: Any) -> float:
        if not completion:
            return 0.0
        return sum(c in wanted for c in completion) / len(completion)

    reward.__qualname__ = f"char_fraction({chars!r})"
    return reward


def combine(*rewards: Reward, weights: Sequence[float] | None = None) -> Reward:
    """The weighted sum of sync rewards; each gets the same prompt, completion and fields.

    Example:
        >>> combine(char_fraction("a"), length_penalty(2, per_char=0.5))("q", "aab")
        0.16666666666666663
    """
    factors = list(weights) if weights is not None else [1.0] * len(rewards)
    if len(factors) != len(rewards):
        raise ValueError(f"{len(rewards)} rewards but {len(factors)} weights")

    def reward(prompt: Any, completion: str, **fields: Any) -> float:
        return sum(
            w * float(r(prompt, completion, **fields))
            for w, r in zip(factors, rewards, strict=True)
        )

    reward.__qualname__ = (
        "combine(" + ", ".join(getattr(r, "__qualname__", "?") for r in rewards) + ")"
    )
    return reward
