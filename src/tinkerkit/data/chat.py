"""Chat conversations → datums, rendered with the model's own chat template.

The shift is handled once here: for rendered tokens ``S``, ``model_input = S[:-1]``,
``target_tokens = S[1:]``, and ``weights[i]`` is 1 exactly where ``S[i + 1]`` was
written by the assistant turn(s) being trained on (its content and end-of-turn token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tinker import types

from tinkerkit.data.datum import shifted_datum
from tinkerkit.errors import TinkerkitError

TrainOn = Literal["last", "all_assistant"]


class ChatFormatError(TinkerkitError, ValueError):
    """A conversation that cannot become a training datum as asked."""


def _assistant_spans(
    tokenizer: Any, messages: Sequence[Mapping[str, str]]
) -> tuple[list[int], list[list[int]]]:
    """Rendered token ids, and for each assistant turn the positions it wrote."""
    rendered = tokenizer.apply_chat_template(
        list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(rendered["input_ids"])
    mask = list(rendered.get("assistant_masks") or [])
    if not any(mask):
        raise ChatFormatError(
            "the tokenizer's chat template does not mark assistant turns ({% generation %}), "
            "so the trained tokens cannot be located exactly. Use tinkerkit's built-in models "
            "or a template with generation markers."
        )
    spans: list[list[int]] = []
    previous = 0
    for position, flag in enumerate(mask):
        if flag and not previous:
            spans.append([])
        if flag:
            spans[-1].append(position)
        previous = flag
    return ids, spans


def chat_datum(
    messages: Sequence[Mapping[str, str]],
    tokenizer: Any,
    *,
    train_on: TrainOn = "last",
    max_length: int | None = None,
) -> types.Datum:
    """A cross-entropy datum that trains on the last (or every) assistant turn.

    Example:
        >>> d = chat_datum([{"role": "user", "content": "2+2?"},
        ...                 {"role": "assistant", "content": "4"}], tok)
        >>> tok.decode([t for t, w in zip(d.loss_fn_inputs["target_tokens"].data,
        ...                               d.loss_fn_inputs["weights"].data) if w])
        '4<|im_end|>'
    """
    if not messages or not any(m.get("role") == "assistant" for m in messages):
        raise ChatFormatError("the conversation has no assistant turn to train on")
    if train_on not in ("last", "all_assistant"):
        raise ChatFormatError(f"train_on must be 'last' or 'all_assistant', got {train_on!r}")
    ids, spans = _assistant_spans(tokenizer, messages)
    trained = spans[-1:] if train_on == "last" else spans
    if max_length is not None and len(ids) > max_length:
        raise ChatFormatError(
            f"the conversation renders to {len(ids)} tokens, over max_length={max_length}; "
            "shorten it or raise max_length"
        )
    token_weights = [0.0] * len(ids)
    for span in trained:
        for position in span:
            token_weights[position] = 1.0
    return shifted_datum(ids, token_weights)
