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

Messages may hold images (content as a list of text and image parts, ``data.vision``):
``chat_datum``/``chat_datums`` and ``chat_prompt`` put each one in as an ``ImageChunk``
where the template wrote its ``<|image_pad|>``, never trained.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tinker import types

from tinkerkit.data import limits
from tinkerkit.data.datum import shifted_datum
from tinkerkit.data.schemas import Conversation
from tinkerkit.data.vision import (
    ChatImage,
    chat_images,
    chat_vision,
    cut_left,
    insert_images,
    normalize_content,
    without_images,
)
from tinkerkit.errors import ChatFormatError as ChatFormatError
from tinkerkit.protocols import Tokenizer
from tinkerkit.rules.images import Vision

TrainOn = Literal["last", "all_assistant"]
Messages = Sequence[Mapping[str, Any]] | Conversation


@dataclass(frozen=True)
class RenderedChat:
    tokens: list[int]
    assistant_spans: list[tuple[int, int]]
    """[start, end) token positions written by each assistant turn, in order."""


def as_messages(messages: Messages, *, images: bool = False) -> list[dict[str, Any]]:
    """``messages`` as plain ``{"role", "content"}`` dicts for a chat template (list
    contents normalized, ``data.vision``); ``ChatFormatError`` for image parts unless
    ``images`` (token ids alone cannot carry an image)."""
    if isinstance(messages, Conversation):
        msgs = messages.as_dicts()
    else:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if all(isinstance(m["content"], str) for m in msgs):
        return msgs
    msgs = [
        {"role": m["role"], "content": normalize_content(m["content"], f"messages[{i}].content")}
        for i, m in enumerate(msgs)
    ]
    found = [] if images else chat_images(msgs)
    if found:
        raise ChatFormatError(
            f"{found[0][0]} is an image, which a list of token ids cannot hold: build "
            "datums with tk.data.chat_datum / chat_datums and a sampling prompt with "
            "tk.data.chat_prompt"
        )
    return msgs


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
    tokenizer: Tokenizer, messages: list[dict[str, Any]]
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


def _render_by_prefixes(tokenizer: Tokenizer, messages: list[dict[str, Any]]) -> RenderedChat:
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


def _render_plain(tokenizer: Tokenizer, messages: list[dict[str, Any]]) -> RenderedChat:
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
    return _render(as_messages(messages), tokenizer)


def _render(msgs: list[dict[str, Any]], tokenizer: Tokenizer) -> RenderedChat:
    if not getattr(tokenizer, "chat_template", None):
        return _render_plain(tokenizer, msgs)
    return _render_with_markers(tokenizer, msgs) or _render_by_prefixes(tokenizer, msgs)


def _prompt_tokens(msgs: list[dict[str, Any]], tokenizer: Tokenizer) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        return _render_plain(tokenizer, msgs).tokens + _encode(tokenizer, "Assistant: ")
    return _encode(
        tokenizer, tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    )


def chat_prompt_tokens(messages: Messages, tokenizer: Tokenizer) -> list[int]:
    """Tokens that prompt the model for the next assistant turn (for sampling); a chat
    with images needs ``chat_prompt``."""
    return _prompt_tokens(as_messages(messages), tokenizer)


def chat_prompt(
    messages: Messages, tokenizer: Tokenizer, *, vision: Vision | None = None
) -> types.ModelInput:
    """The ``ModelInput`` that prompts the model for the next assistant turn (for
    sampling): ``chat_prompt_tokens``, with each image part an ``ImageChunk``.

    ``vision`` (``rules.images.Vision``) says how the model reads images; by default the
    tokenizer's ``<|image_pad|>``/``<|vision_start|>``/``<|vision_end|>`` ids with
    Qwen-VL's image processor.

    Example:
        >>> prompt = chat_prompt([{"role": "user", "content": [
        ...     {"type": "image", "image": "cat.png"},
        ...     {"type": "text", "text": "What is this?"}]}], tok)
        >>> [chunk.type for chunk in prompt.chunks]
        ['encoded_text', 'image', 'encoded_text']
    """
    msgs = as_messages(messages, images=True)
    images = _images_of(msgs, tokenizer, vision)
    tokens = _prompt_tokens(msgs, tokenizer)
    if images is None:
        return types.ModelInput.from_ints(tokens)
    return types.ModelInput(chunks=insert_images(tokens, [0.0] * len(tokens), *images).chunks)


