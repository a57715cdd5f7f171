"""Chat conversations → token ids with exact assistant spans → datums.

The model should see the format it was trained on, so chats are rendered with the
tokenizer's own chat template. Which tokens the assistant wrote is found exactly:

1. templates with ``{% generation %}`` markers: the tokenizer's assistant mask;
2. other templates (Llama-3, Qwen, ...): each assistant turn's span is the difference
   between the conversation rendered up to that turn's header and up to its end,
   checked token by token against the full rendering (no re-tokenisation drift), with
   trailing whitespace after the end-of-turn token left out;
3. tokenizers without a template (base models): a plain ``User: ...`` /
   ``Assistant: ...`` format built segment by segment, ending each assistant turn with
   the EOS token.

The trained span of a turn is its content plus its end-of-turn token, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tinker import types

from tinkerkit.data import limits
from tinkerkit.data.datum import shifted_datum
from tinkerkit.data.schemas import Conversation
from tinkerkit.errors import ChatFormatError as ChatFormatError
from tinkerkit.protocols import Tokenizer

TrainOn = Literal["last", "all_assistant"]
Messages = Sequence[Mapping[str, str]] | Conversation


@dataclass(frozen=True)
class RenderedChat:
    tokens: list[int]
    assistant_spans: list[tuple[int, int]]
    """[start, end) token positions written by each assistant turn, in order."""


def as_messages(messages: Messages) -> list[dict[str, str]]:
    if isinstance(messages, Conversation):
        return messages.as_dicts()
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _spans_from_mask(mask: Sequence[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = None
    for position, flag in enumerate([*mask, 0]):
        if flag and start is None:
            start = position
        elif not flag and start is not None:
            spans.append((start, position))
            start = None
    return spans


def _render_with_markers(
    tokenizer: Tokenizer, messages: list[dict[str, str]]
) -> RenderedChat | None:
    template = getattr(tokenizer, "chat_template", None) or ""
    if "{% generation %}" not in template and "{%- generation %}" not in template:
        return None
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    spans = _spans_from_mask(out["assistant_masks"])
    return RenderedChat(list(out["input_ids"]), spans) if spans else None


def _trim_trailing_whitespace(tokenizer: Tokenizer, tokens: list[int], start: int, end: int) -> int:
    while end > start and not tokenizer.decode(tokens[end - 1 : end]).strip():
        end -= 1
    return end


def _render_by_prefixes(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> RenderedChat:
    render = tokenizer.apply_chat_template
    full_text = render(messages, tokenize=False)
    tokens = _encode(tokenizer, full_text)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head_text = render(messages[:k], tokenize=False, add_generation_prompt=True)
        turn_text = render(messages[: k + 1], tokenize=False)
        if not (full_text.startswith(head_text) and full_text.startswith(turn_text)):
            raise ChatFormatError(
                f"the chat template renders message {k} differently once later turns follow "
                "(it rewrites earlier turns), so its tokens cannot be located exactly; train "
                "on the last turn of shorter conversations instead"
            )
        head, turn = _encode(tokenizer, head_text), _encode(tokenizer, turn_text)
        if tokens[: len(turn)] != turn or turn[: len(head)] != head:
            raise ChatFormatError(
                f"message {k}: tokenizing the conversation in pieces gives different tokens "
                "at the turn boundary than tokenizing it whole"
            )
        end = _trim_trailing_whitespace(tokenizer, tokens, len(head), len(turn))
        spans.append((len(head), end))
    return RenderedChat(tokens, spans)


def _render_plain(tokenizer: Tokenizer, messages: list[dict[str, str]]) -> RenderedChat:
    tokens: list[int] = []
    spans = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for message in messages:
        role = message["role"].capitalize()
        if message["role"] == "assistant":
            tokens += _encode(tokenizer, f"{role}: ")
            start = len(tokens)
            tokens += _encode(tokenizer, message["content"]) + eos
            spans.append((start, len(tokens)))
            tokens += _encode(tokenizer, "\n\n")
        else:
            tokens += _encode(tokenizer, f"{role}: {message['content']}\n\n")
    return RenderedChat(tokens, spans)


def render_chat(messages: Messages, tokenizer: Tokenizer) -> RenderedChat:
    """Token ids of a conversation and the exact spans its assistant turns wrote.

    Example:
        >>> chat = render_chat([{"role": "user", "content": "hi"},
        ...                     {"role": "assistant", "content": "yo"}], tok)
        >>> tok.decode(chat.tokens[slice(*chat.assistant_spans[-1])])
        'yo<|im_end|>'
    """
    msgs = as_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        return _render_plain(tokenizer, msgs)
    return _render_with_markers(tokenizer, msgs) or _render_by_prefixes(tokenizer, msgs)


def chat_prompt_tokens(messages: Messages, tokenizer: Tokenizer) -> list[int]:
    """Tokens that prompt the model for the next assistant turn (for sampling)."""
    msgs = as_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        return _render_plain(tokenizer, msgs).tokens + _encode(tokenizer, "Assistant: ")
    return _encode(
        tokenizer, tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    )


def _batch_render_with_markers(
    tokenizer: Tokenizer, conversations: list[list[dict[str, str]]]
) -> list[RenderedChat] | None:
    """Render many chats at once: one jinja pass each, one batched (Rust) encode for all,
    and assistant spans from character offsets with ``searchsorted`` instead of a Python
    loop per token. ``None`` when the template has no generation markers."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if "generation %}" not in template:
        return None
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except ImportError:  # pragma: no cover - older transformers
        return None
    rendered: Any = render_jinja_template(
        conversations=conversations,
        chat_template=template,
        return_assistant_tokens_mask=True,
        **getattr(tokenizer, "special_tokens_map", {}),
    )
    texts, char_spans = rendered  # (texts, generation char spans); its annotation says str
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    # The Rust tokenizer directly: transformers' per-encoding conversion to Python lists
    # would cost as much as the tokenization itself.
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    out = []
    for encoding, spans in zip(encodings, char_spans, strict=True):
        ids = encoding.ids
        token_spans = []
        for a, b in spans:
            # A token belongs to a span when its first character does (HF's rule).
            start, end = encoding.char_to_token(a), encoding.char_to_token(b)
            if start is None:
                return None  # characters without tokens: let the exact slow path decide
            if encoding.token_to_chars(start)[0] < a:
                start += 1
            if end is None:
                end = len(ids)
            elif encoding.token_to_chars(end)[0] < b:
                end += 1
            token_spans.append((start, end))
        out.append(RenderedChat(ids, [t for t in token_spans if t[1] > t[0]]))
    return out


