"""Robust parsing of a model's reply into question/answer items.

Models asked for "a JSON array" reply with the array inside ```json fences, with a
sentence before or after it, with trailing commas, with one object instead of a list,
with one object per line, or with something else entirely. Rather than guess which of
these it is, the parser removes trailing commas (outside strings) and then decodes every
JSON value it can find in the text, left to right, skipping what does not decode. An
array with one broken item still yields its other items, because decoding restarts at
each ``{`` after a failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tinkerkit.data.notes.errors import QAParseError

__all__ = ["parse_qa_output"]

_DECODER = json.JSONDecoder()
_SPACES = re.compile(r"\s*")
# Objects wrapping the list: {"pairs": [...]}, {"questions": [...]}.
_WRAPPER_KEYS = ("pairs", "qa_pairs", "qa", "questions", "items", "data")


def _drop_trailing_commas(text: str) -> str:
    """Remove commas followed (after whitespace) by ``]`` or ``}``, outside JSON strings."""
    out: list[str] = []
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == ",":
            after = _SPACES.match(text, i + 1).end()  # type: ignore[union-attr]
            if text[after : after + 1] in ("]", "}"):
                continue
        out.append(char)
    return "".join(out)


def _json_values(text: str) -> list[Any]:
    """Every JSON array or object decodable from some ``[`` or ``{`` in ``text``."""
    values: list[Any] = []
    position = 0
    while True:
        starts = [i for i in (text.find("[", position), text.find("{", position)) if i >= 0]
        if not starts:
            return values
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        values.append(value)
        position = end


def _field(item: dict[str, Any], name: str) -> Any:
    for key, value in item.items():
        if isinstance(key, str) and key.strip().casefold() == name:
            return value
    return None


def _items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in (_items(v) if isinstance(v, list) else [v])]
    if isinstance(value, dict):
        for key in _WRAPPER_KEYS:
            inner = _field(value, key)
            if isinstance(inner, list):
                return _items(inner)
        return [value]
    return []


def _excerpt(text: str, limit: int = 40) -> str:
    """The reply's start, quoted, with unprintable characters (noise from a random model,
    control bytes) shown as ``?`` so that reports and retry prompts stay readable."""
    flat = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def parse_qa_output(text: str) -> list[tuple[str, str]]:
    """The (question, answer) string pairs in a model's reply, stripped of whitespace.

    Items without a non-empty string ``"question"`` and ``"answer"`` (keys compared without
    case) are skipped. Raises :class:`QAParseError`, saying what was found, when no item is
    usable.

    Example:
        >>> parse_qa_output('Sure!\\n```json\\n[{"question": "Q?", "answer": "A.",},]\\n```')
        [('Q?', 'A.')]
    """
    if not text.strip():
        raise QAParseError("the reply is empty")
    values = _json_values(_drop_trailing_commas(text))
    if not values:
        raise QAParseError(f"no JSON array or object in the reply (it begins {_excerpt(text)})")
    pairs: list[tuple[str, str]] = []
    skipped = 0
    for item in (x for value in values for x in _items(value)):
        if isinstance(item, dict):
            question, answer = _field(item, "question"), _field(item, "answer")
            if (
                isinstance(question, str)
                and isinstance(answer, str)
                and question.strip()
                and answer.strip()
            ):
                pairs.append((question.strip(), answer.strip()))
                continue
        skipped += 1
    if not pairs:
        raise QAParseError(
            f"the reply holds JSON, but none of its {skipped} item(s) has string "
            '"question" and "answer" fields'
        )
    return pairs
