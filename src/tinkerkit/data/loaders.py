"""Load training records from JSONL, JSON, CSV (or a local Hugging Face dataset).

Every problem becomes a ``DataError`` naming the file, the line and the field: bad
JSON, missing or mistyped fields, unknown roles, empty conversations, no assistant
turn, bytes that are not UTF-8. ``errors`` chooses what happens then:

- ``"raise"`` (default): stop at the first bad record;
- ``"collect"``: read everything, then raise one ``DataError`` listing every bad line;
- ``"skip"``: drop bad records and log how many were dropped.

Loading only reads; nothing is ever written.

    chats = load_chat_jsonl("chats.jsonl")                  # list[Conversation]
    for pair in iter_records("big.jsonl", PromptCompletion):  # streaming
        ...
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tinkerkit.data.schemas import Conversation, PreferencePair, PromptCompletion, RLPrompt
from tinkerkit.errors import DataError

logger = logging.getLogger("tinkerkit")

Errors = Literal["raise", "collect", "skip"]
R = TypeVar("R", bound=BaseModel)
_Problem = tuple[int | None, str | None, str]


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is missing"
    if kind == "literal_error" and error["loc"][-1] == "role":
        return f"unknown role {error.get('input')!r} (expected system, user, assistant or tool)"
    if kind == "too_short" and error["loc"][-1] == "messages":
        return "is empty: a conversation needs at least one message"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def _raw_records(path: Path) -> Iterator[tuple[int | None, Any, str | None]]:
    """(line, parsed object or None, problem) for each record of the file."""
    suffix = path.suffix.lower()
    data = path.read_bytes() if suffix in (".json", ".csv") else None
    if suffix in (".jsonl", ".ndjson", ""):
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield number, None, f"is not valid UTF-8 (byte {exc.start} of the line)"
                    continue
                if not text.strip():
                    continue
                try:
                    yield number, json.loads(text), None
                except json.JSONDecodeError as exc:
                    yield number, None, f"is not valid JSON ({exc.msg}, column {exc.colno})"
        return
    assert data is not None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        yield line, None, "is not valid UTF-8"
        return
    if suffix == ".json":
        yield from _json_array(text)
    elif suffix == ".csv":
        yield from _csv_rows(text)


def _json_array(text: str) -> Iterator[tuple[int | None, Any, str | None]]:
    """Elements of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, f"is not valid JSON ({exc.msg})"
            return
        yield 1, obj, None if isinstance(obj, dict) else "must be a JSON array of records"
        return
    pos += 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield exc.lineno, None, f"is not valid JSON ({exc.msg})"
            return
        yield line, obj, None


def _csv_rows(text: str) -> Iterator[tuple[int | None, Any, str | None]]:
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        # An empty cell is a missing value, not an empty string.
        record: dict[str, Any] = {k: v for k, v in row.items() if v not in ("", None)}
        for key in ("messages", "chosen", "rejected"):
            value = record.get(key)
            if isinstance(value, str) and value.lstrip().startswith("["):
                try:
                    record[key] = json.loads(value)
                except json.JSONDecodeError as exc:
                    yield reader.line_num, None, f"column '{key}' is not valid JSON ({exc.msg})"
                    break
        else:
            yield reader.line_num, record, None


def _validate(schema: type[R], obj: Any, line: int | None) -> tuple[R | None, list[_Problem]]:
    if not isinstance(obj, dict):
        return None, [(line, None, f"must be a JSON object, got {type(obj).__name__}")]
    try:
        return schema.model_validate(obj), []
    except ValidationError as exc:
        problems: list[_Problem] = []
        for error in exc.errors():
            field = _field_name(tuple(error["loc"])) or None
            problems.append((line, field, _explain(dict(error))))
        return None, problems[:1]


def validate_record(schema: type[R], obj: Any, where: str) -> R:
    """One in-memory record, validated like a file's; ``DataError`` naming ``where`` otherwise.

    Example:
        >>> validate_record(Conversation, {"messages": []}, "data[3]")
        DataError: data[3]: field 'messages': is empty: a conversation needs at least one message
    """
    record, problems = _validate(schema, obj, None)
    if record is None:
        _, field, message = problems[0]
        raise DataError(where, None, field, message)
    return record


