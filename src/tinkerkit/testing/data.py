"""Tiny, correct datums for tests (shifted targets, weights on the completion only)."""

from __future__ import annotations

from typing import Any

from tinker import types

from tinkerkit.data.datum import shifted_datum


def prompt_completion_datum(tokenizer: Any, prompt: str, completion: str) -> types.Datum:
    """A cross-entropy datum that trains on ``completion`` given ``prompt``.

    Example:
        >>> d = prompt_completion_datum(tok, "Q: 2+2? A:", " 4")
        >>> len(d.loss_fn_inputs["weights"].data) == d.model_input.length
        True
    """
    prompt_tokens = tokenizer.encode(prompt, add_special_tokens=False)
    completion_tokens = tokenizer.encode(completion, add_special_tokens=False)
    if not prompt_tokens or not completion_tokens:
        raise ValueError("prompt and completion must both be non-empty")
    weights = [0.0] * len(prompt_tokens) + [1.0] * len(completion_tokens)
    return shifted_datum(prompt_tokens + completion_tokens, weights)
