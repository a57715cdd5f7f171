"""Strings and chat messages in, text out: the ergonomic layer over ``sample``.

The guide's ``sampling_client.sample(prompt="...")`` and ``result.completions[0].text``
do not exist in the SDK; this is what they wanted, on any backend::

    for c in tk.sample_text(sampler, "What is Python?", max_tokens=64):
        print(c.text, c.tokens, c.logprobs)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tinker import types

from tinkerkit.data.chat import chat_prompt
from tinkerkit.data.loaders import surrogate_field
from tinkerkit.data.messages import validate_messages
from tinkerkit.errors import DataError
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import SamplingClientLike, Tokenizer


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: list[int]
    logprobs: list[float]
    stop_reason: str


def sample_text(
    sampling_client: SamplingClientLike,
    prompt: str | Sequence[Mapping[str, Any]],
    *,
    max_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = -1,
    stop: str | Sequence[str] | None = None,
    seed: int | None = None,
    num_samples: int = 1,
    chat: bool = True,
    tokenizer: Tokenizer | None = None,
) -> list[Completion]:
    """Sample completions of a string or a chat; returns ``Completion``s with ``.text``.

    A string is sent as a user message through the chat template (``chat=True``) or as
    raw text (``chat=False``); a list of messages always uses the chat template (their
    image parts, for a vision model, as ``tk.data.chat_prompt`` sends them).
    ``tokenizer`` (default: ``tinkerkit.models.tokenizer_of(sampling_client)``) is for clients that
    cannot fetch one themselves, e.g. the SDK's client against ``tinkerkit serve`` with
    the Hugging Face hub offline. Malformed messages raise ``DataError`` naming the field.

    Example:
        >>> tk.sample_text(sampler, "Capital of France?", temperature=0.0)[0].text
        'Paris.'
    """
    if isinstance(prompt, str):
        if surrogate_field(prompt) is not None:
            raise DataError(
                "prompt",
                None,
                None,
                "contains a lone surrogate, which is not text: fix its encoding",
            )
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = validate_messages(prompt, "prompt")
    if tokenizer is None:
        tokenizer = tokenizer_of(sampling_client)
    if isinstance(prompt, str) and not chat:
        tokens = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        model_input = types.ModelInput.from_ints(tokens)
    else:
        model_input = chat_prompt(messages, tokenizer)
    params = types.SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=stop,
        seed=seed,
    )
    response = sampling_client.sample(model_input, num_samples, params).result()
    return [
        Completion(
            text=tokenizer.decode(seq.tokens, skip_special_tokens=True).strip(),
            tokens=list(seq.tokens),
            logprobs=list(seq.logprobs or []),
            stop_reason=seq.stop_reason,
        )
        for seq in response.sequences
    ]