def _batch_render_with_markers(
    tokenizer: Tokenizer, conversations: list[list[dict[str, Any]]]
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


def _left_cut(
    length: int, first_trained: int, max_length: int | None, truncate: str, unit: str = "tokens"
) -> int:
    """How many positions to drop from the left to fit ``max_length``; ChatFormatError
    when that is not allowed or would cut into a trained turn."""
    if max_length is None or length <= max_length:
        return 0
    offset = length - max_length
    if truncate != "left" or offset > first_trained:
        raise ChatFormatError(
            f"the conversation renders to {length} {unit}, over max_length={max_length}"
            + (
                "; shorten it, raise max_length, or pass truncate='left'"
                if truncate == "error"
                else "; cutting from the left would cut into a trained turn"
            )
        )
    return offset


def _datum_from_rendered(
    rendered: RenderedChat,
    train_on: TrainOn,
    max_length: int | None,
    truncate: Literal["error", "left"],
    images: tuple[list[ChatImage], Vision] | None = None,
) -> types.Datum:
    spans = rendered.assistant_spans[-1:] if train_on == "last" else rendered.assistant_spans
    if not spans:
        raise ChatFormatError("the conversation has no assistant turn to train on")
    tokens = rendered.tokens
    weights = [0.0] * len(tokens)
    for start, end in spans:
        weights[start:end] = [1.0] * (end - start)
    if images is None:
        offset = _left_cut(len(tokens), spans[0][0], max_length, truncate)
        return shifted_datum(tokens[offset:], weights[offset:])
    # An image takes its expected_tokens positions: max_length counts them, as the
    # service's context does.
    placed = insert_images(tokens, weights, *images)
    first_trained = placed.position(spans[0][0])
    offset = _left_cut(
        len(placed.weights), first_trained, max_length, truncate, "tokens (images included)"
    )
    chunks, kept = cut_left(placed.chunks, placed.weights, offset)
    return shifted_datum(types.ModelInput(chunks=chunks), kept)


def _images_of(
    msgs: list[dict[str, Any]], tokenizer: Tokenizer, vision: Vision | None, where: str = ""
) -> tuple[list[ChatImage], Vision] | None:
    """The chat's images and how the model reads them; None for a text-only chat."""
    found = chat_images(msgs)
    if not found:
        return None
    return found, chat_vision(tokenizer, vision, where + found[0][0])


def _check_size(messages: list[dict[str, Any]], what: str) -> None:
    # Before any tokenizer sees it: a 200 MB chat made the Rust tokenizer panic at ~8 GB.
    # Images are not text (a data: URL would count as megabytes of it).
    limit = limits.record_limit(None)
    size = limits.text_bytes(without_images(messages))
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
    vision: Vision | None = None,
) -> list[types.Datum]:
    """``chat_datum`` for many conversations, batched where the tokenizer allows it.

    Example:
        >>> datums = chat_datums(tk.data.load_chat_jsonl("chats.jsonl"), tok)
    """
    _check_train_on(train_on)
    convs = [as_messages(c, images=True) for c in conversations]
    images = []
    for index, msgs in enumerate(convs):
        if not any(m["role"] == "assistant" for m in msgs):
            raise ChatFormatError(f"conversation {index} has no assistant turn to train on")
        _check_size(msgs, f"conversation {index}")
        images.append(_images_of(msgs, tokenizer, vision, f"conversation {index}: "))
    rendered = (
        _batch_render_with_markers(tokenizer, convs)
        if getattr(tokenizer, "chat_template", None)
        else None
    )
    if rendered is None:
        rendered = [_render(msgs, tokenizer) for msgs in convs]
    datums = []
    for index, (chat, found) in enumerate(zip(rendered, images, strict=True)):
        if found is None:
            datums.append(_datum_from_rendered(chat, train_on, max_length, truncate))
            continue
        try:
            datums.append(_datum_from_rendered(chat, train_on, max_length, truncate, found))
        except ChatFormatError as exc:
            raise ChatFormatError(f"conversation {index}: {exc}") from None
    return datums


def chat_datum(
    messages: Messages,
    tokenizer: Tokenizer,
    *,
    train_on: TrainOn = "last",
    max_length: int | None = None,
    truncate: Literal["error", "left"] = "error",
    vision: Vision | None = None,
) -> types.Datum:
    """A cross-entropy datum that trains on the last (or every) assistant turn.

    ``max_length`` counts the rendered tokens. Over it, ``truncate="error"`` (default)
    raises; ``"left"`` drops tokens from the start of the conversation, as long as the
    trained turn(s) survive whole. Never silent.

    A message's content may be a list of ``{"type": "text", "text": ...}`` and
    ``{"type": "image", "image": PATH_URL_BYTES_OR_PIL}`` parts: each image becomes an
    ``ImageChunk`` of ``Processor.tokens(height, width)`` positions (counted in
    ``max_length``), with target 0 and weight 0, as tinker-cookbook builds it. ``vision``
    overrides how the model reads images (default: the tokenizer's vision token ids and
    Qwen-VL's processor); a tokenizer without ``<|image_pad|>`` refuses images.

    Example:
        >>> d = chat_datum([{"role": "user", "content": "2+2?"},
        ...                 {"role": "assistant", "content": "4"}], tok)
        >>> show_datum(d, tok)   # from tinkerkit.data
    """
    _check_train_on(train_on)
    msgs = as_messages(messages, images=True)
    if not msgs or not any(m["role"] == "assistant" for m in msgs):
        raise ChatFormatError("the conversation has no assistant turn to train on")
    _check_size(msgs, "the conversation")
    images = _images_of(msgs, tokenizer, vision)
    return _datum_from_rendered(_render(msgs, tokenizer), train_on, max_length, truncate, images)