def iter_records(path: str | Path, schema: type[R], *, errors: Errors = "raise") -> Iterator[R]:
    """Stream validated records from ``path`` (``.jsonl``, ``.json`` or ``.csv``).

    Example:
        >>> for chat in iter_records("chats.jsonl", Conversation):
        ...     print(len(chat.messages))
    """
    if errors not in ("raise", "collect", "skip"):
        raise ValueError(f"errors must be 'raise', 'collect' or 'skip', got {errors!r}")
    file = Path(path)
    if not file.is_file():
        raise DataError(str(file), None, None, "no such file")
    if file.suffix.lower() not in (".jsonl", ".ndjson", ".json", ".csv", ""):
        raise DataError(str(file), None, None, "unsupported format: use .jsonl, .json or .csv")
    problems: list[_Problem] = []
    count = 0
    for line, obj, problem in _raw_records(file):
        found: list[_Problem]
        record = None
        if problem is not None:
            found = [(line, None, problem)]
        else:
            record, found = _validate(schema, obj, line)
        if found:
            if errors == "raise":
                ln, field, message = found[0]
                raise DataError(str(file), ln, field, message)
            problems.extend(found)
            continue
        count += 1
        assert record is not None
        yield record
    if problems and errors == "collect":
        ln, field, message = problems[0]
        raise DataError(str(file), ln, field, message, problems=problems)
    if problems:
        logger.warning("%s: skipped %d bad records (kept %d)", file, len(problems), count)
    if count == 0 and not problems:
        raise DataError(str(file), None, None, "contains no records")


def load_records(path: str | Path, schema: type[R], *, errors: Errors = "raise") -> list[R]:
    """All validated records of ``path`` as a list (see ``iter_records``)."""
    return list(iter_records(path, schema, errors=errors))


def load_chat_jsonl(path: str | Path, *, errors: Errors = "raise") -> list[Conversation]:
    """Chats (``{"messages": [...]}`` per line) from JSONL, JSON or CSV.

    Example:
        >>> chats = load_chat_jsonl("chats.jsonl")
        >>> chats[0].messages[-1].role
        'assistant'
    """
    return load_records(path, Conversation, errors=errors)


def load_prompt_completions(
    path: str | Path, *, errors: Errors = "raise"
) -> list[PromptCompletion]:
    """``{"prompt", "completion"}`` records."""
    return load_records(path, PromptCompletion, errors=errors)


def load_preference_pairs(path: str | Path, *, errors: Errors = "raise") -> list[PreferencePair]:
    """``{"prompt", "chosen", "rejected"}`` records (or two chats)."""
    return load_records(path, PreferencePair, errors=errors)


def load_rl_prompts(path: str | Path, *, errors: Errors = "raise") -> list[RLPrompt]:
    """``{"prompt"}`` or ``{"messages"}`` records with any extra fields for rewards."""
    return load_records(path, RLPrompt, errors=errors)


def load_hf_dataset(
    name_or_path: str, schema: type[R], *, split: str = "train", errors: Errors = "raise"
) -> list[R]:
    """Records from a Hugging Face dataset already on disk (``pip install datasets``).

    Nothing is downloaded: a hub name only works if it is in the local cache.
    """
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("loading Hugging Face datasets needs: pip install datasets") from exc
    if Path(name_or_path).is_dir():
        try:
            loaded = datasets.load_from_disk(name_or_path)
        except (FileNotFoundError, ValueError):
            loaded = datasets.load_dataset(name_or_path, split=split)
    else:
        loaded = datasets.load_dataset(
            name_or_path, split=split, download_mode="reuse_cache_if_exists"
        )
    if isinstance(loaded, dict) or hasattr(loaded, "keys"):
        loaded = loaded[split]
    out: list[R] = []
    problems: list[_Problem] = []
    for index, row in enumerate(loaded):
        record, found = _validate(schema, dict(row), index)
        if found and errors == "raise":
            ln, field, message = found[0]
            raise DataError(f"{name_or_path} (row)", ln, field, message)
        problems.extend(found)
        if record is not None:
            out.append(record)
    if problems and errors == "collect":
        ln, field, message = problems[0]
        raise DataError(f"{name_or_path} (row)", ln, field, message, problems=problems)
    return out