def _datum_from_rendered(
    rendered: RenderedChat,
    train_on: TrainOn,
    max_length: int | None,
    truncate: Literal["error", "left"],
) -> types.Datum:
    spans = rendered.assistant_spans[-1:] if train_on == "last" else rendered.assistant_spans
    if not spans:
        raise ChatFormatError("the conversation has no assistant turn to train on")
    tokens = rendered.tokens
    offset = 0
    if max_length is not None and len(tokens) > max_length:
        offset = len(tokens) - max_length
        if truncate != "left" or offset > spans[0][0]:
            raise ChatFormatError(
                f"the conversation renders to {len(tokens)} tokens, over max_length={max_length}"
                + (
                    "; shorten it, raise max_length, or pass truncate='left'"
                    if truncate == "error"
                    else "; cutting from the left would cut into a trained turn"
                )
            )
    weights = [0.0] * len(tokens)
    for start, end in spans:
        weights[start:end] = [1.0] * (end - start)
    return shifted_datum(tokens[offset:], weights[offset:])


def _check_size(messages: list[dict[str, str]], what: str) -> None:
    # Before any tokenizer sees it: a 200 MB chat made the Rust tokenizer panic at ~8 GB.
    limit = limits.record_limit(None)
    size = limits.text_bytes(messages)
    if size > limit:
        raise ChatFormatError(limits.too_large(size, limit, f"{what}'s text"))


def _check_train_on(train_on: str) -> None:
    if train_on not in ("last", "all_assistant"):
        raise ChatFormatError(f"train_on must be 'last' or 'all_assistant', got {train_on!r}")


def chat_datums(
    conversations: Sequence[Messages],
    tokenizer: Tokenizer,
    *,
    train_on: TrainOn = "last",
    max_length: int | None = None,
    truncate: Literal["error", "left"] = "error",
) -> list[types.Datum]:
    """``chat_datum`` for many conversations, batched where the tokenizer allows it.

    Example:
        >>> datums = chat_datums(tk.data.load_chat_jsonl("chats.jsonl"), tok)
    """
    _check_train_on(train_on)
    convs = [as_messages(c) for c in conversations]
    for index, msgs in enumerate(convs):
        if not any(m["role"] == "assistant" for m in msgs):
            raise ChatFormatError(f"conversation {index} has no assistant turn to train on")
        _check_size(msgs, f"conversation {index}")
    rendered = (
        _batch_render_with_markers(tokenizer, convs)
        if getattr(tokenizer, "chat_template", None)
        else None
    )
    if rendered is None:
        rendered = [render_chat(msgs, tokenizer) for msgs in convs]
    return [_datum_from_rendered(r, train_on, max_length, truncate) for r in rendered]


def chat_datum(
    messages: Messages,
    tokenizer: Tokenizer,
    *,
    train_on: TrainOn = "last",
    max_length: int | None = None,
    truncate: Literal["error", "left"] = "error",
) -> types.Datum:
    """A cross-entropy datum that trains on the last (or every) assistant turn.

    ``max_length`` counts the rendered tokens. Over it, ``truncate="error"`` (default)
    raises; ``"left"`` drops tokens from the start of the conversation, as long as the
    trained turn(s) survive whole. Never silent.

    Example:
        >>> d = chat_datum([{"role": "user", "content": "2+2?"},
        ...                 {"role": "assistant", "content": "4"}], tok)
        >>> show_datum(d, tok)   # from tinkerkit.data
    """
    _check_train_on(train_on)
    msgs = as_messages(messages)
    if not msgs or not any(m["role"] == "assistant" for m in msgs):
        raise ChatFormatError("the conversation has no assistant turn to train on")
    _check_size(msgs, "the conversation")
    return _datum_from_rendered(render_chat(msgs, tokenizer), train_on, max_length, truncate)
