"""Chat messages to sample from (a prompt, not a training example): checked, from a
file or from Python, with every problem a ``DataError`` naming the file and the field.

    messages = load_messages("prompt.json")   # [{"role": "user", "content": "Hi"}]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tinkerkit.data.loaders import check_data_file, explain_error, field_name, surrogate_field
from tinkerkit.data.schemas import Message
from tinkerkit.data.vision import resolve_image_paths
from tinkerkit.errors import DataError

_MESSAGES = TypeAdapter(list[Message])
_SHAPE = 'give a JSON list of {"role": ..., "content": ...} messages'


def validate_messages(obj: Any, where: str) -> list[dict[str, Any]]:
    """``obj`` as a non-empty list of ``{"role", "content"}`` messages (a
    ``{"messages": [...]}`` record is unwrapped); ``DataError`` naming ``where`` and the
    field otherwise.

    Example:
        >>> validate_messages([{"role": "robot", "content": "hi"}], "prompt")
        DataError: prompt: field '[0].role': unknown role 'robot' (expected system, ...)
    """
    if isinstance(obj, dict) and "messages" in obj:
        obj = obj["messages"]
    if not isinstance(obj, list):
        raise DataError(where, None, None, f"is a JSON {_json_kind(obj)}, not a list: {_SHAPE}")
    if not obj:
        raise DataError(where, None, None, f"is an empty list: {_SHAPE}")
    try:
        messages = _MESSAGES.validate_python(obj)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = field_name(tuple(error["loc"])) or None
        raise DataError(where, None, field, explain_error(dict(error))) from None
    bad = surrogate_field(obj)
    if bad is not None:
        raise DataError(
            where, None, bad, "contains a lone surrogate, which is not text: fix its encoding"
        )
    return [m.as_dict() for m in messages]


def load_messages(path: str | Path) -> list[dict[str, Any]]:
    """The chat messages in a JSON file (a list of messages, or ``{"messages": [...]}``).

    Example:
        >>> load_messages("prompt.json")
        [{'role': 'user', 'content': 'Capital of France?'}]
    """
    file = check_data_file(path, suffixes=None)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataError(str(file), None, None, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(str(file), line, None, "is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(str(file), exc.lineno, None, f"is not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(str(file), None, None, "is nested too deeply to read") from None
    # Image paths are read from the file's folder (as in training data files).
    record = obj if isinstance(obj, dict) else {"messages": obj}
    image = resolve_image_paths(record, file.absolute().parent)
    if image is not None:
        field, problem = image
        raise DataError(str(file), None, field.removeprefix("messages") or None, problem)
    return validate_messages(obj, str(file))


def _json_kind(obj: Any) -> str:
    kinds = {dict: "object", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if obj is None else kinds.get(type(obj), type(obj).__name__)
