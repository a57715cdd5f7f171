"""Tiny, correct datums for tests (shifted targets, weights on the completion only)."""

from __future__ import annotations

from typing import Any

from tinker import types

from tinkerkit.data.builders import completion_datum


def prompt_completion_datum(tokenizer: Any, prompt: str, completion: str) -> types.Datum:
    """A cross-entropy datum that trains on ``completion`` given ``prompt``.

    The test-kit spelling of ``tk.data.completion_datum`` (tokenizer first, no options).

    Example:
        >>> d = prompt_completion_datum(tok, "Q: 2+2? A:", " 4")
        >>> len(d.loss_fn_inputs["weights"].data) == d.model_input.length
        True
    """
    return completion_datum(prompt, completion, tokenizer)
