"""Load training records from JSONL, JSON, CSV (or a local Hugging Face dataset).

Every problem becomes a ``DataError`` naming the file, the line and the field: bad
JSON, JSON nested too deeply to read, missing or mistyped fields, unknown roles, empty
conversations, no assistant turn, bytes that are not UTF-8, text with lone surrogates
(``"\\ud800"``, which no tokenizer can encode), a path that is a folder or cannot be
read. ``errors`` chooses what happens then:

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
import re
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

_TOO_DEEP = "is nested too deeply to read (JSON over ~900 levels deep); flatten it"
_SURROGATE = re.compile("[\ud800-\udfff]")


def field_name(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as the field a user reads: ``messages[1].role``.

    Example:
        >>> field_name(("messages", 1, "role"))
        'messages[1].role'
    """
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain_error(error: dict[str, Any]) -> str:
    """What a pydantic error means, in words about the data (no pydantic jargon).

    Example:
        >>> explain_error({"type": "missing", "loc": ("content",)})
        'is missing'
    """
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
                yield number, *_parse_line(text)
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


def _parse_line(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg}, column {exc.colno})"
    except RecursionError:
        return None, _TOO_DEEP


def surrogate_field(obj: Any, where: str = "") -> str | None:
    """The field of ``obj`` (``""`` for ``obj`` itself) holding a string with a lone
    surrogate, or None. Such strings come from ``"\\ud800"`` escapes without their
    pair; no tokenizer (and no UTF-8 file) can take them.

    Example:
        >>> surrogate_field({"messages": [{"content": "a\\ud800"}]})
        'messages[0].content'
    """
    # A stack, not recursion: JSON just under the parser's depth limit must not overflow.
    stack: list[tuple[str, Any]] = [(where, obj)]
    while stack:
        name, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return name
        elif isinstance(value, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{name}[{i}]", v) for i, v in enumerate(value))
    return None


def _surrogate_problem(obj: Any, line: int | None) -> _Problem | None:
    field = surrogate_field(obj)
    if field is None:
        return None
    return (
        line,
        field or None,
        "contains a lone surrogate (a \\ud800-\\udfff escape without its pair), which is "
        "not text: fix the encoding of the string",
    )


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
        except RecursionError:
            yield 1, None, _TOO_DEEP
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
        except RecursionError:
            yield line, None, _TOO_DEEP
            return
        yield line, obj, None


def _csv_rows(text: str) -> Iterator[tuple[int | None, Any, str | None]]:
    # The whole file is in memory already: a cell as long as the file costs nothing more,
    # so csv's 128 KiB cell limit (a long chat in one cell) is lifted while reading it.
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        yield from _csv_records(csv.DictReader(io.StringIO(text)))
    finally:
        csv.field_size_limit(limit)


def _csv_records(reader: csv.DictReader[str]) -> Iterator[tuple[int | None, Any, str | None]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, None, f"is not valid CSV ({exc})"
            return
        # An empty cell is a missing value, not an empty string.
        record: dict[str, Any] = {k: v for k, v in row.items() if v not in ("", None)}
        for key in ("messages", "chosen", "rejected"):
            value = record.get(key)
            if isinstance(value, str) and value.lstrip().startswith("["):
                parsed, problem = _parse_line(value)
                if problem is not None:
                    yield reader.line_num, None, f"column '{key}' {problem}"
                    break
                record[key] = parsed
        else:
            yield reader.line_num, record, None


def _validate(schema: type[R], obj: Any, line: int | None) -> tuple[R | None, list[_Problem]]:
    if not isinstance(obj, dict):
        return None, [(line, None, f"must be a JSON object, got {type(obj).__name__}")]
    surrogate = _surrogate_problem(obj, line)
    if surrogate is not None:
        return None, [surrogate]
    try:
        return schema.model_validate(obj), []
    except ValidationError as exc:
        problems: list[_Problem] = []
        for error in exc.errors():
            field = field_name(tuple(error["loc"])) or None
            problems.append((line, field, explain_error(dict(error))))
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
    check_data_file(file)
    problems: list[_Problem] = []
    count = 0
    records = _raw_records(file)
    while True:
        try:
            line, obj, problem = next(records)
        except StopIteration:
            break
        except OSError as exc:
            raise DataError(
                str(file), None, None, f"cannot be read ({exc.strerror or exc})"
            ) from None
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


DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", "")


def check_data_file(path: str | Path, suffixes: tuple[str, ...] | None = DATA_SUFFIXES) -> Path:
    """``path`` as a ``Path`` if it is a file we can read (with one of ``suffixes``,
    unless None); ``DataError`` saying what it is instead (missing, a folder, not a
    regular file, unreadable, another format).

    Example:
        >>> check_data_file("runs/")
        DataError: runs: is a folder, not a data file: give a .jsonl, .json or .csv file
    """
    file = Path(path)
    kinds = "a .jsonl, .json or .csv file" if suffixes == DATA_SUFFIXES else "a file"
    if file.is_dir():
        raise DataError(str(file), None, None, f"is a folder, not a data file: give {kinds}")
    if not file.exists():
        raise DataError(str(file), None, None, "no such file")
    if not file.is_file():
        raise DataError(str(file), None, None, f"is not a regular file: give {kinds}")
    if suffixes is not None and file.suffix.lower() not in suffixes:
        raise DataError(str(file), None, None, "unsupported format: use .jsonl, .json or .csv")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise DataError(str(file), None, None, f"cannot be read ({exc.strerror or exc})") from None
    return file


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
